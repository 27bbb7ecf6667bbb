//! Validating a segment on open: which records are good, where a torn tail
//! starts, and which damage is corruption that must stop recovery.

use std::path::Path;

use super::record::{Decoded, RECORD_HEADER_LEN, decode};
use super::segment::{HEADER_LEN, WAL_FORMAT_VERSION, header, parse_header};
use super::{Lsn, Record, WalError};

/// The outcome of scanning one segment.
#[derive(Debug)]
pub(crate) struct Scan {
    /// LSN after the last good record.
    pub(crate) next: Lsn,
    /// Bytes of good data (header + good records).
    pub(crate) valid_len: u64,
    /// The segment ends in a torn write that should be cut off at
    /// `valid_len`; the reason is for the log line.
    pub(crate) torn: Option<String>,
    /// The header itself is torn (only possible in the last segment, right
    /// after it was created): the file must be rewritten from scratch.
    pub(crate) header_torn: bool,
    /// Records after the cut follow: the file must be cut at `valid_len`.
    pub(crate) cut: bool,
    /// The records end in zeros up to the end of the file: zeros written
    /// ahead of the writer (a clean end, not damage).
    pub(crate) zero_tail: bool,
}

/// Scans `data`, the content of the segment at `path` whose name says it
/// starts at `first`, and pushes the records with `from <= lsn <= until`
/// onto `out` (what follows `until` is not read: it is to be cut).
///
/// Zeros from a record boundary to the end of the file are the clean end of
/// any segment (zeros written ahead of the writer; a sealed segment keeps
/// them if the process stopped before its seal's truncation was durable).
/// A damaged tail is accepted as torn only in the last segment, and only if
/// no valid record follows it or the damage holds a whole zero sector (a page
/// of the last write the disk never got, see [`zero_block`]); everything else
/// is [`WalError::Corrupt`].
pub(crate) fn scan_segment(
    path: &Path,
    data: &[u8],
    first: Lsn,
    is_last: bool,
    from: Lsn,
    until: Option<Lsn>,
    out: &mut Vec<Record>,
) -> Result<Scan, WalError> {
    let torn_header = Scan {
        next: first,
        valid_len: 0,
        torn: None,
        header_torn: true,
        cut: false,
        zero_tail: false,
    };
    let Some(parsed) = parse_header(data) else {
        // A crash right after creating the file: what is there must be a
        // prefix of the header we would have written (or zeros).
        let expected = header(first);
        let is_prefix = expected.starts_with(data) || data.iter().all(|&b| b == 0);
        if is_last && is_prefix {
            return Ok(torn_header);
        }
        return Err(WalError::corrupt(
            path,
            0,
            format!(
                "the segment header is incomplete ({} of {HEADER_LEN} bytes)",
                data.len()
            ),
        ));
    };
    if !parsed.magic_ok {
        if is_last && data.iter().all(|&b| b == 0) {
            return Ok(torn_header);
        }
        return Err(WalError::corrupt(
            path,
            0,
            "not a statefn log segment (bad magic bytes)",
        ));
    }
    if parsed.version > WAL_FORMAT_VERSION {
        return Err(WalError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: parsed.version,
            supported: WAL_FORMAT_VERSION,
        });
    }
    if parsed.version == 0 {
        return Err(WalError::corrupt(
            path,
            8,
            "format version 0 does not exist",
        ));
    }
    if parsed.first != first {
        return Err(WalError::corrupt(
            path,
            10,
            format!(
                "the header says the segment starts at lsn {} but its name says {first}",
                parsed.first
            ),
        ));
    }

    let mut offset = HEADER_LEN;
    let mut expected = first;
    while let Some(rest) = data.get(offset..).filter(|rest| !rest.is_empty()) {
        if rest.iter().take(RECORD_HEADER_LEN).all(|&b| b == 0) && rest.iter().all(|&b| b == 0) {
            // Zeros written ahead of the writer: the records end here.
            return Ok(Scan {
                next: expected,
                valid_len: offset as u64,
                torn: None,
                header_torn: false,
                cut: false,
                zero_tail: true,
            });
        }
        if until.is_some_and(|until| expected > until) {
            return Ok(Scan {
                next: expected,
                valid_len: offset as u64,
                torn: None,
                header_torn: false,
                cut: true,
                zero_tail: false,
            });
        }
        let problem = match decode(rest) {
            Decoded::Record {
                lsn,
                payload,
                framed_len,
            } => {
                if lsn != expected {
                    return Err(WalError::corrupt(
                        path,
                        offset as u64,
                        format!("found lsn {lsn} where lsn {expected} was expected"),
                    ));
                }
                // The writer can never give out the last u64 (the LSN after
                // it would overflow), so such a record is damage, not data.
                let Some(after) = lsn.0.checked_add(1) else {
                    return Err(WalError::corrupt(
                        path,
                        offset as u64,
                        format!("lsn {lsn} is beyond the range a log can reach"),
                    ));
                };
                if lsn >= from {
                    out.push(Record {
                        lsn,
                        payload: payload.to_vec(),
                    });
                }
                offset += framed_len;
                expected = Lsn(after);
                continue;
            }
            Decoded::ShortHeader { available } => format!(
                "the record header of lsn {expected} is incomplete ({available} of {RECORD_HEADER_LEN} bytes)"
            ),
            Decoded::ShortPayload { claimed, available } => format!(
                "record lsn {expected} claims {claimed} payload bytes but only {available} follow"
            ),
            Decoded::Zeros => format!("zero bytes where record lsn {expected} was expected"),
            Decoded::BadChecksum { lsn, claimed } => format!(
                "checksum mismatch in the record at this offset (expected lsn {expected}, header says lsn {lsn} with {claimed} payload bytes)"
            ),
        };
        if !is_last {
            return Err(WalError::corrupt(
                path,
                offset as u64,
                format!("{problem}, in a segment that is not the last one"),
            ));
        }
        let mut problem = problem;
        if let Some((at, lsn)) = find_valid_record(data, offset + 1, expected) {
            let Some(hole) = zero_block(data, offset, at) else {
                return Err(WalError::corrupt(
                    path,
                    offset as u64,
                    format!("{problem}, but a valid record (lsn {lsn}) follows at offset {at}"),
                ));
            };
            problem = format!(
                "{problem}; the zeros at offset {hole} are a page of the last write that never \
                 reached the disk (valid records of that write follow at offset {at}, lsn {lsn}: \
                 its sync never returned, so none of it was acknowledged)"
            );
        }
        return Ok(Scan {
            next: expected,
            valid_len: offset as u64,
            torn: Some(problem),
            header_torn: false,
            cut: false,
            zero_tail: false,
        });
    }
    Ok(Scan {
        next: expected,
        valid_len: offset as u64,
        torn: None,
        header_torn: false,
        cut: false,
        zero_tail: false,
    })
}

/// Looks for any intact record at or after `start` whose LSN could follow
/// `expected`. Finding one means the damage before it is not a torn tail
/// (the writer only ever appends), so those records must not be dropped.
/// The size and alignment of the smallest unit a disk writes whole: a hole
/// a power cut leaves in a write is made of such blocks.
const SECTOR: usize = 512;

/// The offset of the first sector-aligned block of zeros in `data[from..to]`.
///
/// Records are written over zeros written (and synced) ahead of them. A power
/// cut during the sync of a write that spans several pages may leave a later
/// page of it on the disk and not an earlier one, which then reads back as
/// zeros: damage followed by valid records, where the damage holds whole
/// zero sectors. Bit rot or a stray write in synced data does not look like
/// that (a flipped byte, garbage), so it stays [`WalError::Corrupt`].
fn zero_block(data: &[u8], from: usize, to: usize) -> Option<usize> {
    let first = from.next_multiple_of(SECTOR);
    (first..to.saturating_sub(SECTOR - 1))
        .step_by(SECTOR)
        .find(|&at| {
            data.get(at..at + SECTOR)
                .is_some_and(|block| block.iter().all(|&b| b == 0))
        })
}

fn find_valid_record(data: &[u8], start: usize, expected: Lsn) -> Option<(usize, Lsn)> {
    let end = data.len().checked_sub(RECORD_HEADER_LEN)?;
    // Each record takes at least RECORD_HEADER_LEN bytes, which bounds the
    // LSNs that can appear; the cheap LSN test avoids most checksum work.
    // Saturating: near the top of the LSN range a wrapped bound would hide
    // every later record and let real damage pass for a torn tail.
    let max_lsn = expected
        .0
        .saturating_add((data.len() / RECORD_HEADER_LEN) as u64);
    (start..=end).find_map(|at| {
        let rest = data.get(at..)?;
        let lsn = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
        if lsn < expected.0 || lsn > max_lsn {
            return None;
        }
        match decode(rest) {
            Decoded::Record { lsn, .. } => Some((at, lsn)),
            _ => None,
        }
    })
}
