//! Request/reply from a handler: [`Request`] (made by `ctx.request::<T>(id)`),
//! where its reply goes, and the compile-time check that a reply target is
//! one of the caller's own handlers ([`HandlerContext`], [`Checked`]).

use std::{marker::PhantomData, time::Duration};

use super::{Context, FromRawSender, RawSender};
use crate::{
    Error, NoError, RequestFailed, StatefulFunction,
    envelope::ReplyRoute,
    function::{HandlerRef, MessageArgument},
    wire::{write_arg, write_header},
};

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
    pub(super) sender: RawSender<'c>,
    pub(super) message: Result<Vec<u8>, Error>,
    pub(super) timeout: Option<Duration>,
    pub(super) _reply: PhantomData<RequestTypes<T, E, Caller>>,
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
