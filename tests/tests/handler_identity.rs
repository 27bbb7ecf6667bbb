//! A stored message keeps its meaning across deploys: it names its handler
//! (not its position among the handlers) and carries a fingerprint of the
//! handler's arguments. Version A of function `Acct` has handlers `a` and
//! `b`; each later version is another struct registered under the same
//! type name, and bytes move from one to the other through the encoding the
//! runtime stores (`encode_message` / `decode_message`), or through a data
//! directory reopened with the other version.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn::{MessageError, RetryPolicy, prelude::*, testing::TestRuntime};

/// Declares one version of `Acct`: each handler records `"<handler>:<n>"`.
macro_rules! version {
    ($module:ident { $([$($attr:tt)*] $handler:ident($ty:ty)),* $(,)? }) => {
        mod $module {
            use super::*;

            #[stateful_function(name = "Acct")]
            #[derive(Debug, Default, Serialize, Deserialize)]
            pub(crate) struct Acct {
                pub(crate) log: Vec<String>,
            }

            #[stateful_function(message_derive(Debug, PartialEq))]
            impl Acct {
                $(
                    #[$($attr)*]
                    fn $handler(&mut self, n: $ty) {
                        // `n == 0` stands for a poison message in version A.
                        assert!(n != 0 || stringify!($module) != "a", "poison");
                        self.log.push(format!("{}:{n}", stringify!($handler)));
                    }
                )*
            }
        }
    };
}

version!(a { [handler] a(u32), [handler] b(u32) });
version!(reordered { [handler] b(u32), [handler] a(u32) });
version!(inserted { [handler] a(u32), [handler] z(u32), [handler] b(u32) });
version!(renamed { [handler] a(u32), [handler(renamed_from = "b")] b2(u32) });
version!(removed { [handler] a(u32) });
version!(replaced { [handler] a(u32), [handler] c(u32) });
version!(retyped { [handler] a(u32), [handler] b(i64) });
version!(kept_name { [handler] a(u32), [handler(name = "b")] b_renamed_in_rust(u32) });

/// Version A's `b(5)`, as the runtime stores it.
fn stored_b5() -> Vec<u8> {
    statefn::encode_message::<a::Acct>(&a::AcctMessage::B { n: 5 }).expect("encodes")
}

#[test]
fn reordering_handlers_keeps_a_stored_message_on_its_handler() {
    let message = statefn::decode_message::<reordered::Acct>(&stored_b5()).expect("decodes");
    assert_eq!(message, reordered::AcctMessage::B { n: 5 });
    let message = statefn::decode_message::<reordered::Acct>(
        &statefn::encode_message::<a::Acct>(&a::AcctMessage::A { n: 7 }).expect("encodes"),
    )
    .expect("decodes");
    assert_eq!(message, reordered::AcctMessage::A { n: 7 });
}

#[test]
fn inserting_a_handler_before_it_keeps_a_stored_message_on_its_handler() {
    let message = statefn::decode_message::<inserted::Acct>(&stored_b5()).expect("decodes");
    assert_eq!(message, inserted::AcctMessage::B { n: 5 });
}

#[test]
fn a_renamed_handler_takes_the_messages_stored_under_its_old_name() {
    let message = statefn::decode_message::<renamed::Acct>(&stored_b5()).expect("decodes");
    assert_eq!(message, renamed::AcctMessage::B2 { n: 5 });
    // A message the new version writes carries the new name.
    let new = statefn::encode_message::<renamed::Acct>(&message).expect("encodes");
    assert_eq!(&new[2..4], b"b2");
}

#[test]
fn an_explicit_wire_name_keeps_messages_when_the_method_is_renamed() {
    let message = statefn::decode_message::<kept_name::Acct>(&stored_b5()).expect("decodes");
    assert_eq!(message, kept_name::AcctMessage::BRenamedInRust { n: 5 });
}

#[test]
fn a_removed_handler_is_a_typed_error_naming_it() {
    let err = statefn::decode_message::<removed::Acct>(&stored_b5()).expect_err("b is gone");
    assert_eq!(
        err,
        MessageError::UnknownHandler {
            function: "Acct".into(),
            handler: "b".into(),
            known: vec!["a".into()],
        }
    );
    assert!(err.to_string().contains("renamed_from = \"b\""), "{err}");
}

#[test]
fn a_handler_in_the_removed_ones_place_never_gets_its_messages() {
    let err = statefn::decode_message::<replaced::Acct>(&stored_b5()).expect_err("b is gone");
    assert!(
        matches!(&err, MessageError::UnknownHandler { handler, known, .. }
            if handler == "b" && known == &["a", "c"]),
        "{err:?}"
    );
}

#[test]
fn a_changed_argument_type_is_a_typed_error_naming_the_handler_and_its_arguments() {
    let err = statefn::decode_message::<retyped::Acct>(&stored_b5()).expect_err("n changed type");
    match &err {
        MessageError::ArgumentsChanged {
            function,
            handler,
            stored_name,
            signature,
            stored,
            current,
        } => {
            assert_eq!(
                (function.as_str(), handler.as_str(), stored_name.as_str()),
                ("Acct", "b", "b")
            );
            assert_eq!(signature, "n:i64");
            assert_eq!(*stored, statefn::__private::fingerprint("n:u32"));
            assert_eq!(*current, statefn::__private::fingerprint("n:i64"));
        }
        other => panic!("expected ArgumentsChanged, got {other:?}"),
    }
    assert!(err.to_string().contains("`b(n:i64)`"), "{err}");
}

#[test]
fn bytes_that_are_not_a_message_are_malformed_never_a_panic() {
    let good = stored_b5();
    // The positional encoding of before: variant 1, n = 5.
    let positional = [1u8, 5];
    let mut trailing = good.clone();
    trailing.push(0);
    let mut cases: Vec<Vec<u8>> = vec![Vec::new(), positional.to_vec(), trailing];
    cases.extend((0..good.len()).map(|len| good[..len].to_vec()));
    for bytes in cases {
        match statefn::decode_message::<a::Acct>(&bytes) {
            Err(MessageError::Malformed { function, .. }) => assert_eq!(function, "Acct"),
            other => panic!("{bytes:?} decoded as {other:?}"),
        }
    }
    let err = statefn::decode_message::<a::Acct>(&positional).expect_err("positional");
    assert!(err.to_string().contains("0xa1"), "{err}");
}

/// Runs version A on a data directory and leaves `b(n)` there as a timer due
/// in an hour; returns the directory.
fn stored_timer(n: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rt = TestRuntime::builder()
        .data_dir(dir.path())
        .register::<a::Acct>()
        .start()
        .expect("version A starts");
    let runtime = rt.runtime().clone();
    let enqueue = runtime.enqueue_json(
        "Acct",
        "x",
        "b",
        serde_json::json!({ "n": n }),
        Duration::from_secs(3600),
        None,
    );
    rt.call(enqueue).expect("the timer is stored");
    rt.shutdown();
    dir
}

/// Reopens `dir` with version `T`, runs past the timer, and returns the
/// instance's log and the dead letters' errors.
fn fire_with<T: StatefulFunction>(
    dir: &tempfile::TempDir,
    log: impl Fn(&T) -> Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut rt = TestRuntime::builder()
        .data_dir(dir.path())
        .retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
        .register::<T>()
        .start()
        .expect("the new version starts");
    rt.advance(Duration::from_secs(2 * 3600));
    let state = rt.state::<T>("x").expect("readable").map(|s| log(&s));
    let letters = rt.dead_letters().into_iter().map(|l| l.error).collect();
    rt.shutdown();
    (state.unwrap_or_default(), letters)
}

#[test]
fn a_stored_timer_runs_its_own_handler_after_the_handlers_are_reordered() {
    let dir = stored_timer(5);
    let (log, letters) = fire_with::<reordered::Acct>(&dir, |s| s.log.clone());
    assert_eq!(
        (log, letters),
        (vec!["b:5".to_owned()], Vec::<String>::new())
    );
}

#[test]
fn a_stored_timer_runs_its_own_handler_after_one_is_inserted_before_it() {
    let dir = stored_timer(5);
    let (log, letters) = fire_with::<inserted::Acct>(&dir, |s| s.log.clone());
    assert_eq!(
        (log, letters),
        (vec!["b:5".to_owned()], Vec::<String>::new())
    );
}

#[test]
fn a_stored_timer_reaches_its_renamed_handler() {
    let dir = stored_timer(5);
    let (log, letters) = fire_with::<renamed::Acct>(&dir, |s| s.log.clone());
    assert_eq!(
        (log, letters),
        (vec!["b2:5".to_owned()], Vec::<String>::new())
    );
}

#[test]
fn a_stored_timer_for_a_removed_handler_becomes_a_dead_letter_naming_it() {
    let dir = stored_timer(5);
    let (log, letters) = fire_with::<replaced::Acct>(&dir, |s| s.log.clone());
    assert!(log.is_empty(), "another handler ran: {log:?}");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].contains("names the handler `b`"),
        "{}",
        letters[0]
    );
}

#[test]
fn a_stored_timer_whose_arguments_changed_becomes_a_dead_letter_not_a_misread_call() {
    let dir = stored_timer(5);
    let (log, letters) = fire_with::<retyped::Acct>(&dir, |s| s.log.clone());
    assert!(log.is_empty(), "ran with misread arguments: {log:?}");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].contains("`b(n:i64)`"), "{}", letters[0]);
}

#[test]
fn a_dead_letter_of_the_old_version_is_replayed_to_the_renamed_handler() {
    // Version A's `b(0)` panics: a dead letter after its one attempt.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let policy = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let mut rt = TestRuntime::builder()
        .data_dir(dir.path())
        .retry_policy(policy)
        .register::<a::Acct>()
        .start()
        .expect("version A starts");
    let runtime = rt.runtime().clone();
    let enqueue = runtime.enqueue_json(
        "Acct",
        "x",
        "b",
        serde_json::json!({ "n": 0 }),
        Duration::ZERO,
        None,
    );
    rt.call(enqueue).expect("enqueued");
    rt.run_until_idle();
    assert_eq!(rt.dead_letters().len(), 1);
    rt.shutdown();

    let mut rt = TestRuntime::builder()
        .data_dir(dir.path())
        .retry_policy(policy)
        .register::<renamed::Acct>()
        .start()
        .expect("the renamed version starts");
    let letter = rt.dead_letters().pop().expect("kept across the deploy");
    assert_eq!(letter.message, serde_json::json!({ "b2": { "n": 0 } }));
    rt.replay_dead_letter(letter.id).expect("replayed");
    rt.run_until_idle();
    let state = rt.state::<renamed::Acct>("x").expect("readable");
    assert_eq!(state.expect("stored").log, ["b2:0"]);
}

/// Another function type, for a data directory reopened without `Acct`.
#[stateful_function(name = "Other")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Other {
    n: u32,
}

#[stateful_function]
impl Other {
    #[handler]
    fn set(&mut self, n: u32) {
        self.n = n;
    }
}

/// Opens `dir` with version `T` (and the default retry policy) without
/// running anything.
fn open_with<T: StatefulFunction>(dir: &tempfile::TempDir) -> TestRuntime {
    TestRuntime::builder()
        .data_dir(dir.path())
        .register::<T>()
        .start()
        .expect("the new version starts")
}

#[test]
fn a_stored_timer_for_a_removed_handler_is_a_dead_letter_as_soon_as_the_new_version_opens() {
    let dir = stored_timer(5);
    let mut rt = open_with::<replaced::Acct>(&dir);
    // At open, an hour before the timer is due.
    let letters = rt.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.target.to_string(), "Acct/x");
    assert!(
        letter.error.contains("`Acct`") && letter.error.contains("names the handler `b`"),
        "{}",
        letter.error
    );
    assert_eq!(letter.attempts, 0, "never delivered");
    // The timer is gone: nothing runs at its time, not even after a crash.
    rt.advance(Duration::from_secs(2 * 3600));
    assert!(rt.state::<replaced::Acct>("x").expect("readable").is_none());
    rt.crash().expect("recovers");
    rt.advance(Duration::from_secs(2 * 3600));
    assert!(rt.state::<replaced::Acct>("x").expect("readable").is_none());
    let again = rt.dead_letters();
    assert_eq!(
        again.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![letter.id],
        "kept once, durably"
    );
    drop(rt);

    // Rolled back to a version with `b`: the letter is replayed into it.
    let mut rt = open_with::<a::Acct>(&dir);
    rt.replay_dead_letter(letter.id).expect("replayed");
    let state = rt.state::<a::Acct>("x").expect("readable");
    assert_eq!(state.expect("stored").log, ["b:5"]);
    assert!(rt.dead_letters().is_empty());
}

#[test]
fn a_stored_timer_whose_arguments_changed_is_a_dead_letter_at_open_naming_its_arguments() {
    let dir = stored_timer(5);
    let rt = open_with::<retyped::Acct>(&dir);
    let letters = rt.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].error.contains("`b(n:i64)`"),
        "{}",
        letters[0].error
    );
}

#[test]
fn a_stored_timer_that_still_decodes_stays_a_timer() {
    let dir = stored_timer(5);
    let mut rt = open_with::<renamed::Acct>(&dir);
    assert!(rt.dead_letters().is_empty());
    rt.advance(Duration::from_secs(2 * 3600));
    let state = rt.state::<renamed::Acct>("x").expect("readable");
    assert_eq!(state.expect("stored").log, ["b2:5"]);
}

#[test]
fn a_stored_timer_of_a_type_no_longer_registered_is_a_dead_letter_saying_to_register_it() {
    let dir = stored_timer(5);
    let rt = open_with::<Other>(&dir);
    let letters = rt.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].error.contains("`Acct`") && letters[0].error.contains("register"),
        "{}",
        letters[0].error
    );
    let id = letters[0].id;
    drop(rt);
    // Registered again, the letter is replayed into its handler.
    let mut rt = open_with::<a::Acct>(&dir);
    rt.replay_dead_letter(id).expect("replayed");
    let state = rt.state::<a::Acct>("x").expect("readable");
    assert_eq!(state.expect("stored").log, ["b:5"]);
}

#[test]
fn a_message_in_flight_for_a_removed_handler_is_a_dead_letter_on_arrival_without_retries() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rt = open_with::<a::Acct>(&dir);
    let runtime = rt.runtime().clone();
    let enqueue = runtime.enqueue_json(
        "Acct",
        "x",
        "b",
        serde_json::json!({ "n": 5 }),
        Duration::ZERO,
        None,
    );
    // Committed (in the sender's outbox), not yet applied: then a crash.
    let mut started = rt.start(enqueue);
    while started.result().is_none() {
        assert!(rt.step(), "the enqueue commits");
    }
    started
        .take()
        .expect("finished")
        .expect("the message is stored");
    drop(rt);

    // The default policy would retry a failing message; one that cannot
    // decode is a dead letter on its first delivery, without waiting.
    let mut rt = open_with::<replaced::Acct>(&dir);
    rt.run_until_idle();
    let letters = rt.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].attempts, 1);
    assert!(
        letters[0].error.contains("names the handler `b`"),
        "{}",
        letters[0].error
    );
    assert!(rt.state::<replaced::Acct>("x").expect("readable").is_none());
}

#[test]
fn a_retry_after_a_rename_is_answered_from_the_reply_stored_under_the_old_name() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rt = open_with::<a::Acct>(&dir);
    rt.call(rt.handle::<a::Acct>("x").b(5).idempotency_key("k"))
        .expect("applied");
    rt.shutdown();

    let mut rt = open_with::<renamed::Acct>(&dir);
    rt.call(rt.handle::<renamed::Acct>("x").b2(5).idempotency_key("k"))
        .expect("answered from the stored reply, not IdempotencyKeyReused");
    let state = rt.state::<renamed::Acct>("x").expect("readable");
    assert_eq!(state.expect("stored").log, ["b:5"], "applied once");
    // Another handler with the key is still a reuse.
    let reused = rt.call(rt.handle::<renamed::Acct>("x").a(5).idempotency_key("k"));
    assert!(
        matches!(reused, Err(statefn::Error::IdempotencyKeyReused { .. })),
        "{reused:?}"
    );
}

#[test]
fn the_runtime_never_runs_a_positional_message() {
    // Version A's `b(5)` in the first format: variant index 1, then n.
    let applied = statefn::__fuzz::invoke::<a::Acct>(None, &[1, 5]).expect("registers");
    assert!(!applied, "a positional message ran");
}
