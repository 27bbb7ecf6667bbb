//! Entry points for fuzz targets (`fuzz/`): decoding of untrusted bytes
//! without a running runtime. Not a public API.

use crate::{
    Address, Context, Error, StatefulFunction,
    registry::{Outcome, Registry},
};

/// Decodes a log record as recovery would.
///
/// # Errors
///
/// Whatever decoding reports; it must never panic.
pub fn decode_log_record(bytes: &[u8]) -> Result<(), Error> {
    crate::protocol::record::decode::<crate::protocol::record::ShardRecord>(
        bytes,
        "a fuzzed record",
    )
    .map(|_| ())
}

/// Decodes a log record as recovery would and describes it (its `Debug`
/// form): for golden tests of the seed records.
///
/// # Errors
///
/// Whatever decoding reports.
pub fn describe_log_record(bytes: &[u8]) -> Result<String, Error> {
    crate::protocol::record::decode::<crate::protocol::record::ShardRecord>(bytes, "a seed record")
        .map(|record| format!("{record:?}"))
}

/// Runs `T`'s handler for `message` against `state`, both arbitrary bytes,
/// as a shard would. Returns whether the invocation applied.
///
/// # Errors
///
/// [`Error::Config`] if `T` cannot be registered.
pub fn invoke<T: StatefulFunction>(state: Option<&[u8]>, message: &[u8]) -> Result<bool, Error> {
    let mut registry = Registry::default();
    registry.register::<T>()?;
    let function = registry.get(T::type_name())?;
    let mut ctx = Context::new(Address::new(T::type_name(), "fuzz")?, 0);
    let invocation = function.invoke(state, message, &mut ctx);
    Ok(matches!(invocation.outcome, Outcome::Applied { .. }))
}

/// Builds `T`'s message for `handler` from arbitrary JSON text, as HTTP
/// ingress would.
///
/// # Errors
///
/// Invalid JSON or arguments.
pub fn message_from_json<T: StatefulFunction>(
    handler: &str,
    json: &[u8],
) -> Result<Vec<u8>, Error> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| Error::InvalidArguments {
            function: T::type_name().into(),
            handler: handler.into(),
            field: None,
            reason: e.to_string(),
        })?;
    let mut registry = Registry::default();
    registry.register::<T>()?;
    registry
        .get(T::type_name())?
        .message_from_json(handler, value)
}
