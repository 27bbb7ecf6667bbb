//! What each fuzz target does with its input, shared by the targets in
//! `fuzz/fuzz_targets/` and by the regression test that replays the kept
//! inputs on stable (`tests/tests/fuzz_regressions.rs`, which includes this
//! file with `#[path]`). Every function panics on a bug and returns normally
//! otherwise.
//!
//! Only `statefn`, `statefn-store` and `statefn-examples` are used, so that
//! the test crate (which has all three) can include it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use statefn::__fuzz::{decode_log_record, invoke, message_from_json};
use statefn::StatefulFunction;
use statefn_examples::bank::Account;
use statefn_examples::cart::{Cart, Inventory};
use statefn_store::{FileSystem, LogFile, LogRecord, Lsn, Wal, WalOptions};

// ---------------------------------------------------------------------------
// wal_recovery
// ---------------------------------------------------------------------------

/// The directory the fuzzed log lives in (inside [`MemFs`]).
pub(crate) const WAL_DIR: &str = "/fuzz/wal";

/// Small, so that the records appended after recovery start new segments.
const SEGMENT_BYTES: u64 = 256;

/// Magic + version 1, as `statefn-store` writes them (`segment.rs`).
const SEGMENT_MAGIC_AND_VERSION: [u8; 10] = *b"SFNWAL\r\n\x01\x00";

/// Decodes a `wal_recovery` input into segment files:
///
/// ```text
/// byte 0: bits 0-1  number of segments - 1 (1 to 4)
///         bit 2     prepend a valid header (for the segment's first LSN)
///                   to every segment body
///         bit 3     also put a file that is not a segment in the directory
///         bit 4     also put a `.wal` file with a bad name in the directory
///         bit 5     the first segment starts at the u64 LE that follows
///                   (as after a checkpoint; 0 reads as 1), not at LSN 1
///         bits 6-7  recover from the first segment's LSN + (bits 6-7)
/// then, for each segment i:
///     i > 0:      1 byte, its first LSN minus the previous one's
///     not last:   u16 LE length, then that many bytes (fewer at the end)
///     last:       the rest of the input
/// ```
///
/// Returns the files and the `from` LSN.
pub(crate) fn wal_files(data: &[u8]) -> (Vec<(PathBuf, Vec<u8>)>, Lsn) {
    let dir = Path::new(WAL_DIR);
    let Some((&flags, mut rest)) = data.split_first() else {
        return (Vec::new(), Lsn(1));
    };
    let count = usize::from(flags & 0b11) + 1;
    let with_header = flags & 0b100 != 0;
    let mut first = 1u64;
    if flags & 0b10_0000 != 0 {
        let Some((base, tail)) = rest.split_first_chunk::<8>() else {
            return (Vec::new(), Lsn(1));
        };
        first = u64::from_le_bytes(*base).max(1);
        rest = tail;
    }
    let from = Lsn(first.saturating_add(u64::from(flags >> 6)));
    let mut files = Vec::new();
    for index in 0..count {
        if index > 0 {
            let Some((&delta, tail)) = rest.split_first() else {
                break;
            };
            first = first.saturating_add(u64::from(delta));
            rest = tail;
        }
        let body = if index + 1 < count {
            let len = match rest {
                [a, b, tail @ ..] => {
                    rest = tail;
                    usize::from(u16::from_le_bytes([*a, *b]))
                }
                _ => std::mem::take(&mut rest).len(),
            };
            let (body, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            body
        } else {
            std::mem::take(&mut rest)
        };
        let mut bytes = Vec::with_capacity(body.len() + 18);
        if with_header {
            bytes.extend_from_slice(&SEGMENT_MAGIC_AND_VERSION);
            bytes.extend_from_slice(&first.to_le_bytes());
        }
        bytes.extend_from_slice(body);
        files.push((dir.join(format!("{first:020}.wal")), bytes));
    }
    if flags & 0b1000 != 0 {
        files.push((dir.join("README.txt"), b"not a segment".to_vec()));
    }
    if flags & 0b1_0000 != 0 {
        files.push((dir.join("7.wal"), Vec::new()));
    }
    (files, from)
}

/// Recovers a log from the fuzzed segment files. Recovery must return `Ok`
/// or `Err`, never panic; if it succeeds, the records must be contiguous
/// from `from`, and records appended, written and synced afterwards must
/// come back, together with the recovered ones, on every later reopen.
pub(crate) fn wal_recovery(data: &[u8]) {
    let (files, from) = wal_files(data);
    let fs = Arc::new(MemFs::default());
    for (path, bytes) in files {
        fs.put(path, bytes);
    }
    let dir = Path::new(WAL_DIR);
    let opts = WalOptions {
        segment_bytes: SEGMENT_BYTES,
        ..WalOptions::default()
    };
    let Ok((mut wal, records)) = Wal::open(fs.clone(), dir, opts, from) else {
        return;
    };
    check_contiguous(&records, from, wal.next_lsn());
    if wal.next_lsn().0 > u64::MAX - 8 {
        // LSNs are exhausted: appending would overflow them. Not reachable
        // by writing (2^64 records); only by a damaged checkpoint position.
        return;
    }

    // One small record, then one larger than a segment (it gets its own).
    let payloads: [Vec<u8>; 2] = [b"appended after recovery".to_vec(), vec![0xA5; 300]];
    let mut expected = records;
    for payload in &payloads {
        let lsn = wal.append(payload);
        expected.push(LogRecord {
            lsn,
            payload: payload.clone(),
        });
    }
    let durable = wal
        .write()
        .and_then(|pending| pending.sync())
        .expect("writing to a recovered log on a file system that never fails");
    assert_eq!(durable, expected.last().map_or(Lsn(0), |r| r.lsn));
    drop(wal);

    for round in 0..2 {
        let (wal, again) = Wal::open(fs.clone(), dir, opts, from).unwrap_or_else(|e| {
            panic!("reopening (round {round}) a log that recovered and was synced failed: {e}")
        });
        check_contiguous(&again, from, wal.next_lsn());
        assert!(
            again == expected,
            "reopen round {round} returned {} records, expected {} (lsns {:?} vs {:?})",
            again.len(),
            expected.len(),
            again.iter().map(|r| r.lsn.0).collect::<Vec<_>>(),
            expected.iter().map(|r| r.lsn.0).collect::<Vec<_>>(),
        );
    }
}

fn check_contiguous(records: &[LogRecord], from: Lsn, next: Lsn) {
    for (offset, LogRecord { lsn, .. }) in (0u64..).zip(records) {
        assert_eq!(
            Some(lsn.0),
            from.0.checked_add(offset),
            "recovered records are not contiguous from lsn {from}"
        );
    }
    assert_eq!(
        Some(next.0),
        from.0.checked_add(records.len() as u64),
        "next lsn does not follow the recovered records"
    );
}

/// An in-memory [`FileSystem`] that never fails: fast, and no leftovers.
#[derive(Debug, Default)]
pub(crate) struct MemFs {
    files: Mutex<BTreeMap<PathBuf, Arc<Mutex<Vec<u8>>>>>,
}

impl MemFs {
    pub(crate) fn put(&self, path: PathBuf, bytes: Vec<u8>) {
        lock(&self.files).insert(path, Arc::new(Mutex::new(bytes)));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FileSystem for MemFs {
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(lock(&self.files)
            .keys()
            .filter(|file| file.parent() == Some(path))
            .cloned()
            .collect())
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn LogFile>> {
        let mut files = lock(&self.files);
        let data = match files.get(path) {
            Some(data) => Arc::clone(data),
            None if create => {
                let data = Arc::new(Mutex::new(Vec::new()));
                files.insert(path.to_path_buf(), Arc::clone(&data));
                data
            }
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        Ok(Box::new(MemFile { data }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        lock(&self.files)
            .remove(path)
            .map(drop)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct MemFile {
    data: Arc<Mutex<Vec<u8>>>,
}

impl LogFile for MemFile {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        Ok(lock(&self.data).clone())
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        lock(&self.data).extend_from_slice(buf);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let offset = usize::try_from(offset).map_err(io::Error::other)?;
        let mut data = lock(&self.data);
        let end = offset + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset..end].copy_from_slice(buf);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        lock(&self.data).resize(len, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.data).len() as u64)
    }
}

// ---------------------------------------------------------------------------
// log_record_decode
// ---------------------------------------------------------------------------

/// Decoding a log record from arbitrary bytes returns `Ok` or `Err`.
pub(crate) fn log_record_decode(data: &[u8]) {
    let _ = decode_log_record(data);
}

// ---------------------------------------------------------------------------
// message_decode
// ---------------------------------------------------------------------------

/// Function type selector, state (`None`: a new instance), message.
pub(crate) type MessageParts<'a> = (u8, Option<&'a [u8]>, &'a [u8]);

/// Splits a `message_decode` input:
///
/// ```text
/// byte 0: bits 0-1  function type: 0 Account, 1 shop.Cart, 2 shop.Inventory
///                   (3 is Account too)
///         bit 7     no stored state (a new instance)
/// byte 1: length of the state bytes
/// then the state bytes, then the message bytes (in the stored format of
/// `statefn::encode_message`: tag 0xA1, the handler's name, its argument
/// fingerprint, the arguments)
/// ```
pub(crate) fn message_parts(data: &[u8]) -> Option<MessageParts<'_>> {
    let (&selector, rest) = data.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (state, message) = rest.split_at(usize::from(len).min(rest.len()));
    let state = (selector & 0x80 == 0).then_some(state);
    Some((selector & 0b11, state, message))
}

/// Runs a handler on an arbitrary state and message. A handler panic is
/// caught by the runtime and reported as a failed invocation; any panic out
/// of `invoke` is a bug.
pub(crate) fn message_decode(data: &[u8]) {
    let Some((kind, state, message)) = message_parts(data) else {
        return;
    };
    let result = match kind {
        1 => invoke::<Cart>(state, message),
        2 => invoke::<Inventory>(state, message),
        _ => invoke::<Account>(state, message),
    };
    result.expect("the example function types register");
}

// ---------------------------------------------------------------------------
// json_args
// ---------------------------------------------------------------------------

/// Builds a message from arbitrary JSON for every handler of every example
/// type, and for an unknown handler. Unknown and internal handlers must be
/// refused; a message that is built must then be accepted by `invoke` (as a
/// new instance) without a panic escaping.
pub(crate) fn json_args(data: &[u8]) {
    json_args_for::<Account>(data);
    json_args_for::<Cart>(data);
    json_args_for::<Inventory>(data);
}

fn json_args_for<T: StatefulFunction>(data: &[u8]) {
    let names = T::HANDLERS.iter().map(|h| h.name);
    for handler in names.chain(["no_such_handler", ""]) {
        let Ok(message) = message_from_json::<T>(handler, data) else {
            continue;
        };
        assert!(
            T::HANDLERS.iter().any(|h| h.name == handler && !h.internal),
            "message_from_json accepted the unknown or internal handler {handler:?}"
        );
        invoke::<T>(None, &message).expect("the example function types register");
    }
}

// ---------------------------------------------------------------------------
// For the fuzz targets only: telling handler panics from escaping ones.
// ---------------------------------------------------------------------------

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`; a panic caught inside it (a handler panic, which the runtime
/// turns into a failed invocation) is fine, a panic escaping it aborts the
/// process so that libFuzzer records a crash.
///
/// libfuzzer-sys installs a panic hook that aborts on *every* panic, caught
/// or not, before unwinding starts; this replaces it with one that only
/// remembers the message.
pub(crate) fn abort_on_escaping_panic(f: impl FnOnce() + std::panic::UnwindSafe) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let text = info.to_string();
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
        }));
    });
    if std::panic::catch_unwind(f).is_err() {
        let text = LAST_PANIC.with(|last| last.borrow_mut().take());
        eprintln!(
            "a panic escaped: {}",
            text.as_deref().unwrap_or("(no message)")
        );
        std::process::abort();
    }
    LAST_PANIC.with(|last| last.borrow_mut().take());
}
