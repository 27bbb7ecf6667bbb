//! Writes `tests/fixtures/data-v2-records-v2/` (see
//! `statefn_tests::fixture_records_v2`), and its log records as seeds of the
//! `log_record_decode` fuzz target (`r2-record-<lsn>`, in `fuzz/seeds/` and
//! `tests/tests/fuzz_inputs/`, decoded by `fuzz_regressions.rs` against its
//! golden file): run once, by the build whose formats it keeps (record
//! version 2), then check them in. Never rewrite them for a later format:
//! that format gets a fixture of its own.
//!
//! ```text
//! cargo run -p statefn-tests --bin write-fixture-records-v2
//! ```

use std::{path::Path, sync::Arc};

use statefn_store::{Lsn, StdFs, Wal, WalOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("fixtures/data-v2-records-v2");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    statefn_tests::fixture_records_v2::write(&dir)?;
    // The lock file is made by every open; it holds nothing.
    let lock = dir.join("LOCK");
    if lock.exists() {
        std::fs::remove_file(lock)?;
    }
    trim_journals(&dir.join("state"))?;
    println!("wrote {}", dir.display());

    // Read from a copy: opening a log may write to it.
    let copy = tempfile::tempdir()?;
    let wal = copy.path().join("wal");
    std::fs::create_dir_all(&wal)?;
    for entry in std::fs::read_dir(dir.join("wal/group-0000"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), wal.join(entry.file_name()))?;
    }
    let (_, records) = Wal::open(Arc::new(StdFs), &wal, WalOptions::default(), Lsn(1))?;
    for seeds in [
        root.join("../fuzz/seeds/log_record_decode"),
        root.join("tests/fuzz_inputs/log_record_decode"),
    ] {
        for entry in std::fs::read_dir(&seeds)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("r2-record-"))
            {
                std::fs::remove_file(path)?;
            }
        }
        for record in &records {
            let name = format!("r2-record-{:03}", record.lsn.0);
            std::fs::write(seeds.join(name), &record.payload)?;
        }
        println!(
            "wrote {} seed records to {}",
            records.len(),
            seeds.display()
        );
    }
    Ok(())
}

/// The state store's journal is preallocated (64 MiB of zeros past its
/// last entry, as the writer was killed): keep its entries and a margin of
/// zeros (recovery reads up to the first zeroed entry), so that a checkout
/// is not 64 MiB.
fn trim_journals(state: &Path) -> std::io::Result<()> {
    const MARGIN: usize = 512;
    const PAGE: usize = 4096;
    for entry in std::fs::read_dir(state)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jnl") {
            let bytes = std::fs::read(&path)?;
            let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            let keep = (used + MARGIN).div_ceil(PAGE) * PAGE;
            if keep < bytes.len() {
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(u64::try_from(keep).unwrap_or(u64::MAX))?;
                file.sync_all()?;
            }
        }
    }
    Ok(())
}
