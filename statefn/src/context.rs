//! `Context`: what a handler can do besides changing its own state.

use std::{cell::RefCell, marker::PhantomData, time::Duration};

use serde::Serialize;

use crate::{
    Address, Error, NoError, RequestFailed, StatefulFunction,
    envelope::{Outgoing, ReplyRoute},
    function::{HandlerRef, MessageArgument},
    wire::{WireMessage, write_arg, write_header},
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
            outgoing: RefCell::new(Vec::new()),
            emitted: RefCell::new(Vec::new()),
            failure: RefCell::new(None),
        }
    }

    /// This instance's id.
    pub fn id(&self) -> &str {
        self.address.id()
    }

    /// The time of this invocation's batch (unix milliseconds).
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms
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
    /// the callee's value, or why there is none ([`RequestFailed`]: it
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
    pub fn request<T, E, Caller, M: WireMessage>(self, message: &M) -> Request<'c, T, E, Caller> {
        Request {
            sender: self,
            message: crate::wire::encode(message),
            timeout: None,
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
                guard: None,
                attempt: 0,
            }),
            (Err(e), _) | (_, Err(e)) => self.ctx.fail(e),
        }
    }
}

/// A request whose reply goes to one of the caller's own handlers; made by
/// the generated methods of `ctx.request::<T>(id)`. `T` is the callee's
/// reply value, `E` its error type ([`NoError`] for a handler that cannot
/// fail).
#[must_use = "a request is sent only once `reply_to` or `reply_to_with` names the handler for its reply"]
///
/// Made inside a handler (`ctx` being the handler's own context argument),
/// a request knows its caller's type, and a reply target of another
/// function type does not compile; made through a `&Context` passed to a
/// helper, that is checked when the handler runs
/// ([`Error::ReplyTargetMismatch`]).
#[derive(Debug)]
pub struct Request<'c, T, E = NoError, Caller = Unchecked> {
    sender: RawSender<'c>,
    message: Result<Vec<u8>, Error>,
    timeout: Option<Duration>,
    _reply: PhantomData<RequestTypes<T, E, Caller>>,
}

/// `Request`'s type parameters, without owning any of them.
type RequestTypes<T, E, Caller> = fn() -> (T, E, Caller);

impl<T, E, Caller> Request<'_, T, E, Caller> {
    /// Gives up after `after`: unless the reply arrived first, the reply
    /// handler then gets `Err(RequestFailed::Timeout)`, and a reply that
    /// arrives later is dropped (the callee's effects stay applied). The
    /// timeout is a durable timer of the caller: it fires once, also across
    /// restarts.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Sends the request when this invocation commits; its outcome arrives
    /// later as a message to `handler`, a one-argument handler of the
    /// calling function taking `Result<T, RequestFailed<E>>`.
    ///
    /// Making a `HandlerRef` of another function type is a programming error:
    /// the invocation fails with [`Error::ReplyTargetMismatch`].
    pub fn reply_to<F: StatefulFunction>(self, handler: HandlerRef<F, Result<T, RequestFailed<E>>>)
    where
        Caller: ReplyTarget<F>,
    {
        self.route::<F>(handler.name(), None);
    }

    /// Like [`reply_to`](Self::reply_to), for a two-argument handler that
    /// first receives `correlation` (which item, which step: whatever the
    /// caller needs to know what the reply is about).
    pub fn reply_to_with<F: StatefulFunction, C: MessageArgument>(
        self,
        handler: HandlerRef<F, Result<T, RequestFailed<E>>, C>,
        correlation: C,
    ) where
        Caller: ReplyTarget<F>,
    {
        let name = handler.name();
        let mut prefix = Vec::new();
        match write_arg(&mut prefix, &correlation, name, "correlation") {
            Ok(()) => self.route::<F>(name, Some(prefix)),
            Err(e) => self.sender.ctx.fail(e),
        }
    }

    /// Queues the request with its reply route: the reply handler's message
    /// up to its last argument (`correlation`: that argument's bytes, if any).
    fn route<F: StatefulFunction>(self, handler: &'static str, correlation: Option<Vec<u8>>) {
        let caller = self.sender.ctx.address.clone();
        if caller.type_name() != F::type_name() {
            let e = Error::ReplyTargetMismatch {
                caller: caller.type_name().to_owned(),
                target: F::type_name().to_owned(),
                handler: handler.to_owned(),
            };
            self.sender.ctx.fail(e);
            return;
        }
        // The generated `HandlerRef` names a handler of `F`.
        let fingerprint = F::HANDLERS
            .iter()
            .find(|h| h.name == handler)
            .map_or(0, |h| h.fingerprint);
        let mut prefix = Vec::new();
        write_header(&mut prefix, handler, fingerprint);
        prefix.extend(correlation.unwrap_or_default());
        self.sender.push_encoded(
            self.message,
            Some(ReplyRoute {
                to: caller,
                handler: handler.to_owned(),
                prefix: Some(prefix),
                guard: None,
                timeout: self.timeout,
            }),
        );
    }
}

/// The caller of a request made through a plain `&Context` (in a helper):
/// its reply target is checked when the handler runs.
#[doc(hidden)]
#[derive(Debug)]
pub enum Unchecked {}

/// The caller of a request made inside a handler of `F`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Checked<F>(PhantomData<fn() -> F>);

/// Whether a request made by `Self` (`Unchecked` or `Checked<Caller>`) may
/// name a handler of `F` as its reply target.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the reply to this request goes to a handler of `{F}`, which is not the function making the request",
    label = "a handler of another function type",
    note = "a reply comes back to the instance that asked: name one of the calling function's own handlers (`CallerMessage::handler()`)"
)]
pub trait ReplyTarget<F> {}

impl<F> ReplyTarget<F> for Unchecked {}
impl<F> ReplyTarget<F> for Checked<F> {}

/// A handler's own context argument, as the handler's body sees it: the
/// context of a handler of `F`. `#[stateful_function]` wraps the argument
/// in it; it dereferences to [`Context`], so it passes where a `&Context`
/// or `&mut Context` is expected, and only `request` differs.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerContext<F, R> {
    ctx: R,
    _caller: PhantomData<fn() -> F>,
}

impl<F, R> HandlerContext<F, R> {
    /// Wraps a handler's context argument.
    pub fn new(ctx: R) -> Self {
        HandlerContext {
            ctx,
            _caller: PhantomData,
        }
    }
}

impl<F, R: std::ops::Deref<Target = Context>> std::ops::Deref for HandlerContext<F, R> {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl<F, R: std::ops::DerefMut<Target = Context>> std::ops::DerefMut for HandlerContext<F, R> {
    fn deref_mut(&mut self) -> &mut Context {
        &mut self.ctx
    }
}

impl<F: StatefulFunction, R: std::ops::Deref<Target = Context>> HandlerContext<F, R> {
    /// As [`Context::request`], with the reply target checked at compile
    /// time: it must be a handler of `F`.
    pub fn request<T: StatefulFunction>(
        &self,
        id: impl AsRef<str>,
    ) -> T::CheckedRequester<'_, Checked<F>> {
        T::CheckedRequester::from_raw(RawSender::new(&self.ctx, T::type_name(), id.as_ref(), None))
    }
}
