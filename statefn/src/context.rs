//! `Context`: what a handler can do besides changing its own state, and
//! what it may know about its invocation (time, caller, id, randomness,
//! resources). `for_test` builds one without a runtime.

mod for_test;

use std::{
    any::Any,
    cell::{Cell, RefCell},
    marker::PhantomData,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;

pub use self::for_test::Sent;
use crate::{
    Address, Error, InvocationId, InvocationRng, StatefulFunction, TraceContext,
    envelope::{Outgoing, Provenance, ReplyRoute},
    function::HandlerRef,
    resources::Resources,
    wire::WireMessage,
};

/// A handler's view of the runtime: its own address, and messages to send.
///
/// Everything sent through a `Context` leaves only when the invocation
/// commits: if the handler returns `Err` or panics, nothing is sent.
///
/// # Durability
///
/// Sent messages are part of the sending invocation's commit; once that
/// commit is durable they are delivered exactly once, across crashes of
/// sender or receiver. Delayed messages are durable timers.
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
    failure: RefCell<Option<Error>>,
}

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
            failure: RefCell::new(None),
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

    /// Takes back the caller and invocation id (a failed message's retry
    /// keeps them).
    pub(crate) fn take_origin(&mut self) -> (Option<Address>, InvocationId) {
        (
            self.caller.take(),
            std::mem::replace(&mut self.invocation, InvocationId::call(0, 0, 0)),
        )
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
    /// it instead of `SystemTime::now()` so that tests control time.
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

    /// Asks instance `id` of `T`; the reply comes back later as a message to
    /// one of this function's own one-argument handlers:
    ///
    /// ```text
    /// ctx.request::<Inventory>(&sku).reserve(2).reply_to(CartMessage::reserved());
    /// ```
    ///
    /// The reply is the callee handler's return value, `Err` included; if the
    /// callee panics, no reply comes.
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

    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.failure.get_mut().take()
    }

    pub(crate) fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(self.outgoing.get_mut())
    }

    pub(crate) fn take_emitted(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(self.emitted.get_mut())
    }
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
    delay: Option<Duration>,
}

impl<'c> RawSender<'c> {
    fn new(ctx: &'c Context, type_name: &'static str, id: &str, delay: Option<Duration>) -> Self {
        RawSender {
            ctx,
            target: Address::new(type_name, id),
            delay,
        }
    }

    /// Queues `message` (it names its handler).
    pub fn send<M: WireMessage>(self, message: &M) {
        self.push_encoded(crate::wire::encode(message), None);
    }

    /// Starts a request; [`Request::reply_to`] queues it.
    pub fn request<R, M: WireMessage>(self, message: &M) -> Request<'c, R> {
        Request {
            sender: self,
            message: crate::wire::encode(message),
            _reply: PhantomData,
        }
    }

    fn push_encoded(self, message: Result<Vec<u8>, Error>, reply_to: Option<ReplyRoute>) {
        match (self.target, message) {
            (Ok(target), Ok(message)) => self.ctx.outgoing.borrow_mut().push(Outgoing {
                target,
                message,
                delay: self.delay,
                reply_to,
                attempt: 0,
                provenance: self.ctx.provenance(),
            }),
            (Err(e), _) | (_, Err(e)) => self.ctx.fail(e),
        }
    }
}

/// A request whose reply goes to one of the caller's own handlers; made by
/// the generated methods of `ctx.request::<T>(id)`.
#[must_use = "a request is sent only once `reply_to` names the handler for its reply"]
#[derive(Debug)]
pub struct Request<'c, R> {
    sender: RawSender<'c>,
    message: Result<Vec<u8>, Error>,
    _reply: PhantomData<fn() -> R>,
}

impl<R> Request<'_, R> {
    /// Sends the request when this invocation commits; its reply (of type
    /// `R`, the callee handler's return type) arrives later as a message to
    /// `handler`, a one-argument handler of the calling function.
    ///
    /// Making a `HandlerRef` of another function type is a programming error:
    /// the invocation fails with [`Error::ReplyTargetMismatch`].
    pub fn reply_to<F: StatefulFunction>(self, handler: HandlerRef<F, R>) {
        let caller = self.sender.ctx.address.clone();
        if caller.type_name() != F::type_name() {
            let e = Error::ReplyTargetMismatch {
                caller: caller.type_name().to_owned(),
                target: F::type_name().to_owned(),
                handler: handler.name().to_owned(),
            };
            self.sender.ctx.fail(e);
            return;
        }
        self.sender.push_encoded(
            self.message,
            Some(ReplyRoute {
                to: caller,
                handler: handler.name().to_owned(),
            }),
        );
    }
}
