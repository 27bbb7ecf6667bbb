//! A [`Context`] without a runtime, for unit tests of one handler: made by
//! [`Context::for_test`], it records what the handler sends and emits, and
//! gives it back typed ([`Context::sent`], [`Context::emitted`]).

use std::{
    any::Any,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::de::DeserializeOwned;

use super::Context;
use crate::{Address, Error, InvocationId, StatefulFunction, TraceContext, wire::WireMessage};

/// A message a handler sent through a [`Context`] made by
/// [`Context::for_test`], decoded as its target's message enum: see
/// [`Context::sent`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sent<M> {
    /// The instance it is for.
    pub to: Address,
    /// The message (`AccountMessage::Deposit { amount: 5 }`).
    pub message: M,
    /// `ctx.send_after`'s delay; `None` for `ctx.send` and `ctx.request`.
    pub delay: Option<Duration>,
    /// For `ctx.request`: the name of the caller's handler that receives
    /// the reply.
    pub reply_to: Option<String>,
}

impl Context {
    /// A context for calling a handler directly in a unit test, without a
    /// runtime: instance `address`, at unix time 0 (set it with
    /// [`at`](Self::at)), called by a client (no [`caller`](Self::caller)),
    /// invocation id `"test"`, no resources. What the handler sends or
    /// emits is kept: read it with [`sent`](Self::sent) and
    /// [`emitted`](Self::emitted).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use statefn::{Address, Sent, prelude::*};
    ///
    /// #[stateful_function]
    /// #[derive(Default, Serialize, Deserialize)]
    /// pub struct Account { balance: i64 }
    ///
    /// #[stateful_function(message_derive(Debug, Clone, PartialEq))]
    /// impl Account {
    ///     #[handler]
    ///     fn transfer(&mut self, ctx: &mut Context, to: String, amount: i64) {
    ///         self.balance -= amount;
    ///         ctx.send::<Account>(&to).deposit(amount);
    ///     }
    ///     #[handler]
    ///     fn deposit(&mut self, amount: i64) { self.balance += amount; }
    /// }
    ///
    /// let mut alice = Account { balance: 10 };
    /// let mut ctx = Context::for_test(Address::new("Account", "alice")?);
    /// alice.transfer(&mut ctx, "bob".into(), 4);
    /// assert_eq!(alice.balance, 6);
    /// let sent = ctx.sent::<Account>();
    /// assert_eq!(sent.len(), 1);
    /// assert_eq!(sent[0].to.id(), "bob");
    /// assert_eq!(sent[0].message, AccountMessage::Deposit { amount: 4 });
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn for_test(address: Address) -> Context {
        let mut ctx = Context::new(address, 0);
        ctx.invocation = InvocationId::from_key("test");
        ctx
    }

    /// Sets the invocation's time ([`now`](Self::now)); times before 1970
    /// read as 1970.
    #[must_use]
    pub fn at(mut self, now: SystemTime) -> Context {
        self.now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets the instance that sent the message ([`caller`](Self::caller)).
    #[must_use]
    pub fn with_caller(mut self, caller: Address) -> Context {
        self.caller = Some(caller);
        self
    }

    /// Sets the invocation id ([`invocation_id`](Self::invocation_id)),
    /// which also seeds [`rng`](Self::rng).
    #[must_use]
    pub fn with_invocation_id(mut self, id: InvocationId) -> Context {
        self.invocation = id;
        self
    }

    /// Sets the trace context ([`trace_context`](Self::trace_context)).
    #[must_use]
    pub fn with_trace_context(mut self, trace: TraceContext) -> Context {
        self.trace = Some(trace);
        self
    }

    /// Adds a resource ([`resource`](Self::resource)), replacing one of the
    /// same type.
    #[must_use]
    pub fn with_resource<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Context {
        let mut resources = self.resources.as_deref().cloned().unwrap_or_default();
        resources.insert(value);
        self.resources = Some(Arc::new(resources));
        self
    }

    /// The messages sent so far to instances of `T`, in order, decoded as
    /// `T`'s message enum. (Give the enum `PartialEq` with
    /// `#[stateful_function(message_derive(Debug, Clone, PartialEq))]` on
    /// the impl block to compare them.)
    ///
    /// In a runtime these leave only if the invocation commits; here they
    /// are simply kept.
    ///
    /// # Panics
    ///
    /// If a message for `T` does not decode as one of `T`'s messages: two
    /// different types registered under one name.
    pub fn sent<T: StatefulFunction>(&self) -> Vec<Sent<T::Message>> {
        self.outgoing
            .borrow()
            .iter()
            .filter(|o| o.target.type_name() == T::type_name())
            .map(|o| Sent {
                to: o.target.clone(),
                message: T::Message::decode(&o.message)
                    .unwrap_or_else(|e| panic!("a message for {} does not decode: {e}", o.target)),
                delay: o.delay,
                reply_to: o.reply_to.as_ref().map(|r| r.handler.clone()),
            })
            .collect()
    }

    /// The records emitted so far to egress log `log`, decoded as `R`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if a record is not an `R`.
    ///
    /// # Examples
    ///
    /// ```
    /// use statefn::{Address, Context};
    ///
    /// let ctx = Context::for_test(Address::new("Shop", "s")?);
    /// ctx.emit("orders", &serde_json::json!({"order": 1}));
    /// let orders: Vec<serde_json::Value> = ctx.emitted("orders")?;
    /// assert_eq!(orders, [serde_json::json!({"order": 1})]);
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn emitted<R: DeserializeOwned>(&self, log: &str) -> Result<Vec<R>, Error> {
        self.emitted
            .borrow()
            .iter()
            .filter(|(name, _)| name == log)
            .map(|(_, bytes)| {
                serde_json::from_slice(bytes).map_err(|e| Error::Decode {
                    function: self.address.type_name().to_owned(),
                    what: format!("a record of egress log `{log}`"),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// The error that would fail this invocation (a message or record that
    /// could not be encoded), if any: in a runtime nothing would commit.
    pub fn failure(&self) -> Option<Error> {
        self.failure.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_context_starts_at_the_epoch_without_caller() {
        let ctx = Context::for_test(Address::new("T", "x").expect("valid"));
        assert_eq!(ctx.now(), SystemTime::UNIX_EPOCH);
        assert!(ctx.caller().is_none());
        assert_eq!(ctx.invocation_id().to_string(), "test");
        assert!(ctx.failure().is_none());
        assert!(ctx.trace_context().is_none());
    }
}
