//! Storage for statefn: a per-shard write-ahead log and a shared state store.
//!
//! This crate stores opaque bytes. It knows nothing about functions,
//! messages or async runtimes; `statefn` decides what the bytes mean.
//!
//! # Tour
//!
//! - [`DataDir`] owns a node's directory: it checks the format and shard
//!   count and locks the directory against a second process.
//! - [`wal::Wal`] is one shard's write-ahead log. A commit is
//!   [`append`](wal::Wal::append) (buffer), [`write`](wal::Wal::write) (to
//!   the OS) and [`PendingSync::sync`](wal::PendingSync::sync) (fdatasync,
//!   possibly on a syncer thread, merging several writes into one group
//!   commit). Opening a log replays the records after a checkpoint, cuts a
//!   torn tail and reports any other damage as corruption.
//! - [`StateStore`] is the fjall-backed store that checkpoints write into,
//!   one keyspace per [`Table`], keys prefixed by shard.
//! - [`io`] is the file-system seam under the log; [`io::FaultyFs`] makes it
//!   fail on command in tests.
//!
//! # Durability
//!
//! A log record is durable once a [`PendingSync`](wal::PendingSync) covering
//! it has synced. A state-store batch is durable once
//! [`StateStore::apply`] with `sync: true` has returned. Any failed log
//! write or fsync poisons the log: it refuses further writes, and reopening
//! recovers exactly what reached the disk.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use statefn_store::io::StdFs;
//! use statefn_store::wal::{Lsn, Wal, WalOptions};
//! use statefn_store::{DataDir, StateStore, Table};
//!
//! let root = tempfile::tempdir()?;
//! let data = DataDir::open(root.path(), 4)?;
//! let store = StateStore::open(&data.state_dir())?;
//!
//! // Shard 2 commits two records.
//! let (mut wal, _) = Wal::open(Arc::new(StdFs), &data.wal_dir(2), WalOptions::default(), Lsn(1))?;
//! wal.append(b"invocation 1");
//! wal.append(b"invocation 2");
//! let durable = wal.write()?.sync()?;
//!
//! // A checkpoint covering them goes into the store, then the log is trimmed.
//! store.apply(
//!     2,
//!     vec![(Table::Meta, b"checkpoint".to_vec(), Some(durable.0.to_be_bytes().to_vec()))],
//!     true,
//! )?;
//! wal.truncate_before(durable.next())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod data_dir;
pub mod io;
pub mod state;
pub mod wal;

pub use data_dir::{DataDir, DataDirError};
pub use state::{Entry, StateStore, StoreError, Table, TableWrite};
