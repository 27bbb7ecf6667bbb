//! Reading write-ahead log segment files from the outside, for tests that
//! damage them or count their bytes: a segment's records are followed by
//! zeros written ahead of the writer, so its file length is not its log.

use std::path::{Path, PathBuf};

/// Segment header: magic (8), format version (2), first LSN (8).
const HEADER_LEN: usize = 18;
/// Record header: length (4), checksum (4), LSN (8).
const RECORD_HEADER_LEN: usize = 16;

/// The bytes of log in the segment at `path` (header and records), without
/// the zeros after them: where the next record would go.
///
/// # Panics
///
/// If the file cannot be read.
#[must_use]
pub fn used_len(path: &Path) -> u64 {
    let data = std::fs::read(path).expect("a readable segment");
    let mut at = HEADER_LEN.min(data.len());
    while let Some(header) = data.get(at..at + RECORD_HEADER_LEN) {
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        at += RECORD_HEADER_LEN + len as usize;
    }
    at.min(data.len()) as u64
}

/// Every segment file under `dir` (any depth), sorted.
///
/// # Panics
///
/// If the directory cannot be read.
#[must_use]
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(segments(&path));
        } else if path.extension().is_some_and(|e| e == "wal") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Bytes of log in every segment under `dir`.
#[must_use]
pub fn log_bytes(dir: &Path) -> u64 {
    segments(dir).iter().map(|path| used_len(path)).sum()
}
