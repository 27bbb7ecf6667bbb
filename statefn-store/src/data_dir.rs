//! [`DataDir`]: the root directory of one statefn node, its format file and
//! its lock.
//!
//! Layout:
//!
//! ```text
//! <path>/FORMAT            format version, shard count, log-group count
//! <path>/LOCK              held exclusively while a process uses the dir
//! <path>/wal/group-0007/   one write-ahead log per log group of shards
//! <path>/state/            the fjall state store
//! ```
//!
//! The shard count is recorded because keys hash to shards: reopening with a
//! different count would look for every key in the wrong shard.
//!
//! The format version covers what the values in the log and the tables mean
//! (this crate stores them opaque; `statefn` gives them their meaning). A
//! directory of an older format that this build can upgrade opens with
//! [`DataDir::format_version`] telling which; its user converts the values,
//! makes that durable, and only then calls [`DataDir::finish_upgrade`], so a
//! crash in between leaves the old version recorded and the conversion runs
//! again. The history of every format is in `docs/formats.md`. Shards share a
//! physical log per log group because on one disk every `fdatasync` costs a
//! device flush: one log per shard would multiply the flushes per commit.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::LogGroupId;

/// The data-directory format this build writes and the newest it reads.
///
/// 1. The first format: stored messages name their handler by its position
///    among the function's handlers.
/// 2. Stored messages name their handler by name and carry a fingerprint of
///    its arguments; everything else as in 1.
pub const DATA_DIR_FORMAT_VERSION: u32 = 2;

/// The oldest data-directory format this build opens (and upgrades).
pub const OLDEST_DATA_DIR_FORMAT_VERSION: u32 = 1;

const FORMAT_FILE: &str = "FORMAT";
const LOCK_FILE: &str = "LOCK";

/// An error opening a [`DataDir`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// A file-system call failed.
    #[error("I/O error on data directory file {}: {source}; check the path and permissions", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The directory was written by a newer statefn.
    #[error(
        "data directory {} has format version {found}, but this build supports up to version {supported}: it was written by a newer statefn; upgrade",
        path.display()
    )]
    NewerFormat {
        /// The format file.
        path: PathBuf,
        /// The version it records.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// The directory was created with a different number of shards.
    #[error(
        "data directory was created with {found} shards but {configured} are configured; configure {found} shards (changing the count needs a migration)"
    )]
    ShardCountMismatch {
        /// The shard count on disk.
        found: u16,
        /// The shard count asked for.
        configured: u16,
    },
    /// The directory was created with a different number of log groups.
    #[error(
        "data directory was created with {found} log groups but {configured} are configured; configure {found} (the logs of the existing groups hold data)"
    )]
    LogGroupMismatch {
        /// Log groups recorded in the directory.
        found: u16,
        /// Log groups configured now.
        configured: u16,
    },

    /// Another process (or another `DataDir` in this one) holds the lock.
    #[error(
        "data directory {} is locked by another statefn process; stop it or use another directory",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// The directory was written in a format too old for this build to
    /// upgrade.
    #[error(
        "data directory {} has format version {found}, but this build upgrades only from version {oldest}: open it with an older statefn first, which upgrades it",
        path.display()
    )]
    OlderFormat {
        /// The format file.
        path: PathBuf,
        /// The version it records.
        found: u32,
        /// The oldest version this build opens.
        oldest: u32,
    },

    /// The format file exists but cannot be understood.
    #[error(
        "data directory format file {} is invalid: {reason}; restore it or point statefn at the right directory",
        path.display()
    )]
    InvalidFormatFile {
        /// The format file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// Zero shards, zero log groups or more log groups than shards were asked for.
    #[error(
        "a data directory needs at least one shard and from 1 to that many log groups; fix the configuration"
    )]
    NoShards,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The root directory of a statefn node, locked for exclusive use.
///
/// The lock is released when the `DataDir` is dropped (or the process dies,
/// so a crash never leaves a stale lock behind).
///
/// # Examples
///
/// ```
/// use statefn_store::{DataDir, DataDirError, LogGroupId};
///
/// let dir = tempfile::tempdir()?;
/// let data = DataDir::open(dir.path(), 8)?;
/// assert!(data.wal_dir(LogGroupId(0)).ends_with("wal/group-0000"));
/// assert!(matches!(DataDir::open(dir.path(), 8), Err(DataDirError::Locked { .. })));
/// drop(data);
/// assert!(matches!(
///     DataDir::open(dir.path(), 16),
///     Err(DataDirError::ShardCountMismatch { found: 8, configured: 16 })
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    shards: u16,
    log_groups: u16,
    /// The format recorded on disk.
    format: u32,
    /// Held for the lifetime of the `DataDir`; the lock goes with the handle.
    _lock: File,
}

impl DataDir {
    /// Opens (creating on first use) the data directory at `path` for
    /// `shards` shards and locks it.
    ///
    /// # Errors
    ///
    /// [`DataDirError::Locked`] if another process uses it,
    /// [`DataDirError::NewerFormat`], [`DataDirError::OlderFormat`],
    /// [`DataDirError::ShardCountMismatch`] or
    /// [`DataDirError::InvalidFormatFile`] if its format file disagrees,
    /// [`DataDirError::Io`] on file-system failures.
    pub fn open(path: impl AsRef<Path>, shards: u16) -> Result<DataDir, DataDirError> {
        Self::open_with_log_groups(path, shards, 1)
    }

    /// Like [`open`](Self::open), with `log_groups` physical logs shared by
    /// the shards (shard `s` writes to group `s % log_groups`).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`DataDirError::LogGroupMismatch`] if the
    /// directory was created with another number of log groups.
    pub fn open_with_log_groups(
        path: impl AsRef<Path>,
        shards: u16,
        log_groups: u16,
    ) -> Result<DataDir, DataDirError> {
        let path = path.as_ref().to_path_buf();
        if shards == 0 || log_groups == 0 || log_groups > shards {
            return Err(DataDirError::NoShards);
        }
        fs::create_dir_all(&path).map_err(io_err(&path))?;
        let lock = lock(&path.join(LOCK_FILE))?;
        let format_path = path.join(FORMAT_FILE);
        let format = match fs::read_to_string(&format_path) {
            Ok(text) => check_format(&format_path, &text, shards, log_groups)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_format(&path, shards, log_groups)?;
                DATA_DIR_FORMAT_VERSION
            }
            Err(e) => return Err(io_err(&format_path)(e)),
        };
        Ok(DataDir {
            path,
            shards,
            log_groups,
            format,
            _lock: lock,
        })
    }

    /// The format version recorded in the directory: [`DATA_DIR_FORMAT_VERSION`],
    /// or an older one (at least [`OLDEST_DATA_DIR_FORMAT_VERSION`]) whose
    /// values the user of the directory must convert before it calls
    /// [`finish_upgrade`](Self::finish_upgrade).
    ///
    /// # Examples
    ///
    /// ```
    /// use statefn_store::{DATA_DIR_FORMAT_VERSION, DataDir};
    ///
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("FORMAT"), "format_version = 1\nshards = 2\n")?;
    /// let mut data = DataDir::open(dir.path(), 2)?;
    /// assert_eq!(data.format_version(), 1);
    /// // ... convert every stored value, durably, then:
    /// data.finish_upgrade()?;
    /// assert_eq!(data.format_version(), DATA_DIR_FORMAT_VERSION);
    /// drop(data);
    /// assert_eq!(DataDir::open(dir.path(), 2)?.format_version(), DATA_DIR_FORMAT_VERSION);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn format_version(&self) -> u32 {
        self.format
    }

    /// Records that the directory is in format [`DATA_DIR_FORMAT_VERSION`]
    /// now: call it only once every value of the older format was converted
    /// and the conversion is durable.
    ///
    /// # Durability
    ///
    /// The format file is replaced atomically and synced (file and
    /// directory) before this returns; a crash before that leaves the older
    /// version recorded, so the conversion runs again.
    ///
    /// # Errors
    ///
    /// [`DataDirError::Io`] if the file cannot be written; the older version
    /// stays recorded.
    pub fn finish_upgrade(&mut self) -> Result<(), DataDirError> {
        if self.format != DATA_DIR_FORMAT_VERSION {
            write_format(&self.path, self.shards, self.log_groups)?;
            self.format = DATA_DIR_FORMAT_VERSION;
        }
        Ok(())
    }

    /// The root path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of shards the directory was created for.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// The number of log groups: shards share a physical write-ahead log
    /// per group, so that one `fdatasync` commits all of them.
    pub fn log_groups(&self) -> u16 {
        self.log_groups
    }

    /// The directory of every log group's write-ahead log (`<path>/wal`),
    /// the root of a [`WalBackend`](crate::WalBackend).
    pub fn wal_root(&self) -> PathBuf {
        self.path.join("wal")
    }

    /// The write-ahead log directory of log group `group` (`<path>/wal/group-0007`).
    pub fn wal_dir(&self, group: LogGroupId) -> PathBuf {
        group_dir(&self.wal_root(), group)
    }

    /// The directory of the fjall state store (`<path>/state`).
    pub fn state_dir(&self) -> PathBuf {
        self.path.join("state")
    }
}

/// The log directory of `group` under `root`: `group-0007`. Part of the
/// on-disk format: never rename.
pub(crate) fn group_dir(root: &Path, group: LogGroupId) -> PathBuf {
    root.join(format!("group-{:04}", group.0))
}

fn lock(path: &Path) -> Result<File, DataDirError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(DataDirError::Locked {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io_err(path)(e)),
    }
}

fn format_text(shards: u16, log_groups: u16) -> String {
    format!(
        "# statefn data directory; do not edit\nformat_version = {DATA_DIR_FORMAT_VERSION}\nshards = {shards}\nlog_groups = {log_groups}\n"
    )
}

/// Writes the format file atomically (temp file, fsync, rename, dir fsync),
/// so a crash never leaves a half-written one behind.
fn write_format(dir: &Path, shards: u16, log_groups: u16) -> Result<(), DataDirError> {
    let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
    let target = dir.join(FORMAT_FILE);
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(format_text(shards, log_groups).as_bytes())
        .map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &target).map_err(io_err(&target))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Checks the format file against the configuration; returns its version.
fn check_format(
    path: &Path,
    text: &str,
    configured: u16,
    configured_groups: u16,
) -> Result<u32, DataDirError> {
    let invalid = |reason: String| DataDirError::InvalidFormatFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut version = None;
    let mut shards = None;
    let mut groups = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(invalid(format!("line {line:?} is not `key = value`")));
        };
        let value = value.trim();
        match key.trim() {
            "format_version" => {
                version = Some(value.parse::<u32>().map_err(|e| {
                    invalid(format!("format_version {value:?} is not a number: {e}"))
                })?);
            }
            "shards" => {
                shards =
                    Some(value.parse::<u16>().map_err(|e| {
                        invalid(format!("shards {value:?} is not a shard count: {e}"))
                    })?);
            }
            "log_groups" => {
                groups =
                    Some(value.parse::<u16>().map_err(|e| {
                        invalid(format!("log_groups {value:?} is not a count: {e}"))
                    })?);
            }
            // Unknown keys are allowed so that a newer minor format can add
            // fields; an incompatible change bumps the version instead.
            _ => {}
        }
    }
    let version = version.ok_or_else(|| invalid("format_version is missing".into()))?;
    if version > DATA_DIR_FORMAT_VERSION {
        return Err(DataDirError::NewerFormat {
            path: path.to_path_buf(),
            found: version,
            supported: DATA_DIR_FORMAT_VERSION,
        });
    }
    if version < OLDEST_DATA_DIR_FORMAT_VERSION {
        return Err(DataDirError::OlderFormat {
            path: path.to_path_buf(),
            found: version,
            oldest: OLDEST_DATA_DIR_FORMAT_VERSION,
        });
    }
    let found = shards.ok_or_else(|| invalid("shards is missing".into()))?;
    if found != configured {
        return Err(DataDirError::ShardCountMismatch { found, configured });
    }
    let found = groups.unwrap_or(1);
    if found != configured_groups {
        return Err(DataDirError::LogGroupMismatch {
            found,
            configured: configured_groups,
        });
    }
    Ok(version)
}
