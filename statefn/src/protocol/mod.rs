//! The exactly-once protocol's nouns, one per file: what travels
//! ([`envelope`]), how it is identified ([`ids`]), how duplicates are
//! recognised ([`idempotency`] for client calls, [`channel`] between
//! functions), what a sender keeps until the receiver has it ([`outbox`],
//! [`acks`]), what a commit writes ([`record`], whose older versions `record_v1` reads), and how a stale writer is
//! refused ([`epoch`]).
//!
//! The steps that use them, in protocol order, are listed with their files
//! at the top of the crate (`src/lib.rs`, "How it works").

pub(crate) mod acks;
pub(crate) mod channel;
pub(crate) mod envelope;
pub(crate) mod epoch;
pub(crate) mod idempotency;
pub(crate) mod ids;
pub(crate) mod outbox;
pub(crate) mod record;
pub(crate) mod record_v1;

#[cfg(test)]
mod golden;
