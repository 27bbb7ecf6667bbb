//! The data directory records its format and shard count, refuses to open
//! when they disagree, and is locked against a second user.
#![allow(clippy::unwrap_used)]

use statefn_store::{
    DATA_DIR_FORMAT_VERSION, DataDir, DataDirError, LogGroupId, OLDEST_DATA_DIR_FORMAT_VERSION,
};

#[test]
fn first_open_writes_the_format_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    let data = DataDir::open(&root, 16).unwrap();
    let text = std::fs::read_to_string(root.join("FORMAT")).unwrap();
    assert!(text.contains("format_version = 2"), "{text}");
    assert!(text.contains("shards = 16"), "{text}");
    assert_eq!(data.shards(), 16);
    assert_eq!(data.format_version(), DATA_DIR_FORMAT_VERSION);
    assert_eq!(data.path(), root);
    assert_eq!(
        data.wal_dir(LogGroupId(7)),
        root.join("wal").join("group-0007")
    );
    assert_eq!(data.state_dir(), root.join("state"));
    drop(data);
    // Reopening with the same configuration works.
    DataDir::open(&root, 16).unwrap();
}

#[test]
fn a_different_shard_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(DataDir::open(dir.path(), 16).unwrap());
    match DataDir::open(dir.path(), 32) {
        Err(DataDirError::ShardCountMismatch { found, configured }) => {
            assert_eq!((found, configured), (16, 32));
        }
        other => panic!("expected ShardCountMismatch, got {other:?}"),
    }
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(DataDir::open(dir.path(), 4).unwrap());
    std::fs::write(
        dir.path().join("FORMAT"),
        "format_version = 3\nshards = 4\nfuture_field = yes\n",
    )
    .unwrap();
    match DataDir::open(dir.path(), 4) {
        Err(e @ DataDirError::NewerFormat { .. }) => {
            assert!(e.to_string().contains("upgrade"), "{e}");
            let DataDirError::NewerFormat {
                path,
                found,
                supported,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(path, dir.path().join("FORMAT"));
            assert_eq!((found, supported), (3, 2));
        }
        other => panic!("expected NewerFormat, got {other:?}"),
    }
}

#[test]
fn an_unreadable_format_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("FORMAT"), "shards = many\n").unwrap();
    assert!(matches!(
        DataDir::open(dir.path(), 4),
        Err(DataDirError::InvalidFormatFile { .. })
    ));
    std::fs::write(dir.path().join("FORMAT"), "shards = 4\n").unwrap();
    assert!(matches!(
        DataDir::open(dir.path(), 4),
        Err(DataDirError::InvalidFormatFile { .. })
    ));
}

#[test]
fn the_directory_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = DataDir::open(dir.path(), 8).unwrap();
    assert!(matches!(
        DataDir::open(dir.path(), 8),
        Err(DataDirError::Locked { .. })
    ));
    drop(first);
    let again = DataDir::open(dir.path(), 8).unwrap();
    assert_eq!(again.shards(), 8);
}

#[test]
fn zero_shards_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        DataDir::open(dir.path(), 0),
        Err(DataDirError::NoShards)
    ));
}

#[test]
fn log_group_count_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open_with_log_groups(dir.path(), 8, 4).unwrap();
    assert_eq!(data.log_groups(), 4);
    drop(data);
    match DataDir::open_with_log_groups(dir.path(), 8, 2) {
        Err(DataDirError::LogGroupMismatch { found, configured }) => {
            assert_eq!((found, configured), (4, 2));
        }
        other => panic!("expected LogGroupMismatch, got {other:?}"),
    }
    assert!(DataDir::open_with_log_groups(dir.path(), 8, 4).is_ok());
    assert!(
        DataDir::open_with_log_groups(dir.path(), 2, 4).is_err(),
        "more groups than shards"
    );
}

#[test]
fn a_format_1_directory_opens_for_its_upgrade_and_stays_1_until_it_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let format = dir.path().join("FORMAT");
    let v1 =
        "# statefn data directory; do not edit\nformat_version = 1\nshards = 4\nlog_groups = 1\n";
    std::fs::write(&format, v1).unwrap();
    let data = DataDir::open(dir.path(), 4).unwrap();
    assert_eq!(data.format_version(), 1);
    // Opening is not upgrading: a crash before `finish_upgrade` leaves 1.
    drop(data);
    assert_eq!(std::fs::read_to_string(&format).unwrap(), v1);
    let mut data = DataDir::open(dir.path(), 4).unwrap();
    assert_eq!(data.format_version(), 1);
    data.finish_upgrade().unwrap();
    assert_eq!(data.format_version(), 2);
    drop(data);
    let text = std::fs::read_to_string(&format).unwrap();
    assert!(text.contains("format_version = 2"), "{text}");
    assert!(
        text.contains("shards = 4") && text.contains("log_groups = 1"),
        "{text}"
    );
    assert_eq!(DataDir::open(dir.path(), 4).unwrap().format_version(), 2);
}

#[test]
fn a_format_older_than_the_oldest_upgradable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("FORMAT"),
        "format_version = 0\nshards = 4\n",
    )
    .unwrap();
    match DataDir::open(dir.path(), 4) {
        Err(DataDirError::OlderFormat { found, oldest, .. }) => {
            assert_eq!((found, oldest), (0, OLDEST_DATA_DIR_FORMAT_VERSION));
        }
        other => panic!("expected OlderFormat, got {other:?}"),
    }
}
