//! Who waits for an enqueued invocation to settle
//! ([`Runtime::invocation`](crate::Runtime::invocation) with a wait, `GET
//! /v1/invocations/{id}?wait=`): the release of the batch that stored its
//! outcome wakes them, so a waiter asks its shard again once, when there is
//! something new to read, instead of polling.
//!
//! The registry is bounded ([`MAX_INVOCATION_WAITERS`]) and every entry
//! belongs to a [`Waiter`] guard: dropping the guard (the wait ended, timed
//! out, or its HTTP client went away and the request's future was dropped)
//! removes it, so nothing is left behind.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;

use tokio::sync::Notify;

use crate::Address;

/// How many waits for invocations may be registered at once, over all
/// invocations: past it, a wait answers at once with the current status.
pub const MAX_INVOCATION_WAITERS: usize = 10_000;

/// One invocation's waiters: a shared wake-up and how many guards hold it.
#[derive(Debug)]
struct Entry {
    notify: Arc<Notify>,
    guards: usize,
}

/// The waiters, by (instance, key) of the invocation.
#[derive(Debug, Default)]
pub(crate) struct InvocationWaiters {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    by_invocation: HashMap<(Address, String), Entry>,
    /// Guards alive, over all invocations.
    total: usize,
}

impl InvocationWaiters {
    /// Registers a wait for `key` of `target`; `None` when
    /// [`MAX_INVOCATION_WAITERS`] are registered already.
    pub(crate) fn register(self: &Arc<Self>, target: &Address, key: &str) -> Option<Waiter> {
        let mut registry = self.inner.lock();
        if registry.total >= MAX_INVOCATION_WAITERS {
            return None;
        }
        registry.total += 1;
        let entry = registry
            .by_invocation
            .entry((target.clone(), key.to_owned()))
            .or_insert_with(|| Entry {
                notify: Arc::new(Notify::new()),
                guards: 0,
            });
        entry.guards += 1;
        Some(Waiter {
            notify: entry.notify.clone(),
            waiters: self.clone(),
            invocation: (target.clone(), key.to_owned()),
        })
    }

    /// Wakes whoever waits for the invocations whose outcomes a released
    /// batch stored.
    pub(crate) fn wake(&self, settled: &[(Address, String)]) {
        if settled.is_empty() {
            return;
        }
        let registry = self.inner.lock();
        if registry.total == 0 {
            return;
        }
        for invocation in settled {
            if let Some(entry) = registry.by_invocation.get(invocation) {
                entry.notify.notify_waiters();
            }
        }
    }

    /// How many waits are registered now (for tests and the registry's
    /// bound).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().total
    }

    fn release(&self, invocation: &(Address, String)) {
        let mut registry = self.inner.lock();
        registry.total = registry.total.saturating_sub(1);
        if let Some(entry) = registry.by_invocation.get_mut(invocation) {
            entry.guards = entry.guards.saturating_sub(1);
            if entry.guards == 0 {
                registry.by_invocation.remove(invocation);
            }
        }
    }
}

/// A registered wait: [`notify`](Self::notify) is woken when the
/// invocation's outcome is stored; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Waiter {
    notify: Arc<Notify>,
    waiters: Arc<InvocationWaiters>,
    invocation: (Address, String),
}

impl Waiter {
    /// The wake-up: create and `enable` a `notified()` future *before*
    /// reading the status, so that a wake between the read and the wait is
    /// not lost.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters.release(&self.invocation);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{InvocationWaiters, MAX_INVOCATION_WAITERS};
    use crate::Address;

    #[test]
    fn guards_unregister_on_drop_and_the_registry_is_bounded() {
        let waiters = Arc::new(InvocationWaiters::default());
        let target = Address::new("T", "a").unwrap_or_else(|e| panic!("{e}"));
        let first = waiters.register(&target, "k");
        let second = waiters.register(&target, "k");
        assert!(first.is_some() && second.is_some());
        assert_eq!(waiters.len(), 2);
        drop(first);
        assert_eq!(waiters.len(), 1);
        drop(second);
        assert_eq!(waiters.len(), 0);
        assert!(waiters.inner.lock().by_invocation.is_empty());

        let held: Vec<_> = (0..MAX_INVOCATION_WAITERS)
            .map(|i| waiters.register(&target, &i.to_string()))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(waiters.register(&target, "one-too-many").is_none());
        drop(held);
        assert_eq!(waiters.len(), 0);
        assert!(waiters.register(&target, "again").is_some());
    }
}
