//! The registry alone: validation of stored messages, JSON, erased calls.

use serde::{Deserialize, Serialize};

use super::*;
use crate::{encode_message, stateful_function};

#[stateful_function(name = "reg.Counter")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Counter {
    n: u64,
}

#[stateful_function]
impl Counter {
    #[handler]
    fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }

    #[handler(internal)]
    fn reset(&mut self) {
        self.n = 0;
    }
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register::<Counter>().expect("registers");
    registry
}

/// A message naming `handler`, with `fingerprint`, and no arguments.
fn named(handler: &str, fingerprint: u32) -> Vec<u8> {
    let mut bytes = vec![0xA1, u8::try_from(handler.len()).expect("short")];
    bytes.extend_from_slice(handler.as_bytes());
    bytes.extend_from_slice(&fingerprint.to_le_bytes());
    bytes
}

#[test]
fn validate_accepts_the_messages_of_this_build() {
    let registry = registry();
    for message in [CounterMessage::Add { by: 3 }, CounterMessage::Reset {}] {
        let bytes = encode_message::<Counter>(&message).expect("encodes");
        registry.validate("reg.Counter", &bytes).expect("valid");
    }
}

#[test]
fn validate_names_the_handler_a_stored_message_wants_and_this_build_lacks() {
    let err = registry()
        .validate("reg.Counter", &named("gone", 0))
        .expect_err("no handler `gone`");
    assert_eq!(
        err,
        MessageError::UnknownHandler {
            function: "reg.Counter".into(),
            handler: "gone".into(),
            known: vec!["add".into(), "reset".into()],
        }
    );
}

#[test]
fn validate_refuses_a_message_for_changed_arguments() {
    let mut bytes = named("add", crate::wire::fingerprint("by:u32"));
    bytes.push(3);
    let err = registry()
        .validate("reg.Counter", &bytes)
        .expect_err("`add` takes a u64 now");
    assert!(
        matches!(&err, MessageError::ArgumentsChanged { handler, signature, .. }
            if handler == "add" && signature == "by:u64"),
        "{err:?}"
    );
}

#[test]
fn validate_refuses_a_message_for_a_type_that_is_not_registered() {
    let err = registry()
        .validate("reg.Gone", &named("add", 0))
        .expect_err("not registered");
    assert_eq!(
        err,
        MessageError::UnknownFunction {
            function: "reg.Gone".into(),
            known: vec!["reg.Counter".into()],
        }
    );
}

#[test]
fn upgrading_a_positional_message_names_the_handler_at_its_position() {
    let registry = registry();
    // `add(by: 3)` and `reset()` of the first format: variant index, args.
    let add = registry
        .upgrade_positional("reg.Counter", &[0, 3])
        .expect("converts")
        .expect("changed");
    assert_eq!(
        add,
        encode_message::<Counter>(&CounterMessage::Add { by: 3 }).expect("encodes")
    );
    let reset = registry
        .upgrade_positional("reg.Counter", &[1])
        .expect("converts")
        .expect("changed");
    assert_eq!(
        reset,
        encode_message::<Counter>(&CounterMessage::Reset {}).expect("encodes")
    );
    // Running it again leaves the named message as it is.
    assert_eq!(registry.upgrade_positional("reg.Counter", &add), Ok(None));
}

#[test]
fn a_positional_message_that_does_not_fit_its_handler_is_not_converted() {
    let registry = registry();
    for (bytes, why) in [
        (vec![2, 3], "handler number 2"),
        // `reset` takes no argument: a byte is left over.
        (vec![1, 3], "left after the last argument"),
        // `add` without its argument.
        (vec![0], "argument `by`"),
    ] {
        let err = registry
            .upgrade_positional("reg.Counter", &bytes)
            .expect_err("not convertible");
        assert!(
            matches!(&err, MessageError::Malformed { function, .. } if function == "reg.Counter")
                && err.to_string().contains(why),
            "{bytes:?}: {err}"
        );
    }
    let err = registry
        .upgrade_positional("reg.Gone", &[0, 3])
        .expect_err("not registered");
    assert!(
        matches!(err, MessageError::UnknownFunction { .. }),
        "{err:?}"
    );
}

#[test]
fn a_message_that_does_not_decode_fails_its_invocation_with_the_reason() {
    let registry = registry();
    let function = registry.get("reg.Counter").expect("registered");
    let mut ctx = Context::new(crate::Address::new("reg.Counter", "x").expect("valid"), 0);
    let invocation = function.invoke(None, &named("gone", 0), &mut ctx);
    assert!(invocation.handler.is_none());
    match invocation.outcome {
        Outcome::Failed(Error::Decode {
            function, reason, ..
        }) => {
            assert_eq!(function, "reg.Counter");
            assert!(reason.contains("names the handler `gone`"), "{reason}");
        }
        other => panic!("expected a decode failure, got {other:?}"),
    }
}

#[test]
fn json_callers_cannot_tell_an_internal_handler_from_a_missing_one() {
    let registry = registry();
    let function = registry.get("reg.Counter").expect("registered");
    let internal = function
        .message_from_json("reset", serde_json::Value::Null)
        .expect_err("internal");
    let missing = function
        .message_from_json("nope", serde_json::Value::Null)
        .expect_err("missing");
    let (Error::UnknownHandler { known: a, .. }, Error::UnknownHandler { known: b, .. }) =
        (&internal, &missing)
    else {
        panic!("{internal:?} / {missing:?}");
    };
    assert_eq!((a, b), (&vec!["add".to_owned()], &vec!["add".to_owned()]));
    assert_eq!(
        internal.to_string().replace("reset", "nope"),
        missing.to_string()
    );
    function
        .message_from_json("add", serde_json::json!({"by": 1}))
        .expect("public handlers are callable by name");
}

/// Every registered name finds its own function, however many types are
/// registered, and an unknown one is refused.
#[test]
fn every_registered_type_is_found_by_name_however_many_there_are() {
    const NAMES: [&str; 12] = [
        "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11",
    ];
    let mut registry = Registry::default();
    let mut registered: Vec<Arc<dyn ErasedFunction>> = Vec::new();
    for (n, name) in NAMES.iter().enumerate() {
        let f: Arc<dyn ErasedFunction> = Arc::new(Typed::<Counter>(PhantomData));
        registry.register_erased(name, Arc::clone(&f));
        registered.push(f);
        for (known, f) in NAMES.iter().zip(&registered).take(n + 1) {
            let found = registry.get(known).expect("registered");
            assert!(Arc::ptr_eq(found, f), "{known} with {} types", n + 1);
        }
        assert!(matches!(
            registry.get("t1x"),
            Err(Error::UnknownFunction { .. })
        ));
        assert!(
            matches!(
                registry.get(NAMES[(n + 1) % NAMES.len()]),
                Err(Error::UnknownFunction { .. })
            ) || n + 1 == NAMES.len()
        );
    }
}
