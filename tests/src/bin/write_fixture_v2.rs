//! Writes `tests/fixtures/data-v2/` (see `statefn_tests::fixture_v2`), and
//! its log records as seeds of the `log_record_decode` fuzz target
//! (`v2-record-<lsn>`, in `fuzz/seeds/` and `tests/tests/fuzz_inputs/`,
//! decoded by `fuzz_regressions.rs` against its golden file): run once, by
//! the build whose format they keep, then check them in.
//!
//! ```text
//! cargo run -p statefn-tests --bin write-fixture-v2
//! ```

use std::{path::Path, sync::Arc};

use statefn_store::{Lsn, StdFs, Wal, WalOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("fixtures/data-v2");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    statefn_tests::fixture_v2::write(&dir)?;
    // The lock file is made by every open; it holds nothing.
    let lock = dir.join("LOCK");
    if lock.exists() {
        std::fs::remove_file(lock)?;
    }
    println!("wrote {}", dir.display());

    // Read from a copy: opening a log may write to it.
    let copy = tempfile::tempdir()?;
    let wal = copy.path().join("wal");
    std::fs::create_dir_all(&wal)?;
    let group = dir.join("wal/group-0000");
    for entry in std::fs::read_dir(&group)? {
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
                .is_some_and(|n| n.to_string_lossy().starts_with("v2-record-"))
            {
                std::fs::remove_file(path)?;
            }
        }
        for record in &records {
            let name = format!("v2-record-{:03}", record.lsn.0);
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
