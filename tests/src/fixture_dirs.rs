//! Checked-in data directories (`tests/fixtures/<name>`), copied before a
//! test opens them: opening writes (a checkpoint, an upgrade), and the
//! checked-in bytes must stay what the old build wrote.

use std::path::Path;

/// Copies the fixture `tests/fixtures/<name>` into `to`.
///
/// # Panics
/// When the fixture is missing or a file cannot be copied: the test cannot
/// go on.
pub fn copy_fixture(name: &str, to: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    copy_dir(&fixture, to);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}
