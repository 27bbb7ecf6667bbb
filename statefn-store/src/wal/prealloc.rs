//! Preallocation: how far ahead of the writer a segment's tail is zeroed.
//!
//! An `fdatasync` that only overwrites bytes already in the file changes no
//! file size and so journals no metadata: on ext4 it is about 30% faster
//! than one after an append (issue 14). The writer therefore writes zeros
//! (really, not `fallocate`, whose unwritten extents are converted and
//! journaled again on the first write into them) ahead of its position and
//! then writes its records over them.
//!
//! The zeros go in chunks that double with the segment, from
//! [`MIN_CHUNK`] up to [`WalOptions::preallocate_bytes`], never past the
//! segment size: a small log (a test, an idle group) zeroes little, a busy
//! one extends rarely. The commit whose records do not fit in the zeros
//! writes the next chunk after them; its one `fdatasync` makes both durable
//! (it would have been an append anyway).
//!
//! [`WalOptions::preallocate_bytes`]: super::WalOptions::preallocate_bytes

/// The first chunk of a segment (or all of `preallocate_bytes`, if less).
pub(crate) const MIN_CHUNK: u64 = 64 << 10;

/// The end of the zeros a segment should have once a write that ends at
/// `written` is in it: `allocated` (no extension) while the write fits in
/// the zeros, else the next chunk's end, bounded by `segment_bytes`.
///
/// `max_chunk` 0 turns preallocation off.
pub(crate) fn zeroed_end(allocated: u64, written: u64, segment_bytes: u64, max_chunk: u64) -> u64 {
    if max_chunk == 0 || written <= allocated || written >= segment_bytes {
        return allocated.max(written);
    }
    let chunk = allocated.clamp(MIN_CHUNK.min(max_chunk), max_chunk);
    written.saturating_add(chunk).min(segment_bytes)
}

/// The end of the zeros to write ahead of time (while the writer is idle)
/// when less than half a chunk is left after `len`, else `None`.
pub(crate) fn idle_extension(
    allocated: u64,
    len: u64,
    segment_bytes: u64,
    max_chunk: u64,
) -> Option<u64> {
    let chunk = allocated.clamp(MIN_CHUNK.min(max_chunk), max_chunk);
    let target = allocated.saturating_add(chunk).min(segment_bytes);
    (max_chunk > 0 && target > allocated && allocated.saturating_sub(len) < chunk / 2)
        .then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_double_up_to_the_maximum_and_stop_at_the_segment_size() {
        let max = 4 << 20;
        let seg = 64 << 20;
        // A write inside the zeros extends nothing.
        assert_eq!(zeroed_end(1000, 900, seg, max), 1000);
        // A new segment gets the smallest chunk after its first write.
        assert_eq!(zeroed_end(0, 100, seg, max), 100 + MIN_CHUNK);
        // Then chunks as large as what is allocated, up to the maximum.
        assert_eq!(zeroed_end(1 << 20, (1 << 20) + 5, seg, max), (2 << 20) + 5);
        assert_eq!(
            zeroed_end(32 << 20, (32 << 20) + 5, seg, max),
            (36 << 20) + 5
        );
        // Never past the segment size.
        assert_eq!(zeroed_end(seg - 10, seg - 5, seg, max), seg);
        // A record larger than the segment gets no zeros.
        assert_eq!(zeroed_end(0, seg + 1, seg, max), seg + 1);
        // Off.
        assert_eq!(zeroed_end(0, 100, seg, 0), 100);
    }

    #[test]
    fn an_idle_writer_extends_only_when_less_than_half_a_chunk_is_left() {
        let max = 4 << 20;
        let seg = 64 << 20;
        let chunk = 1 << 20;
        assert_eq!(idle_extension(chunk, chunk / 2, seg, max), None);
        assert_eq!(
            idle_extension(chunk, chunk / 2 + 2, seg, max),
            Some(2 * chunk)
        );
        assert_eq!(idle_extension(seg - 10, seg - 20, seg, max), Some(seg));
        assert_eq!(idle_extension(seg, seg - 20, seg, max), None);
        assert_eq!(idle_extension(100, 90, seg, 0), None);
    }
}
