//! `floor`: the physical limits under every durable number.
//!
//! A durable statefn commit is at least one `fdatasync` of a write to the
//! shared write-ahead log, and a checkpoint is at least one synced fjall
//! batch. Measuring both raw, on the same directory, tells how close the
//! runtime gets to the disk. The log writes its records over zeros written
//! ahead of them (an overwrite in place, whose `fdatasync` journals no new
//! file size); the append floor beside it is what a growing file costs.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::FileExt,
    path::Path,
};

use statefn_store::{ShardId, StateStore};

use super::Common;
use crate::{
    measure::{BoxError, Record, Window, blocking_loop},
    scratch::Scratch,
};

/// Appended record sizes: a small invocation record and a page.
const APPEND_BYTES: [usize; 2] = [256, 4096];

/// The pre-zeroed file the overwrite floor writes over (round and round).
const ZEROED_BYTES: u64 = 8 << 20;

/// fjall batch sizes: one commit's worth of states, up to a large checkpoint.
const BATCH_SIZES: [usize; 3] = [1, 64, 256];

/// Distinct keys the fjall writes cycle through, like a checkpoint that
/// keeps rewriting a working set.
const FJALL_KEYS: u64 = 100_000;

/// Runs the scenario.
///
/// # Errors
///
/// Any I/O or store error.
pub fn run(common: &Common) -> Result<(), BoxError> {
    let window = common.window();
    let scratch = Scratch::new(&common.data_dir, "floor")?;
    Record::print_header();
    for bytes in APPEND_BYTES {
        let summary = append_fdatasync(
            &scratch.path().join(format!("append-{bytes}")),
            bytes,
            window,
        )?;
        Record::new("floor", format!("append+fdatasync {bytes}B"), &summary)
            .param("bytes", bytes)
            .emit();
    }
    let summary = overwrite_fdatasync(&scratch.path().join("overwrite-256"), 256, window)?;
    Record::new("floor", "overwrite+fdatasync 256B", &summary)
        .param("bytes", 256)
        .emit();
    let store = StateStore::open(&scratch.path().join("fjall"))?;
    for batch in BATCH_SIZES {
        let summary = fjall_batches(&store, batch, window)?;
        let batches_per_s = summary.ops_per_s();
        Record::new("floor", format!("fjall apply sync x{batch}"), &summary)
            .param("batch", batch)
            .throughput(batches_per_s * batch as f64)
            .field("batches_per_s", batches_per_s)
            .emit();
    }
    Ok(())
}

/// `write` + `fdatasync` of `bytes` at the end of a growing file: what one
/// group commit of the log costs at the least.
pub(crate) fn append_fdatasync(
    path: &Path,
    bytes: usize,
    window: Window,
) -> Result<crate::measure::Summary, BoxError> {
    let mut file: File = OpenOptions::new().create(true).append(true).open(path)?;
    let payload = vec![0xA5u8; bytes];
    blocking_loop(window, &format!("floor: append {bytes}B"), || {
        file.write_all(&payload)?;
        file.sync_data()?;
        Ok(())
    })
}

/// `write` + `fdatasync` of `bytes` in place, over a file zeroed (and
/// synced) beforehand: what one group commit of the log costs at the least
/// now that its segments are preallocated. Wraps around the zeroed file.
pub(crate) fn overwrite_fdatasync(
    path: &Path,
    bytes: usize,
    window: Window,
) -> Result<crate::measure::Summary, BoxError> {
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    for at in (0..ZEROED_BYTES).step_by(zeros.len()) {
        file.write_all_at(&zeros, at)?;
    }
    file.sync_all()?;
    let payload = vec![0xA5u8; bytes];
    let mut at = 0u64;
    blocking_loop(window, &format!("floor: overwrite {bytes}B"), || {
        if at + bytes as u64 > ZEROED_BYTES {
            at = 0;
        }
        file.write_all_at(&payload, at)?;
        file.sync_data()?;
        at += bytes as u64;
        Ok(())
    })
}

/// Synced fjall batches of `batch` 16-byte states through a shard's
/// [`ShardBatch`](statefn_store::ShardBatch): what one checkpoint costs at
/// the least.
fn fjall_batches(
    store: &StateStore,
    batch: usize,
    window: Window,
) -> Result<crate::measure::Summary, BoxError> {
    let mut next = 0u64;
    blocking_loop(window, &format!("floor: fjall x{batch}"), || {
        let mut writes = store.shard(ShardId(0)).batch();
        for _ in 0..batch {
            next += 1;
            let id = format!("k{}", next % FJALL_KEYS);
            writes.put_state("counter", &id, Some([next.to_le_bytes(); 2].concat()));
        }
        writes.commit()?;
        Ok(())
    })
}
