//! `Context`: what a handler can do besides changing its own state, and
//! what it may know about its invocation (time, caller, id, randomness,
//! resources). `for_test` builds one without a runtime.

mod for_test;
mod request;

use std::{
    any::Any,
    cell::{Cell, RefCell},
    marker::PhantomData,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;

pub use self::for_test::Sent;
pub use self::request::{Checked, HandlerContext, ReplyTarget, Request, Unchecked};
use crate::{
    Address, Error, InvocationId, InvocationRng, StatefulFunction, TraceContext,
    envelope::{Outgoing, Provenance, ReplyRoute},
    resources::Resources,
    wire::WireMessage,
};

/// A handler's view of the runtime: its own address, the time, messages to
/// send and timers to set.
///
/// Everything sent or set through a `Context` takes effect only when the
/// invocation commits: if the handler returns `Err` or panics, nothing is
/// sent and no timer changes.
///
/// # Durability
///
/// Sent messages are part of the sending invocation's commit; once that
/// commit is durable they are delivered exactly once, across crashes of
/// sender or receiver. Delayed messages and [timers](Self::timer) are
/// durable timers: stored with the commit that set them, fired once.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::prelude::*;
/// use std::time::Duration;
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Greeter { greeted: u32 }
///
/// #[stateful_function]
/// impl Greeter {
///     #[handler]
///     pub fn greet(&mut self, ctx: &mut Context, friend: String) {
///         self.greeted += 1;
///         // Tell the friend (another instance), now and again in an hour.
///         ctx.send::<Greeter>(&friend).greeted_by(ctx.id().to_owned());
///         ctx.send_after::<Greeter>(Duration::from_secs(3600), &friend).greeted_by("reminder".into());
///     }
///     #[handler]
///     pub fn greeted_by(&mut self, who: String) { let _ = who; self.greeted += 1; }
/// }
/// ```
#[derive(Debug)]
pub struct Context {
    address: Address,
    now_ms: u64,
    /// The instance whose handler sent the message (`None` for clients).
    caller: Option<Address>,
    invocation: InvocationId,
    /// This invocation's own trace context: the trace it continues, with
    /// this invocation's span id (the parent of what it sends).
    trace: Option<TraceContext>,
    /// `None` when the runtime has none (nothing to clone per invocation).
    resources: Option<Arc<Resources>>,
    /// How many generators [`rng`](Self::rng) gave out.
    rng_streams: Cell<u64>,
    // Behind a RefCell so that sending takes `&self`: arguments may then
    // borrow the context too (`ctx.send::<T>(&to).hello(ctx.id().into())`).
    outgoing: RefCell<Vec<Outgoing>>,
    emitted: RefCell<Vec<(String, Vec<u8>)>>,
    timer_ops: RefCell<Vec<TimerOp>>,
    failure: RefCell<Option<Error>>,
    /// A buffer for the new state (the replaced state's, from the shard):
    /// encoding into it allocates nothing for a busy instance.
    state_buffer: Vec<u8>,
}

/// A change to one of the instance's keyed timers, applied in order when
/// the invocation commits.
#[derive(Debug)]
pub(crate) enum TimerOp {
    /// Arm the timer `key` (replacing the one under it) to run `message`.
    Set {
        key: String,
        due_ms: u64,
        every_ms: Option<u64>,
        message: Vec<u8>,
    },
    /// Remove the timer `key`, if there is one.
    Cancel { key: String },
}

/// The longest timer key, in bytes.
pub const MAX_TIMER_KEY: usize = 256;

impl Context {
    pub(crate) fn new(address: Address, now_ms: u64) -> Self {
        Context {
            address,
            now_ms,
            caller: None,
            invocation: InvocationId::call(0, now_ms, 0),
            trace: None,
            resources: None,
            rng_streams: Cell::new(0),
            outgoing: RefCell::new(Vec::new()),
            emitted: RefCell::new(Vec::new()),
            timer_ops: RefCell::new(Vec::new()),
            failure: RefCell::new(None),
            state_buffer: Vec::new(),
        }
    }

    /// This instance's id.
    pub fn id(&self) -> &str {
        self.address.id()
    }

    /// Sets where the message came from (the runtime, before the handler
    /// runs).
    pub(crate) fn set_origin(
        &mut self,
        caller: Option<Address>,
        invocation: InvocationId,
        trace: Option<TraceContext>,
    ) {
        self.caller = caller;
        self.invocation = invocation;
        self.trace = trace;
    }

    pub(crate) fn set_resources(&mut self, resources: Option<Arc<Resources>>) {
        self.resources = resources;
    }

    /// The time of this invocation (unix milliseconds): the runtime's clock
    /// when its batch started, virtual in `statefn::testing`.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The time of this invocation, on the runtime's clock: the system
    /// clock when its batch started, or the test kit's virtual clock. Use
    /// it instead of `SystemTime::now()` so that tests control time. Timers
    /// are due by the same clock, so compute [`at`](TimerBuilder::at) times
    /// from it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use statefn::{Address, Context};
    ///
    /// let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let ctx = Context::for_test(Address::new("Loan", "l-1")?).at(at);
    /// assert_eq!(ctx.now(), at);
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.now_ms)
    }

    /// The instance whose handler sent this message (`ctx.send`,
    /// `ctx.request`, a reply, a timer it set, a retry of its message);
    /// `None` for a call or enqueued call from a client (HTTP, a
    /// [`Handle`](crate::Handle)) and for messages from before record
    /// format 2.
    ///
    /// # Examples
    ///
    /// ```
    /// use statefn::{Address, Context};
    ///
    /// let bob = Address::new("Account", "bob")?;
    /// let ctx = Context::for_test(Address::new("Account", "alice")?).with_caller(bob.clone());
    /// assert_eq!(ctx.caller(), Some(&bob));
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn caller(&self) -> Option<&Address> {
        self.caller.as_ref()
    }

    /// This invocation's id: the same for every delivery and retry of the
    /// same message (see [`InvocationId`] for where it comes from).
    pub fn invocation_id(&self) -> &InvocationId {
        &self.invocation
    }

    /// A random number generator seeded by this instance's address and the
    /// invocation id: a re-delivered or retried message draws the same
    /// numbers, and so does a test with a fixed id. Each call gives a new
    /// generator, the n-th of the invocation (so two calls differ, and the
    /// same sequence of calls repeats). Not for secrets.
    ///
    /// # Examples
    ///
    /// ```
    /// use statefn::{Address, Context, InvocationId, rand::Rng};
    ///
    /// let ctx = Context::for_test(Address::new("Lottery", "weekly")?)
    ///     .with_invocation_id(InvocationId::from_key("draw-52"));
    /// let first: u32 = ctx.rng().random();
    /// let second: u32 = ctx.rng().random();
    /// assert_ne!(first, second);
    /// let again = Context::for_test(Address::new("Lottery", "weekly")?)
    ///     .with_invocation_id(InvocationId::from_key("draw-52"));
    /// assert_eq!(again.rng().random::<u32>(), first);
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn rng(&self) -> InvocationRng {
        let stream = self.rng_streams.get();
        self.rng_streams.set(stream + 1);
        InvocationRng::new(&self.address, &self.invocation, stream)
    }

    /// The resource of type `T` given to the runtime at build time
    /// ([`Builder::resource`](crate::Builder::resource)), or `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use statefn::{Address, Context};
    ///
    /// struct Prices { apple_cents: u64 }
    ///
    /// let ctx = Context::for_test(Address::new("Cart", "c-1")?)
    ///     .with_resource(Arc::new(Prices { apple_cents: 40 }));
    /// assert_eq!(ctx.resource::<Prices>().map(|p| p.apple_cents), Some(40));
    /// assert!(ctx.resource::<String>().is_none());
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn resource<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.resources.as_deref().and_then(Resources::get::<T>)
    }

    /// This invocation's W3C trace context, when its message carried one
    /// (an HTTP `traceparent`, or a message sent by a traced invocation):
    /// the trace it continues and this invocation's own span id.
    pub fn trace_context(&self) -> Option<TraceContext> {
        self.trace
    }

    /// What a message sent now carries: this instance as its caller, and
    /// this invocation's trace.
    fn provenance(&self) -> Provenance {
        Provenance {
            caller: Some(self.address.clone()),
            invocation: None,
            trace: self.trace,
        }
    }

    /// This instance's full address (type name and id).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Sends a message to instance `id` of `T` when this invocation commits
    /// (fire-and-forget): `ctx.send::<Account>(&to).deposit(5)`.
    ///
    /// Messages from one instance to another arrive in the order they were sent.
    pub fn send<T: StatefulFunction>(&self, id: impl AsRef<str>) -> T::Sender<'_> {
        T::Sender::from_raw(RawSender::new(self, T::type_name(), id.as_ref(), None))
    }

    /// Like [`send`](Self::send), delivered after `delay` (a durable timer:
    /// it fires once, also across restarts).
    pub fn send_after<T: StatefulFunction>(
        &self,
        delay: Duration,
        id: impl AsRef<str>,
    ) -> T::Sender<'_> {
        T::Sender::from_raw(RawSender::new(
            self,
            T::type_name(),
            id.as_ref(),
            Some(delay),
        ))
    }

    /// Like [`send`](Self::send), delivered at `at` on the runtime's clock
    /// ([`now`](Self::now)); a time already past sends it at once. A
    /// durable timer, like [`send_after`](Self::send_after).
    ///
    /// # Durability
    ///
    /// The timer is stored with this invocation's commit: once the caller
    /// that started the invocation got its reply, the message survives
    /// crashes and is delivered once, at `at` or (after downtime) as soon
    /// as the runtime runs again.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # use std::time::Duration;
    /// # #[stateful_function]
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # pub struct Invoice { reminded: bool }
    /// # #[stateful_function]
    /// # impl Invoice {
    /// #[handler]
    /// pub fn issue(&mut self, ctx: &mut Context, due_in_days: u64) {
    ///     let due = ctx.now() + Duration::from_secs(due_in_days * 86_400);
    ///     ctx.send_at::<Invoice>(due, ctx.id()).remind();
    /// }
    /// #[handler]
    /// pub fn remind(&mut self) { self.reminded = true; }
    /// # }
    /// ```
    pub fn send_at<T: StatefulFunction>(
        &self,
        at: SystemTime,
        id: impl AsRef<str>,
    ) -> T::Sender<'_> {
        let delay = at.duration_since(self.now()).unwrap_or(Duration::ZERO);
        self.send_after::<T>(delay, id)
    }

    /// This instance's timer `key`: at most one per key and instance.
    /// Setting it replaces the timer it had under `key`, and the one
    /// replaced never runs, even if it was already due and its wake-up
    /// queued. When due, the timer runs the handler of this instance that
    /// its typed sender names, as an invocation of its own.
    ///
    /// - `.after(delay)`, `.at(time)`: once.
    /// - `.every(period)`: first after `period`, then every `period` until
    ///   cancelled or replaced (a run missed while the runtime was down is
    ///   not repeated: it runs once, then keeps the schedule). A periodic
    ///   run that fails is not retried; the next one comes on time.
    ///
    /// `T` must be this function's own type (a timer belongs to its
    /// instance and runs there), and `key` 1 to [`MAX_TIMER_KEY`] bytes;
    /// otherwise the invocation fails with [`Error::InvalidTimer`]. A
    /// one-time timer whose handler fails is retried like a message from a
    /// function ([`RetryPolicy`](crate::RetryPolicy)), under the same key.
    ///
    /// # Durability
    ///
    /// The timer is set when this invocation commits: it then survives
    /// crashes and runs once. Its run, its removal (or, periodic, its next
    /// due time) and what its handler changes commit together.
    ///
    /// # Examples
    ///
    // The example needs the test kit: it runs with `--features testing`
    // (as `cargo test --workspace` does).
    #[cfg_attr(feature = "testing", doc = "```")]
    #[cfg_attr(not(feature = "testing"), doc = "```ignore")]
    /// use std::time::Duration;
    /// use serde::{Deserialize, Serialize};
    /// use statefn::prelude::*;
    /// use statefn::testing::TestRuntime;
    ///
    /// #[stateful_function]
    /// #[derive(Debug, Default, Serialize, Deserialize)]
    /// pub struct Session { open: bool, ticks: u32 }
    ///
    /// #[stateful_function]
    /// impl Session {
    ///     #[handler]
    ///     fn touch(&mut self, ctx: &mut Context) {
    ///         self.open = true;
    ///         // Each touch pushes the idle timeout back: the timer it
    ///         // replaces never runs.
    ///         ctx.timer::<Session>("idle").after(Duration::from_secs(60)).close();
    ///         ctx.timer::<Session>("tick").every(Duration::from_secs(10)).tick();
    ///     }
    ///     #[handler(internal)]
    ///     fn close(&mut self, ctx: &mut Context) {
    ///         self.open = false;
    ///         ctx.cancel_timer("tick");
    ///     }
    ///     #[handler(internal)]
    ///     fn tick(&mut self) { self.ticks += 1; }
    ///     #[handler]
    ///     fn state(&self) -> (bool, u32) { (self.open, self.ticks) }
    /// }
    ///
    /// # fn main() -> Result<(), statefn::Error> {
    /// let mut rt = TestRuntime::builder().register::<Session>().start()?;
    /// let session = rt.handle::<Session>("s");
    /// rt.call(session.touch())?;
    /// rt.advance(Duration::from_secs(50));
    /// rt.call(rt.handle::<Session>("s").touch())?; // idle again from here
    /// rt.advance(Duration::from_secs(59));
    /// assert_eq!(rt.call(rt.handle::<Session>("s").state())?, (true, 10));
    /// rt.crash()?; // timers are durable
    /// rt.advance(Duration::from_secs(100));
    /// // Closed at 110 s, the tick stopped with it: the tick due then too
    /// // never ran (timers due at the same time run in the order they were
    /// // set, and the idle timer was set before that tick).
    /// assert_eq!(rt.call(rt.handle::<Session>("s").state())?, (false, 10));
    /// # Ok(())
    /// # }
    /// ```
    pub fn timer<T: StatefulFunction>(&self, key: &str) -> TimerBuilder<'_, T> {
        let checked = if T::type_name() != self.address.type_name() {
            Err(Error::InvalidTimer {
                reason: format!(
                    "`{}` set a timer of `{}`: a timer runs a handler of its own instance, so name its own type (`ctx.timer::<Self>(..)`)",
                    self.address.type_name(),
                    T::type_name()
                ),
            })
        } else {
            check_timer_key(key).map(|()| key.to_owned())
        };
        TimerBuilder {
            ctx: self,
            key: checked,
            _function: PhantomData,
        }
    }

    /// Removes this instance's timer `key`, if it has one: it will not run,
    /// even if it is already due and its wake-up queued. A periodic timer
    /// stops. Cancelling a key without a timer does nothing.
    ///
    /// # Durability
    ///
    /// As for [`timer`](Self::timer): the removal commits with this
    /// invocation; if the invocation fails, the timer stays.
    pub fn cancel_timer(&self, key: &str) {
        match check_timer_key(key) {
            Ok(()) => self.timer_ops.borrow_mut().push(TimerOp::Cancel {
                key: key.to_owned(),
            }),
            Err(e) => self.fail(e),
        }
    }

    /// Asks instance `id` of `T`; the reply comes back later as a message to
    /// one of this function's own handlers, with a correlation value of the
    /// caller's choosing:
    ///
    /// ```text
    /// ctx.request::<Inventory>(&sku).reserve(2)
    ///     .timeout(Duration::from_secs(5))
    ///     .reply_to_with(CartMessage::reserved(), sku.clone());
    /// ```
    ///
    /// The reply handler's last argument is `Result<T, RequestFailed<E>>`:
    /// the callee's value, or why there is none ([`RequestFailed`](crate::RequestFailed): it
    /// returned `Err`, it failed and its request is a dead letter, or no
    /// reply came in time). Exactly one of them arrives, once.
    pub fn request<T: StatefulFunction>(&self, id: impl AsRef<str>) -> T::Requester<'_> {
        T::Requester::from_raw(RawSender::new(self, T::type_name(), id.as_ref(), None))
    }

    /// Appends `record` (as JSON) to the egress log named `log` when this
    /// invocation commits; consumers read it with
    /// [`Runtime::read_egress`](crate::Runtime::read_egress) or over HTTP.
    /// Log names are 1 to 128 ASCII letters, digits, `.`, `_` or `-`.
    ///
    /// # Durability
    ///
    /// The record is part of the invocation's commit: it appears in the log
    /// exactly once, with a stable id, however the process crashes.
    pub fn emit<R: Serialize + ?Sized>(&self, log: &str, record: &R) {
        let encoded = crate::egress::check_name(log).and_then(|()| {
            serde_json::to_vec(record).map_err(|e| Error::Encode {
                what: format!("a record for egress log `{log}`"),
                reason: e.to_string(),
            })
        });
        match encoded {
            Ok(bytes) => self.emitted.borrow_mut().push((log.to_owned(), bytes)),
            Err(e) => self.fail(e),
        }
    }

    /// Marks the invocation as failed (an encoding error in a send): it then
    /// commits nothing, like a panic.
    fn fail(&self, error: Error) {
        self.failure.borrow_mut().get_or_insert(error);
    }

    /// Hands in the buffer the new state is to be encoded into.
    pub(crate) fn set_state_buffer(&mut self, buffer: Vec<u8>) {
        self.state_buffer = buffer;
    }

    pub(crate) fn take_state_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.state_buffer)
    }

    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.failure.get_mut().take()
    }

    pub(crate) fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(self.outgoing.get_mut())
    }

    pub(crate) fn take_emitted(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(self.emitted.get_mut())
    }

    pub(crate) fn take_timer_ops(&mut self) -> Vec<TimerOp> {
        std::mem::take(self.timer_ops.get_mut())
    }
}

fn check_timer_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_TIMER_KEY {
        return Err(Error::InvalidTimer {
            reason: format!(
                "a timer key is 1 to {MAX_TIMER_KEY} bytes, `{}` has {}",
                key.chars().take(40).collect::<String>(),
                key.len()
            ),
        });
    }
    Ok(())
}

/// One of an instance's timers, by key: choose when with
/// [`after`](Self::after), [`at`](Self::at) or [`every`](Self::every), then
/// the handler it runs by calling it on the typed sender they return. Made
/// by [`Context::timer`].
#[must_use = "a timer is set only once its handler is called on the sender `after`, `at` or `every` returns"]
#[derive(Debug)]
pub struct TimerBuilder<'c, T> {
    ctx: &'c Context,
    key: Result<String, Error>,
    _function: PhantomData<fn() -> T>,
}

impl<'c, T: StatefulFunction> TimerBuilder<'c, T> {
    /// Runs once, `delay` from now.
    pub fn after(self, delay: Duration) -> T::Sender<'c> {
        let due_ms = self.ctx.now_ms.saturating_add(millis(delay));
        self.sender(due_ms, None)
    }

    /// Runs once, at `at` on the runtime's clock ([`Context::now`]); a time
    /// already past runs it as soon as possible.
    pub fn at(self, at: SystemTime) -> T::Sender<'c> {
        let due_ms = millis(
            at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        );
        let now_ms = self.ctx.now_ms;
        self.sender(due_ms.max(now_ms), None)
    }

    /// Runs every `period` (at least a millisecond), first `period` from
    /// now, until cancelled or replaced.
    pub fn every(self, period: Duration) -> T::Sender<'c> {
        let period_ms = millis(period);
        if period_ms == 0 {
            let e = Error::InvalidTimer {
                reason: format!("a periodic timer needs a period of at least 1 ms, not {period:?}"),
            };
            return T::Sender::from_raw(RawSender::failed(self.ctx, e));
        }
        let due_ms = self.ctx.now_ms.saturating_add(period_ms);
        self.sender(due_ms, Some(period_ms))
    }

    fn sender(self, due_ms: u64, every_ms: Option<u64>) -> T::Sender<'c> {
        let raw = match self.key {
            Ok(key) => RawSender {
                ctx: self.ctx,
                target: Ok(self.ctx.address.clone()),
                mode: Mode::Timer {
                    key,
                    due_ms,
                    every_ms,
                },
            },
            Err(e) => RawSender::failed(self.ctx, e),
        };
        T::Sender::from_raw(raw)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Builds generated senders; implemented by `#[stateful_function]`.
#[doc(hidden)]
pub trait FromRawSender<'c> {
    fn from_raw(raw: RawSender<'c>) -> Self;
}

/// The untyped part of a generated sender.
#[doc(hidden)]
#[derive(Debug)]
pub struct RawSender<'c> {
    ctx: &'c Context,
    target: Result<Address, Error>,
    mode: Mode,
}

/// What a sender's message becomes.
#[derive(Debug)]
enum Mode {
    /// A message, now or after a delay.
    Message { delay: Option<Duration> },
    /// The instance's own timer `key`.
    Timer {
        key: String,
        due_ms: u64,
        every_ms: Option<u64>,
    },
}

impl<'c> RawSender<'c> {
    fn new(ctx: &'c Context, type_name: &'static str, id: &str, delay: Option<Duration>) -> Self {
        RawSender {
            ctx,
            target: Address::new(type_name, id),
            mode: Mode::Message { delay },
        }
    }

    /// A sender whose message fails the invocation with `error`.
    fn failed(ctx: &'c Context, error: Error) -> Self {
        RawSender {
            ctx,
            target: Err(error),
            mode: Mode::Message { delay: None },
        }
    }

    /// Queues `message` (it names its handler).
    pub fn send<M: WireMessage>(self, message: &M) {
        self.push_encoded(crate::wire::encode(message), None);
    }

    /// Starts a request; [`Request::reply_to`] queues it.
    pub fn request<T, E, Caller, M: WireMessage>(self, message: &M) -> Request<'c, T, E, Caller> {
        Request {
            sender: self,
            message: crate::wire::encode(message),
            timeout: None,
            _reply: PhantomData,
        }
    }

    fn push_encoded(self, message: Result<Vec<u8>, Error>, reply_to: Option<ReplyRoute>) {
        match (self.target, message, self.mode) {
            (Ok(target), Ok(message), Mode::Message { delay }) => {
                self.ctx.outgoing.borrow_mut().push(Outgoing {
                    target,
                    message,
                    delay,
                    reply_to,
                    guard: None,
                    attempt: 0,
                    provenance: self.ctx.provenance(),
                });
            }
            (
                Ok(_),
                Ok(message),
                Mode::Timer {
                    key,
                    due_ms,
                    every_ms,
                },
            ) => self.ctx.timer_ops.borrow_mut().push(TimerOp::Set {
                key,
                due_ms,
                every_ms,
                message,
            }),
            (Err(e), _, _) | (_, Err(e), _) => self.ctx.fail(e),
        }
    }
}
