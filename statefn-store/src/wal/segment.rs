//! Segment files: naming, the header, and the shared handle used for syncing.
//!
//! A segment is named by its first LSN, zero padded so that a directory
//! listing sorts in log order (`00000000000000000001.wal`), and starts with a
//! header: magic bytes, format version (u16 LE) and first LSN (u64 LE). The
//! first LSN is stored twice (name and header) so that a renamed or copied
//! file is caught instead of replayed at the wrong position.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::io::LogFile;

use super::Lsn;

/// Identifies a statefn log segment.
pub(crate) const MAGIC: [u8; 8] = *b"SFNWAL\r\n";

/// The segment format version this build writes and the newest it reads.
pub const WAL_FORMAT_VERSION: u16 = 1;

/// Magic + version + first LSN.
pub(crate) const HEADER_LEN: usize = MAGIC.len() + 2 + 8;

const EXTENSION: &str = "wal";

/// The file name of the segment whose first record is `first`.
pub(crate) fn file_name(first: Lsn) -> String {
    format!("{:020}.{EXTENSION}", first.0)
}

/// The first LSN encoded in a segment file name, or `None` for other files.
///
/// `Some(Err(..))` is a file with the segment extension but a bad name, which
/// is reported rather than ignored: it may hold records.
pub(crate) fn parse_file_name(path: &Path) -> Option<Result<Lsn, String>> {
    if path.extension()?.to_str()? != EXTENSION {
        return None;
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    Some(match stem.parse::<u64>() {
        Ok(n) if stem.len() == 20 && n > 0 => Ok(Lsn(n)),
        _ => Err(format!(
            "segment file name {stem:?} is not a zero-padded 20-digit first LSN"
        )),
    })
}

/// The header of a segment starting at `first`.
pub(crate) fn header(first: Lsn) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    let (magic, rest) = out.split_at_mut(MAGIC.len());
    let (version, lsn) = rest.split_at_mut(2);
    magic.copy_from_slice(&MAGIC);
    version.copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    lsn.copy_from_slice(&first.0.to_le_bytes());
    out
}

/// A parsed segment header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) magic_ok: bool,
    pub(crate) version: u16,
    pub(crate) first: Lsn,
}

/// Parses the first [`HEADER_LEN`] bytes of a segment, if there are enough.
pub(crate) fn parse_header(buf: &[u8]) -> Option<Header> {
    let header = buf.get(..HEADER_LEN)?;
    let (magic, rest) = header.split_at(MAGIC.len());
    let (version, first) = rest.split_at(2);
    Some(Header {
        magic_ok: magic == MAGIC,
        version: u16::from_le_bytes(version.try_into().ok()?),
        first: Lsn(u64::from_le_bytes(first.try_into().ok()?)),
    })
}

/// An open segment file shared by the writer and any [`PendingSync`]s.
///
/// `synced` lets a sync skip files that a later (or concurrent) sync already
/// made durable past the point it needs.
///
/// [`PendingSync`]: super::PendingSync
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn LogFile>,
    /// Highest LSN known durable in this file (0 = none).
    synced: AtomicU64,
}

impl SegmentFile {
    pub(crate) fn new(path: PathBuf, file: Box<dyn LogFile>, synced: Lsn) -> Self {
        Self {
            path,
            file,
            synced: AtomicU64::new(synced.0),
        }
    }

    pub(crate) fn synced(&self) -> Lsn {
        Lsn(self.synced.load(Ordering::Acquire))
    }

    pub(crate) fn mark_synced(&self, lsn: Lsn) {
        self.synced.fetch_max(lsn.0, Ordering::AcqRel);
    }
}
