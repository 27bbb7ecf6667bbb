//! Durability: log groups (group commit to a shared write-ahead log), the
//! background checkpointer, and recovery.
//!
//! Shards keep their own logical log (records tagged with the shard), their
//! own checkpoints and their own recovery position, but shards of one *log
//! group* share a physical log: on one disk every `fdatasync` is a device
//! flush, and measured here one flush per shard per commit multiplied commit
//! latency by the shard count (16 files: 3.8 ms vs 0.2 ms). A log group is
//! also the I/O failure domain: it is taken down and recovered alone.

mod checkpointer;
mod log_group;
mod recovery;

use std::{sync::Arc, time::Duration};

use parking_lot::Mutex;
use statefn_store::{DataDir, LogBackend, LogGroupId, StateStore};

pub(crate) use self::checkpointer::Checkpointer;
pub(crate) use self::log_group::refused_effects;
pub(crate) use self::log_group::{GroupCommand, LogGroup};
pub(crate) use self::recovery::RecoveredGroup;
use self::recovery::{GroupSource, recover_group};
use crate::{Error, clock::Clock, shard::CoreConfig};

/// When a committed invocation is on disk.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use statefn::Durability;
///
/// let default = Durability::default();
/// assert_eq!(default, Durability::Fsync);
/// let relaxed = Durability::Periodic(Duration::from_millis(5));
/// # let _ = relaxed;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A reply means the invocation's log record was `fdatasync`ed (one
    /// group commit covers many invocations): nothing acknowledged is lost.
    #[default]
    Fsync,
    /// Replies are released once the record is written to the OS, and the
    /// log is synced at least every interval: a process crash loses nothing,
    /// a machine crash loses at most the last interval.
    Periodic(Duration),
    /// Nothing survives the process: for tests and caches.
    InMemory,
}

/// The durable runtime's parts shared by the syncers, the checkpointer and
/// the workers.
#[derive(Debug)]
pub(crate) struct Durable {
    /// Taken at shutdown so that fjall closes and the directory can be reopened.
    store: Mutex<Option<StateStore>>,
    /// Opens the log groups' logs.
    pub(crate) logs: Arc<dyn LogBackend>,
    pub(crate) data_dir: Mutex<Option<DataDir>>,
    pub(crate) mode: Durability,
    pub(crate) shards: u16,
    pub(crate) log_groups: u16,
    pub(crate) core: CoreConfig,
    /// Ask for checkpoints of a group once its log holds this many bytes.
    pub(crate) checkpoint_log_bytes: u64,
    pub(crate) groups: Vec<LogGroup>,
    pub(crate) checkpointer: Checkpointer,
    pub(crate) clock: Clock,
}

impl Durable {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: StateStore,
        logs: Arc<dyn LogBackend>,
        data_dir: DataDir,
        mode: Durability,
        log_groups: u16,
        core: CoreConfig,
        checkpoint_log_bytes: u64,
        clock: Clock,
    ) -> Self {
        Durable {
            store: Mutex::new(Some(store)),
            logs,
            shards: data_dir.shards(),
            data_dir: Mutex::new(Some(data_dir)),
            mode,
            log_groups,
            core,
            checkpoint_log_bytes,
            groups: (0..log_groups).map(|_| LogGroup::new()).collect(),
            checkpointer: Checkpointer::new(),
            clock,
        }
    }

    /// The state store, until shutdown.
    pub(crate) fn store(&self) -> Result<StateStore, Error> {
        self.store
            .lock()
            .clone()
            .ok_or_else(|| Error::Storage("the runtime has shut down".into()))
    }

    /// Closes the store and unlocks the data directory (after shutdown).
    pub(crate) fn close(&self) {
        self.store.lock().take();
        self.data_dir.lock().take();
    }

    /// The source for recovering `group`'s shards.
    pub(crate) fn recover(&self, group: u16, epoch: u64) -> Result<RecoveredGroup, Error> {
        let store = self.store()?;
        let source = GroupSource {
            store: &store,
            logs: self.logs.as_ref(),
            group: LogGroupId(group),
            core: &self.core,
            now_ms: self.clock.now_ms(),
        };
        recover_group(&source, &self.group_shards(group), epoch)
    }

    pub(crate) fn group_of(&self, shard: u16) -> u16 {
        shard % self.log_groups
    }

    pub(crate) fn group_shards(&self, group: u16) -> Vec<u16> {
        group_shards(self.shards, self.log_groups, group)
    }
}

pub(crate) fn group_shards(shards: u16, log_groups: u16, group: u16) -> Vec<u16> {
    (0..shards).filter(|s| s % log_groups == group).collect()
}
