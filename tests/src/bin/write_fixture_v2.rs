//! Writes `tests/fixtures/data-v2/` (see `statefn_tests::fixture_v2`): run
//! once, by the build whose format it keeps, then check the directory in.
//!
//! ```text
//! cargo run -p statefn-tests --bin write-fixture-v2
//! ```

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data-v2");
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
    Ok(())
}
