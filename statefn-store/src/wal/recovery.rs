//! Opening a log: list segments, validate them in order, cut a torn tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::FileSystem;

use super::reader::scan_segment;
use super::segment::{HEADER_LEN, SegmentFile, file_name, header, parse_file_name};
use super::{Lsn, Record, WalError};

/// One live segment, as the writer tracks it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) first: Lsn,
    pub(crate) path: PathBuf,
    /// Bytes of log in the file (header and records): where the next
    /// record goes.
    pub(crate) len: u64,
    /// The file's length: the bytes from `len` up to it are zeros written
    /// ahead of the writer.
    pub(crate) allocated: u64,
    /// LSN of its last record, `None` while it has only a header.
    pub(crate) last: Option<Lsn>,
    /// Open handle while the file may hold unsynced data (always for the
    /// active segment); dropped once known durable to save descriptors.
    pub(crate) file: Option<Arc<SegmentFile>>,
    /// The header is still to be written with the segment's first records.
    pub(crate) needs_header: bool,
}

/// What [`recover`] found.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Oldest first; never empty, the last one is open.
    pub(crate) segments: Vec<Segment>,
    /// LSN the next appended record gets.
    pub(crate) next: Lsn,
    pub(crate) records: Vec<Record>,
}

/// Opens or creates the log in `dir`; see [`Wal::open`](super::Wal::open).
/// With `cut`, every record after it is dropped first (see
/// [`Wal::reopen_after_failure`](super::Wal::reopen_after_failure)).
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    from: Lsn,
    cut: Option<Lsn>,
) -> Result<Recovered, WalError> {
    let from = from.max(Lsn::FIRST);
    fs.create_dir_all(dir).map_err(WalError::io(dir))?;
    let mut names = Vec::new();
    for path in fs.list_dir(dir).map_err(WalError::io(dir))? {
        match parse_file_name(&path) {
            None => {}
            Some(Ok(first)) => names.push((first, path)),
            Some(Err(reason)) => return Err(WalError::corrupt(path, 0, reason)),
        }
    }
    names.sort_by_key(|(first, _)| *first);
    if let Some(cut) = cut {
        drop_after(fs, dir, &mut names, cut)?;
    }

    let Some((oldest, oldest_path)) = names.first() else {
        let segment = create_segment(fs, dir, from)?;
        return Ok(Recovered {
            segments: vec![segment],
            next: from,
            records: Vec::new(),
        });
    };
    if *oldest > from {
        return Err(WalError::corrupt(
            oldest_path,
            0,
            format!(
                "records from lsn {from} are needed but the oldest segment starts at lsn {oldest}: segments are missing"
            ),
        ));
    }

    let mut records = Vec::new();
    let mut segments = Vec::with_capacity(names.len());
    let mut expected: Option<Lsn> = None;
    let count = names.len();
    for (index, (first, path)) in names.into_iter().enumerate() {
        let is_last = index + 1 == count;
        if let Some(expected) = expected
            && expected != first
        {
            // Records missing below the replay start are covered by a
            // checkpoint: an older build could leave such a hole when it
            // failed to remove a segment (the segment before the hole goes
            // with the next truncation).
            if expected < first && first <= from {
                tracing::warn!(
                    path = %path.display(),
                    missing_from = %expected,
                    %from,
                    "segments are missing below the replay start; they were checkpointed"
                );
            } else {
                return Err(WalError::corrupt(
                    path,
                    0,
                    format!(
                        "the segment starts at lsn {first} but the previous one ends before lsn {expected}: a segment is missing or was renamed"
                    ),
                ));
            }
        }
        let file = fs.open_file(&path, false).map_err(WalError::io(&path))?;
        let data = file.read_all().map_err(WalError::io(&path))?;
        let until = cut.filter(|_| is_last);
        let scan = scan_segment(&path, &data, first, is_last, from, until, &mut records)?;
        let mut len = scan.valid_len;
        let mut allocated = data.len() as u64;
        if scan.cut {
            tracing::warn!(
                path = %path.display(),
                offset = scan.valid_len,
                bytes_dropped = data.len() as u64 - scan.valid_len,
                durable = %cut.unwrap_or_default(),
                "dropping the records written after the last durable position: their \
                 callers were told they were not committed"
            );
            file.truncate(scan.valid_len).map_err(WalError::io(&path))?;
            allocated = len;
        } else if scan.header_torn {
            tracing::warn!(
                path = %path.display(),
                offset = 0,
                bytes_dropped = data.len(),
                "rewriting the torn header of the last write-ahead log segment"
            );
            file.truncate(0).map_err(WalError::io(&path))?;
            file.append(&header(first)).map_err(WalError::io(&path))?;
            len = HEADER_LEN as u64;
            allocated = len;
        } else if let Some(reason) = &scan.torn {
            tracing::warn!(
                path = %path.display(),
                offset = scan.valid_len,
                bytes_dropped = data.len() as u64 - scan.valid_len,
                reason = %reason,
                "truncating the torn tail of the write-ahead log"
            );
            // The zeros after the tear go too: the writer zeroes afresh.
            file.truncate(scan.valid_len).map_err(WalError::io(&path))?;
            allocated = len;
        } else if scan.zero_tail && !is_last {
            // The process stopped before its seal's truncation was durable:
            // seal it again, so sealed segments hold records only.
            tracing::debug!(
                path = %path.display(),
                offset = scan.valid_len,
                "cutting the zero tail of a sealed write-ahead log segment"
            );
            file.truncate(scan.valid_len).map_err(WalError::io(&path))?;
            allocated = len;
        }
        // A process crash leaves written records in the page cache only; make
        // them durable before the caller acts on them as committed.
        file.sync_data().map_err(WalError::io(&path))?;
        let last = (scan.next > first).then(|| Lsn(scan.next.0 - 1));
        segments.push(Segment {
            first,
            len,
            allocated,
            last,
            file: is_last.then(|| {
                Arc::new(SegmentFile::new(
                    path.clone(),
                    file,
                    last.unwrap_or_default(),
                ))
            }),
            path,
            needs_header: false,
        });
        expected = Some(scan.next);
    }
    fs.sync_dir(dir).map_err(WalError::io(dir))?;

    let next = expected.unwrap_or(from);
    if from > next {
        return Err(WalError::corrupt(
            dir,
            0,
            format!(
                "records from lsn {from} are needed but the log ends before lsn {next}: records covered by the checkpoint were lost"
            ),
        ));
    }
    Ok(Recovered {
        segments,
        next,
        records,
    })
}

/// Removes the segments holding only records after `cut`, newest first (a
/// crash in between leaves a prefix of the log); the last one left may hold
/// some, which the scan cuts.
fn drop_after(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &mut Vec<(Lsn, PathBuf)>,
    cut: Lsn,
) -> Result<(), WalError> {
    while names.len() > 1
        && let Some((first, path)) = names.last()
        && *first > cut
    {
        tracing::warn!(
            path = %path.display(),
            durable = %cut,
            "removing a log segment written after the last durable position"
        );
        fs.remove_file(path).map_err(WalError::io(path))?;
        fs.sync_dir(dir).map_err(WalError::io(dir))?;
        names.pop();
    }
    Ok(())
}

/// Creates the first segment of a new log, durably.
fn create_segment(fs: &dyn FileSystem, dir: &Path, first: Lsn) -> Result<Segment, WalError> {
    let path = dir.join(file_name(first));
    let file = fs.open_file(&path, true).map_err(WalError::io(&path))?;
    file.append(&header(first)).map_err(WalError::io(&path))?;
    file.sync_data().map_err(WalError::io(&path))?;
    fs.sync_dir(dir).map_err(WalError::io(dir))?;
    Ok(Segment {
        first,
        len: HEADER_LEN as u64,
        allocated: HEADER_LEN as u64,
        last: None,
        file: Some(Arc::new(SegmentFile::new(path.clone(), file, Lsn(0)))),
        path,
        needs_header: false,
    })
}
