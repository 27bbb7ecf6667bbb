//! [`StoreError`]: failures of the state store.

/// An error from the [`StateStore`](super::StateStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// fjall failed. After an I/O failure fjall poisons itself and every
    /// later call fails too.
    #[error(
        "state store failed while {context}: {source}; check the disk, then restart the process (shards recover from their checkpoints and logs)"
    )]
    Fjall {
        /// What the store was doing.
        context: &'static str,
        /// The fjall error.
        #[source]
        source: fjall::Error,
    },

    /// A key is longer than fjall allows once the shard prefix is added.
    #[error(
        "state store key of {len} bytes is too long (at most {max} bytes); use a shorter key, e.g. a hash"
    )]
    KeyTooLong {
        /// The caller's key length.
        len: usize,
        /// The longest key accepted.
        max: usize,
    },

    /// A value is larger than fjall allows.
    #[error("state store value of {len} bytes is too large (at most {max} bytes); split it")]
    ValueTooLarge {
        /// The value length.
        len: usize,
        /// The largest value accepted.
        max: usize,
    },

    /// A stored value does not have the shape its table gives it.
    #[error(
        "state store holds a malformed value: {what}: {reason}; the data directory is damaged or was written by another program"
    )]
    Corrupt {
        /// Which value.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn fjall(context: &'static str) -> impl FnOnce(fjall::Error) -> StoreError {
        move |source| StoreError::Fjall { context, source }
    }
}
