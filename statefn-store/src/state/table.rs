//! [`Table`]: the kinds of data a shard keeps in the state store.

/// One kind of shard data, stored in its own fjall keyspace so that each can
/// be scanned on its own during recovery and tuned separately.
///
/// Each table's keys are laid out by its module in [`crate::tables`]; the
/// values are opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Table {
    /// Function instance state.
    State,
    /// Idempotency key → stored reply, for deduplicating retried requests.
    Idempotency,
    /// Durable timers (delayed messages).
    Timer,
    /// Sent but not yet acknowledged cross-shard envelopes.
    Outbox,
    /// Shard metadata: checkpoint position, per-source watermarks, sequences.
    Meta,
    /// Records emitted to egress logs.
    Egress,
    /// Invocations that exhausted their retries.
    DeadLetter,
}

impl Table {
    /// Every table, in a fixed order.
    pub(crate) const ALL: [Table; 7] = [
        Table::State,
        Table::Idempotency,
        Table::Timer,
        Table::Outbox,
        Table::Meta,
        Table::Egress,
        Table::DeadLetter,
    ];

    /// The name of the fjall keyspace backing this table. Part of the on-disk
    /// format: never rename.
    pub(crate) const fn keyspace_name(self) -> &'static str {
        match self {
            Table::State => "state",
            Table::Idempotency => "idempotency",
            Table::Timer => "timer",
            Table::Outbox => "outbox",
            Table::Meta => "meta",
            Table::Egress => "egress",
            Table::DeadLetter => "dead_letter",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}
