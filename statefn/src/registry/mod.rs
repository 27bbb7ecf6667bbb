//! The registered function types, behind an object-safe interface so that a
//! shard can run any of them from bytes.

use std::{
    cell::Cell,
    marker::PhantomData,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use crate::{
    Address, Context, Error, JsonReply, StatefulFunction,
    function::HandlerInfo,
    metrics::UNKNOWN,
    wire::{MessageError, WireMessage},
};

/// What one invocation produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handler returned normally (a plain value or `Ok`): its state change
    /// (`Some` only for `&mut self` handlers) and effects commit.
    Applied {
        reply: Vec<u8>,
        new_state: Option<Vec<u8>>,
    },
    /// The handler returned `Err`: the reply commits, nothing else does.
    Rejected { reply: Vec<u8>, error: String },
    /// The handler panicked, or the input could not be decoded: nothing commits.
    Failed(Error),
}

#[derive(Debug)]
pub(crate) struct Invocation {
    /// The handler's name, when the message could be decoded.
    pub(crate) handler: Option<&'static str>,
    pub(crate) outcome: Outcome,
}

/// One registered function type, erased.
pub(crate) trait ErasedFunction: Send + Sync + 'static {
    /// The registered type name.
    fn type_name(&self) -> &'static str;
    fn handlers(&self) -> &'static [HandlerInfo];
    /// `handler`'s registered name, for a metric label: [`UNKNOWN`] if it
    /// has no such handler (so labels stay a bounded set).
    fn handler_label(&self, handler: &str) -> &'static str {
        self.handlers()
            .iter()
            .find(|h| h.name == handler)
            .map_or(UNKNOWN, |h| h.name)
    }
    /// Decodes the state (or starts from `Default`) and the message, runs the
    /// handler, catching panics, and encodes the new state.
    fn invoke(&self, state: Option<&[u8]>, message: &[u8], ctx: &mut Context) -> Invocation;
    /// The handler a message is for, without running it.
    fn handler_of(&self, message: &[u8]) -> Result<&'static HandlerInfo, Error>;
    /// Encodes a reply as the message for one of this type's handlers.
    fn reply_message(&self, handler: &str, reply: &[u8]) -> Result<Vec<u8>, Error>;
    /// Builds the encoded message for `handler` from its arguments as a JSON
    /// object. This is the by-name path of callers outside the functions
    /// (HTTP, `Runtime::call_json`): an internal handler is refused as if it
    /// did not exist.
    fn message_from_json(&self, handler: &str, args: serde_json::Value) -> Result<Vec<u8>, Error>;
    /// Decodes `handler`'s encoded reply as JSON.
    fn reply_to_json(&self, handler: &str, reply: &[u8]) -> Result<JsonReply, Error>;
    /// Milliseconds without a state change after which an instance is removed (0: never).
    fn expire_after_ms(&self) -> u64;
    /// An encoded message as JSON (`{"handler": {"arg": value}}`), for inspection.
    fn message_to_json(&self, message: &[u8]) -> Result<serde_json::Value, Error>;
    /// A stored state (migrated if older) as JSON, for operators.
    fn state_to_json(&self, id: &str, state: &[u8]) -> Result<serde_json::Value, Error>;
    /// Whether stored message bytes still decode as a message of this build
    /// (its handler exists, under its name or a `renamed_from` one, with the
    /// same arguments): for checking stored messages at open. Not for the
    /// empty message of an expiry timer.
    fn validate(&self, message: &[u8]) -> Result<(), MessageError>;
    /// A message of data directory format 1 (positional) as a named message
    /// of this build's handler at that position (`None`: it is a named
    /// message of this build already, from an upgrade that ran before).
    fn upgrade_positional(&self, message: &[u8]) -> Result<Option<Vec<u8>>, MessageError>;
    /// The JSON Schemas of handler number `handler`, for the OpenAPI document.
    #[cfg_attr(
        not(feature = "http"),
        allow(dead_code, reason = "the OpenAPI document is the ingress's")
    )]
    fn handler_schema(
        &self,
        handler: usize,
        schemas: &mut crate::schema::Schemas,
    ) -> Option<crate::schema::HandlerSchema> {
        let _ = (handler, schemas);
        None
    }
}

struct Typed<T>(PhantomData<fn() -> T>);

/// Where an invocation is, for the error when user code outside the
/// handler panics.
#[derive(Debug, Clone, Copy)]
struct Stage {
    handler: Option<&'static str>,
    during: &'static str,
}

impl Stage {
    fn of(info: &'static HandlerInfo, during: &'static str) -> Self {
        Stage {
            handler: Some(info.name),
            during,
        }
    }
}

impl<T: StatefulFunction> Typed<T> {
    fn decode_message(message: &[u8]) -> Result<T::Message, Error> {
        T::Message::decode(message).map_err(Error::from)
    }
}

impl<T: StatefulFunction> ErasedFunction for Typed<T> {
    fn type_name(&self) -> &'static str {
        T::type_name()
    }

    fn handlers(&self) -> &'static [HandlerInfo] {
        T::HANDLERS
    }

    fn invoke(&self, state: Option<&[u8]>, message: &[u8], ctx: &mut Context) -> Invocation {
        // User code runs before and after the handler too (`Deserialize` of
        // the message and the state, `migrate`, `Default`, `Serialize`): a
        // panic there fails this invocation like a handler's, instead of
        // unwinding through the worker and stranding its shard.
        let stage = Cell::new(Stage {
            handler: None,
            during: "decoding the message",
        });
        match catch_unwind(AssertUnwindSafe(|| {
            Self::invoke_staged(state, message, ctx, &stage)
        })) {
            Ok(invocation) => invocation,
            Err(panic) => {
                let Stage { handler, during } = stage.get();
                Invocation {
                    handler,
                    outcome: Outcome::Failed(Error::Panicked {
                        function: T::type_name().to_owned(),
                        id: ctx.id().to_owned(),
                        during: during.to_owned(),
                        message: panic_message(&*panic),
                    }),
                }
            }
        }
    }

    fn handler_of(&self, message: &[u8]) -> Result<&'static HandlerInfo, Error> {
        Self::guard("decoding a message", || {
            let message = Self::decode_message(message)?;
            Ok(&T::HANDLERS[T::handler_index(&message)])
        })
    }

    fn reply_message(&self, handler: &str, reply: &[u8]) -> Result<Vec<u8>, Error> {
        Self::guard("turning a reply into a message", || {
            let message = T::reply_message(handler, reply)?;
            crate::wire::encode(&message)
        })
    }

    fn message_from_json(&self, handler: &str, args: serde_json::Value) -> Result<Vec<u8>, Error> {
        Self::guard("building a message from JSON", || {
            Self::message_from_json_unguarded(handler, args)
        })
    }

    fn reply_to_json(&self, handler: &str, reply: &[u8]) -> Result<JsonReply, Error> {
        let index = Self::handler_index(handler)?;
        Self::guard("decoding a reply", || T::reply_to_json(index, reply))
    }

    fn state_to_json(&self, id: &str, state: &[u8]) -> Result<serde_json::Value, Error> {
        Self::guard("showing a state as JSON", || {
            let value: T = crate::function::decode_state_of::<T>(id, state)?;
            serde_json::to_value(&value).map_err(|e| Error::Encode {
                what: format!("a state of {} as JSON", T::type_name()),
                reason: e.to_string(),
            })
        })
    }

    fn expire_after_ms(&self) -> u64 {
        <T as crate::function::FunctionState>::EXPIRE_AFTER_MS
    }

    fn message_to_json(&self, message: &[u8]) -> Result<serde_json::Value, Error> {
        Self::guard("showing a message as JSON", || {
            let message = Self::decode_message(message)?;
            serde_json::to_value(&message).map_err(|e| Error::Encode {
                what: "a message as JSON".into(),
                reason: e.to_string(),
            })
        })
    }

    fn validate(&self, message: &[u8]) -> Result<(), MessageError> {
        // A panicking decoder is as undecodable as a failing one.
        catch_unwind(AssertUnwindSafe(|| T::Message::decode(message).map(drop))).unwrap_or_else(
            |panic| {
                Err(MessageError::Malformed {
                    function: T::type_name().to_owned(),
                    handler: None,
                    reason: format!("decoding it panicked: {}", panic_message(&*panic)),
                })
            },
        )
    }

    fn handler_schema(
        &self,
        handler: usize,
        schemas: &mut crate::schema::Schemas,
    ) -> Option<crate::schema::HandlerSchema> {
        T::handler_schema(handler, schemas)
    }

    fn upgrade_positional(&self, message: &[u8]) -> Result<Option<Vec<u8>>, MessageError> {
        // A panicking decoder is as undecodable as a failing one.
        catch_unwind(AssertUnwindSafe(|| {
            Self::upgrade_positional_unguarded(message)
        }))
        .unwrap_or_else(|panic| {
            Err(MessageError::Malformed {
                function: T::type_name().to_owned(),
                handler: None,
                reason: format!("decoding it panicked: {}", panic_message(&*panic)),
            })
        })
    }
}

impl<T: StatefulFunction> Typed<T> {
    fn upgrade_positional_unguarded(message: &[u8]) -> Result<Option<Vec<u8>>, MessageError> {
        // A named message cannot be mistaken for a positional one of a
        // function with fewer than 161 handlers (its tag is not a varint
        // below that), and a positional one would have to spell a handler's
        // name and fingerprint to pass for a named one.
        if T::Message::decode(message).is_ok() {
            return Ok(None);
        }
        let named = crate::wire::named_from_positional(T::HANDLERS, message).map_err(|reason| {
            MessageError::Malformed {
                function: T::type_name().to_owned(),
                handler: None,
                reason,
            }
        })?;
        T::Message::decode(&named)?;
        Ok(Some(named))
    }

    /// [`ErasedFunction::invoke`] without its outer guard: `stage` says
    /// what runs, for the error if user code outside the handler panics.
    fn invoke_staged(
        state: Option<&[u8]>,
        message: &[u8],
        ctx: &mut Context,
        stage: &Cell<Stage>,
    ) -> Invocation {
        let message = match Self::decode_message(message) {
            Ok(m) => m,
            Err(e) => {
                return Invocation {
                    handler: None,
                    outcome: Outcome::Failed(e),
                };
            }
        };
        let info = &T::HANDLERS[T::handler_index(&message)];
        let failed = |e| Invocation {
            handler: Some(info.name),
            outcome: Outcome::Failed(e),
        };
        let mut value: T = match state {
            None => {
                stage.set(Stage::of(info, "building its `Default` state"));
                T::default()
            }
            Some(bytes) => {
                stage.set(Stage::of(
                    info,
                    "decoding or migrating its stored state (`Deserialize` or `migrate`)",
                ));
                match crate::function::decode_state_of::<T>(ctx.id(), bytes) {
                    Ok(v) => v,
                    Err(e) => return failed(e),
                }
            }
        };
        // A panic leaves `value` and `ctx` half-changed; both are discarded,
        // which is what makes the invocation atomic.
        let reply = match catch_unwind(AssertUnwindSafe(|| value.dispatch(ctx, message))) {
            Ok(reply) => reply,
            Err(panic) => {
                return failed(Error::HandlerPanicked {
                    function: T::type_name().to_owned(),
                    id: ctx.id().to_owned(),
                    handler: info.name.to_owned(),
                    message: panic_message(&*panic),
                });
            }
        };
        if let Some(e) = ctx.take_failure() {
            return failed(e);
        }
        let bytes = match reply.bytes {
            Ok(b) => b,
            Err(e) => return failed(e),
        };
        stage.set(Stage::of(info, "encoding its new state (`Serialize`)"));
        let outcome = match reply.rejected {
            Some(error) => Outcome::Rejected {
                reply: bytes,
                error,
            },
            None if info.mutates => {
                match crate::function::encode_state(&value, ctx.now_ms(), ctx.take_state_buffer()) {
                    Ok(state) => Outcome::Applied {
                        reply: bytes,
                        new_state: Some(state),
                    },
                    Err(e) => Outcome::Failed(e),
                }
            }
            None => Outcome::Applied {
                reply: bytes,
                new_state: None,
            },
        };
        Invocation {
            handler: Some(info.name),
            outcome,
        }
    }

    /// Runs `f`, turning a panic of the user code it calls (the serde
    /// implementations of messages and replies) into [`Error::Panicked`].
    fn guard<R>(during: &str, f: impl FnOnce() -> Result<R, Error>) -> Result<R, Error> {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            Err(Error::Panicked {
                function: T::type_name().to_owned(),
                id: String::new(),
                during: during.to_owned(),
                message: panic_message(&*panic),
            })
        })
    }

    fn message_from_json_unguarded(
        handler: &str,
        args: serde_json::Value,
    ) -> Result<Vec<u8>, Error> {
        Self::public_handler(handler)?;
        let invalid = |field: Option<String>, reason: String| Error::InvalidArguments {
            function: T::type_name().to_owned(),
            handler: handler.to_owned(),
            field,
            reason,
        };
        let args = match args {
            serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
            object @ serde_json::Value::Object(_) => object,
            other => {
                return Err(invalid(
                    None,
                    format!("expected a JSON object of the arguments by name, got {other}"),
                ));
            }
        };
        let mut wrapped = serde_json::Map::new();
        wrapped.insert(handler.to_owned(), args);
        let message: T::Message =
            serde_path_to_error::deserialize(serde_json::Value::Object(wrapped)).map_err(|e| {
                let path = e.path().to_string();
                let field = path
                    .strip_prefix(handler)
                    .map(|p| p.trim_start_matches('.').to_owned())
                    .filter(|p| !p.is_empty() && p != "?");
                let reason = match &field {
                    Some(field) => format!("field `{field}`: {}", e.inner()),
                    None => e.inner().to_string(),
                };
                invalid(field, reason)
            })?;
        crate::wire::encode(&message)
    }

    fn handler_index(handler: &str) -> Result<usize, Error> {
        T::HANDLERS
            .iter()
            .position(|h| h.name == handler)
            .ok_or_else(|| Self::no_public_handler(handler))
    }

    /// A handler that callers by name may reach: internal ones are refused
    /// with exactly the error of a handler that does not exist, so that
    /// nothing tells the two apart from outside.
    fn public_handler(handler: &str) -> Result<usize, Error> {
        T::HANDLERS
            .iter()
            .position(|h| h.name == handler && !h.internal)
            .ok_or_else(|| Self::no_public_handler(handler))
    }

    fn no_public_handler(handler: &str) -> Error {
        Error::UnknownHandler {
            function: T::type_name().to_owned(),
            handler: handler.to_owned(),
            known: T::HANDLERS
                .iter()
                .filter(|h| !h.internal)
                .map(|h| h.name.to_owned())
                .collect(),
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The registered function types by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    /// Looked up twice per call: foldhash rather than SipHash.
    by_name: foldhash::HashMap<&'static str, Arc<dyn ErasedFunction>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl Registry {
    /// Registers `T`; registering a type twice is harmless, two types with one
    /// name is a configuration error.
    pub(crate) fn register<T: StatefulFunction>(&mut self) -> Result<(), Error> {
        let name = T::type_name();
        if let Some(existing) = self.by_name.get(name) {
            if existing.handlers() != T::HANDLERS {
                return Err(Error::Config(format!(
                    "two different function types are both named `{name}`; give one of them \
                     #[stateful_function(name = \"...\")]"
                )));
            }
            return Ok(());
        }
        self.by_name.insert(name, Arc::new(Typed::<T>(PhantomData)));
        Ok(())
    }

    /// Registers an erased function by hand (tests of what the runtime
    /// does when code it calls misbehaves).
    #[cfg(test)]
    pub(crate) fn register_erased(&mut self, name: &'static str, f: Arc<dyn ErasedFunction>) {
        self.by_name.insert(name, f);
    }

    pub(crate) fn get(&self, name: &str) -> Result<&Arc<dyn ErasedFunction>, Error> {
        self.by_name
            .get(name)
            .ok_or_else(|| Error::UnknownFunction {
                name: name.to_owned(),
                known: self.names(),
            })
    }

    /// Every registered type with its handlers, sorted by name.
    pub(crate) fn describe(&self) -> Vec<(String, &'static [HandlerInfo])> {
        let mut all: Vec<_> = self
            .by_name
            .iter()
            .map(|(name, f)| ((*name).to_owned(), f.handlers()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Every registered type, sorted by name, with its public handlers (not
    /// the internal ones, which callers by name cannot reach) and their
    /// JSON Schemas: what the ingress's OpenAPI document describes.
    #[cfg_attr(
        not(feature = "http"),
        allow(dead_code, reason = "the OpenAPI document is the ingress's")
    )]
    pub(crate) fn public_schemas(
        &self,
        schemas: &mut crate::schema::Schemas,
    ) -> Vec<(
        &'static str,
        Vec<(&'static HandlerInfo, crate::schema::HandlerSchema)>,
    )> {
        let mut functions: Vec<&Arc<dyn ErasedFunction>> = self.by_name.values().collect();
        functions.sort_by_key(|f| f.type_name());
        functions
            .into_iter()
            .map(|f| {
                let handlers = f
                    .handlers()
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !h.internal)
                    .filter_map(|(i, h)| f.handler_schema(i, schemas).map(|s| (h, s)))
                    .collect();
                (f.type_name(), handlers)
            })
            .collect()
    }

    /// Whether stored message bytes for an instance of `type_name` still
    /// decode with this build's functions (see `ErasedFunction::validate`).
    pub(crate) fn validate(&self, type_name: &str, message: &[u8]) -> Result<(), MessageError> {
        self.function_of_message(type_name)?.validate(message)
    }

    /// A stored message of data directory format 1 for an instance of
    /// `type_name`, converted (see `ErasedFunction::upgrade_positional`).
    pub(crate) fn upgrade_positional(
        &self,
        type_name: &str,
        message: &[u8],
    ) -> Result<Option<Vec<u8>>, MessageError> {
        self.function_of_message(type_name)?
            .upgrade_positional(message)
    }

    fn function_of_message(&self, type_name: &str) -> Result<&dyn ErasedFunction, MessageError> {
        match self.by_name.get(type_name) {
            Some(function) => Ok(function.as_ref()),
            None => Err(MessageError::UnknownFunction {
                function: type_name.to_owned(),
                known: self.names(),
            }),
        }
    }

    /// The metric labels (function, handler) of a message for `target`,
    /// [`UNKNOWN`] for what is not registered or does not decode.
    pub(crate) fn labels_of(
        &self,
        target: &Address,
        message: &[u8],
    ) -> (&'static str, &'static str) {
        match self.by_name.get(target.type_name()) {
            Some(f) => (
                f.type_name(),
                f.handler_of(message).map_or(UNKNOWN, |h| h.name),
            ),
            None => (UNKNOWN, UNKNOWN),
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().map(|n| (*n).to_owned()).collect();
        names.sort();
        names
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests;
