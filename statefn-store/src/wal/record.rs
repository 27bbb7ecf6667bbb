//! Record framing: `[len: u32 LE][crc32c: u32 LE][lsn: u64 LE][payload]`.
//!
//! The checksum covers the LSN and the payload, so a record that was copied
//! to the wrong place, or a stale record from an earlier life of the file,
//! fails it just like flipped bits do.

use super::Lsn;

/// Bytes before the payload: length, checksum and LSN.
pub(crate) const RECORD_HEADER_LEN: usize = 16;

/// Appends the framed record to `out`.
///
/// # Panics
///
/// Panics if the payload is 4 GiB or larger (the length field is a `u32`).
#[expect(
    clippy::expect_used,
    reason = "documented panic; `CommitLog::append` refuses such records with an error first"
)]
pub(crate) fn encode(lsn: Lsn, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("a log record payload must be below 4 GiB");
    let lsn_bytes = lsn.0.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&lsn_bytes), payload);
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&lsn_bytes);
    out.extend_from_slice(payload);
}

/// What the bytes at some offset hold.
#[derive(Debug)]
pub(crate) enum Decoded<'a> {
    /// A complete record with a matching checksum.
    Record {
        lsn: Lsn,
        payload: &'a [u8],
        /// Framed length (header + payload).
        framed_len: usize,
    },
    /// Fewer bytes than the 16-byte record header.
    ShortHeader { available: usize },
    /// The header promises more payload than the buffer holds.
    ShortPayload { claimed: u32, available: usize },
    /// A 16-byte header of zeros: preallocated or never-written space.
    Zeros,
    /// Complete, but the checksum does not match.
    BadChecksum { lsn: u64, claimed: u32 },
}

/// Decodes the record at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some((header, rest)) = buf.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return Decoded::ShortHeader {
            available: buf.len(),
        };
    };
    if header.iter().all(|&b| b == 0) {
        return Decoded::Zeros;
    }
    let [
        l0,
        l1,
        l2,
        l3,
        c0,
        c1,
        c2,
        c3,
        n0,
        n1,
        n2,
        n3,
        n4,
        n5,
        n6,
        n7,
    ] = *header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let lsn_bytes = [n0, n1, n2, n3, n4, n5, n6, n7];
    let lsn = u64::from_le_bytes(lsn_bytes);
    let Some(payload) = usize::try_from(len).ok().and_then(|n| rest.get(..n)) else {
        return Decoded::ShortPayload {
            claimed: len,
            available: rest.len(),
        };
    };
    let actual = crc32c::crc32c_append(crc32c::crc32c(&lsn_bytes), payload);
    if actual != crc {
        return Decoded::BadChecksum { lsn, claimed: len };
    }
    Decoded::Record {
        lsn: Lsn(lsn),
        payload,
        framed_len: RECORD_HEADER_LEN + payload.len(),
    }
}
