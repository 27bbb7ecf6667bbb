//! Helpers shared by the write-ahead log tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use statefn_store::{FileSystem, StdFs};
use statefn_store::{LogRecord as Record, Lsn, Wal, WalError, WalOptions};

/// Segment header length: magic (8) + version (2) + first LSN (8).
pub(crate) const HEADER_LEN: u64 = 18;
/// Record header length: len (4) + crc (4) + lsn (8).
pub(crate) const RECORD_HEADER_LEN: u64 = 16;

pub(crate) fn std_fs() -> Arc<dyn FileSystem> {
    Arc::new(StdFs)
}

pub(crate) fn small_segments(bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes: bytes,
        ..WalOptions::default()
    }
}

/// Default options without zeros written ahead: every write grows the
/// file, as segments did before preallocation (and still may, in data
/// directories written by older builds).
pub(crate) fn growing() -> WalOptions {
    WalOptions {
        preallocate_bytes: 0,
        ..WalOptions::default()
    }
}

/// The length of the run of zeros at the end of a file.
pub(crate) fn zero_tail(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap();
    data.iter().rev().take_while(|&&b| b == 0).count() as u64
}

pub(crate) fn open(dir: &Path, opts: WalOptions, from: u64) -> (Wal, Vec<Record>) {
    Wal::open(std_fs(), dir, opts, Lsn(from)).expect("open wal")
}

pub(crate) fn try_open(dir: &Path, from: u64) -> Result<(Wal, Vec<Record>), WalError> {
    Wal::open(std_fs(), dir, WalOptions::default(), Lsn(from))
}

/// A payload whose length and content depend on `i` (some are empty).
pub(crate) fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 23) as usize;
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// Appends, writes and syncs `payloads`; returns the durable LSN.
pub(crate) fn commit(wal: &mut Wal, payloads: &[Vec<u8>]) -> Lsn {
    for p in payloads {
        wal.append(p);
    }
    wal.write().expect("write").sync().expect("sync")
}

/// The expected recovered records for payloads numbered `range`.
pub(crate) fn expected(range: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    range
        .map(|i| Record {
            lsn: Lsn(i),
            payload: payload(i),
        })
        .collect()
}

/// Segment files of `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// First LSN of a segment, from its name.
pub(crate) fn first_lsn(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Byte offset of each record in a segment holding `payload(first..)`.
pub(crate) fn record_offsets(first: u64, count: u64) -> Vec<u64> {
    let mut offset = HEADER_LEN;
    (first..first + count)
        .map(|i| {
            let at = offset;
            offset += RECORD_HEADER_LEN + payload(i).len() as u64;
            at
        })
        .collect()
}

pub(crate) fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

pub(crate) fn flip_byte(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).unwrap();
    data[offset as usize] ^= 0x5a;
    std::fs::write(path, data).unwrap();
}

/// Collects formatted log output.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what it logged (warnings included, without colours).
pub(crate) fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    (out, text)
}
