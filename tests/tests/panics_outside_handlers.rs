//! User code runs outside the handler too: a type's `Default`, its state's
//! `Serialize` and `Deserialize`, its `migrate` function, and the
//! `Deserialize` of its handlers' arguments. A panic in any of them fails
//! that one invocation with a typed error (a message from a function goes
//! through the retry and dead-letter policy); the shard goes on serving
//! other instances and the runtime shuts down.
//!
//! Every runtime here has one shard and one worker, so "the shard keeps
//! serving" is the whole runtime's fate, and every call is guarded by a
//! deadline: before the fix, the worker thread died and the next call
//! waited forever.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use statefn::{RetryPolicy, prelude::*};
use statefn_tests::{Recorder, eventually};

/// Fails the test instead of hanging it.
async fn within<T>(what: &str, future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future.into_future())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 30 s: a worker is gone"))
}

/// Its `Default` panics: the first call to any instance has no state to
/// start from.
#[stateful_function(name = "panics.NoDefault")]
#[derive(Debug, Serialize, Deserialize)]
pub struct NoDefault {
    n: u64,
}

impl Default for NoDefault {
    fn default() -> Self {
        panic!("NoDefault has no default");
    }
}

#[stateful_function]
impl NoDefault {
    #[handler]
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

/// Its state's `Serialize` panics once poisoned.
#[stateful_function(name = "panics.Unserializable")]
#[derive(Debug, Default, Deserialize)]
pub struct Unserializable {
    poisoned: bool,
    n: u64,
}

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert!(!self.poisoned, "cannot serialize a poisoned state");
        (self.poisoned, self.n).serialize(serializer)
    }
}

#[stateful_function]
impl Unserializable {
    #[handler]
    pub fn add(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    #[handler]
    pub fn poison(&mut self) {
        self.n += 100;
        self.poisoned = true;
    }

    #[handler]
    pub fn count(&self) -> u64 {
        self.n
    }
}

/// An argument whose `Deserialize` panics: the message cannot be decoded
/// without running it.
#[derive(Debug, Serialize)]
pub struct Grenade(u8);

impl<'de> Deserialize<'de> for Grenade {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("the grenade went off while decoding");
    }
}

#[stateful_function(name = "panics.Catcher")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Catcher {
    caught: u64,
}

#[stateful_function]
impl Catcher {
    #[handler]
    pub fn catch(&mut self, grenade: Grenade) {
        self.caught += u64::from(grenade.0);
    }
}

/// Sends an `add` to a `NoDefault`: a message from a function, which is
/// retried and then dead-lettered.
#[stateful_function(name = "panics.Sender")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sender {}

#[stateful_function]
impl Sender {
    #[handler]
    pub fn poke(&mut self, ctx: &mut Context, to: String) {
        ctx.send::<NoDefault>(&to).add(1);
    }
}

fn builder() -> statefn::Builder {
    Runtime::builder()
        .shards(1)
        .workers(1)
        .retry_policy(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        })
        .register::<NoDefault>()
        .register::<Unserializable>()
        .register::<Catcher>()
        .register::<Sender>()
        .register::<Recorder>()
}

/// The shard still serves: a healthy instance on it answers.
async fn still_serving(runtime: &Runtime, n: u64) -> Result<(), Error> {
    let recorder = runtime.handle::<Recorder>("healthy");
    within(
        "a call to a healthy instance",
        recorder.record("t".into(), n),
    )
    .await?;
    let seen = within("a read of a healthy instance", recorder.seen()).await?;
    assert_eq!(seen.last(), Some(&("t".to_owned(), n)));
    Ok(())
}

fn assert_panicked(err: &Error, function: &str, what: &str) {
    match err {
        Error::Panicked {
            function: f,
            message,
            ..
        } => {
            assert_eq!(f, function, "{err}");
            assert!(message.contains(what), "{err}");
        }
        other => panic!("expected Error::Panicked, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_default_fails_the_call_and_the_shard_serves_on() -> Result<(), Error> {
    let runtime = builder().in_memory().open().await?;
    let err = within(
        "a call whose Default panics",
        runtime.handle::<NoDefault>("x").add(1),
    )
    .await
    .expect_err("Default panics");
    assert_panicked(&err, "panics.NoDefault", "NoDefault has no default");
    assert!(err.to_string().contains("Default"), "{err}");
    still_serving(&runtime, 1).await?;
    within("shutdown", runtime.shutdown()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_serialize_of_the_new_state_changes_nothing() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = builder().data_dir(dir.path()).open().await?;
    let counter = runtime.handle::<Unserializable>("c");
    assert_eq!(within("add", counter.add()).await?, 1);
    let err = within(
        "a call whose new state cannot be serialized",
        counter.poison(),
    )
    .await
    .expect_err("Serialize panics");
    assert_panicked(
        &err,
        "panics.Unserializable",
        "cannot serialize a poisoned state",
    );
    assert_eq!(
        within("count", counter.count()).await?,
        1,
        "the state is as before the failed invocation"
    );
    still_serving(&runtime, 2).await?;
    within("shutdown", runtime.shutdown()).await?;
    // Nothing of the failed invocation reached the disk either.
    let runtime = builder().data_dir(dir.path()).open().await?;
    assert_eq!(
        within("count", runtime.handle::<Unserializable>("c").count()).await?,
        1
    );
    within("shutdown", runtime.shutdown()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_argument_decoder_fails_the_call() -> Result<(), Error> {
    let runtime = builder().in_memory().open().await?;
    let err = within(
        "a call whose argument cannot be decoded",
        runtime.handle::<Catcher>("c").catch(Grenade(1)),
    )
    .await
    .expect_err("Deserialize panics");
    assert_panicked(&err, "panics.Catcher", "the grenade went off");
    still_serving(&runtime, 3).await?;
    within("shutdown", runtime.shutdown()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_target_panics_before_its_handler_is_dead_lettered() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = builder().data_dir(dir.path()).open().await?;
    within("poke", runtime.handle::<Sender>("s").poke("nd".into())).await?;
    let letters = eventually(30, || {
        let runtime = runtime.clone();
        async move { Some(runtime.dead_letters().await).filter(|l| !l.is_empty()) }
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].target.type_name(), "panics.NoDefault");
    assert_eq!(letters[0].attempts, 2, "retried by the policy first");
    assert!(
        letters[0].error.contains("NoDefault has no default"),
        "{}",
        letters[0].error
    );
    still_serving(&runtime, 4).await?;
    within("shutdown", runtime.shutdown()).await
}

/// Release 1 of `panics.Account` and release 2, whose migration overflows
/// on a large balance, as the repository's own example migration would.
mod releases {
    use super::*;

    pub(crate) mod v1 {
        use super::*;

        #[stateful_function(name = "panics.Account")]
        #[derive(Debug, Default, Serialize, Deserialize)]
        pub(crate) struct Account {
            pub(crate) balance: i64,
        }

        #[stateful_function]
        impl Account {
            #[handler]
            fn deposit(&mut self, amount: i64) -> i64 {
                self.balance += amount;
                self.balance
            }
        }
    }

    pub(crate) mod v2 {
        use super::*;

        #[stateful_function(name = "panics.Account", version = 2, migrate = Account::from_v1)]
        #[derive(Debug, Default, Serialize, Deserialize)]
        pub(crate) struct Account {
            pub(crate) cents: i64,
        }

        impl Account {
            fn from_v1(version: u32, bytes: &[u8]) -> Result<Self, String> {
                assert_eq!(version, 1);
                let old: v1::Account = statefn::decode_state(bytes)?;
                let cents = old
                    .balance
                    .checked_mul(100)
                    .unwrap_or_else(|| panic!("the migration overflowed on {}", old.balance));
                Ok(Account { cents })
            }
        }

        #[stateful_function]
        impl Account {
            #[handler]
            fn cents(&self) -> i64 {
                self.cents
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_migration_fails_the_call_and_keeps_the_stored_state() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = builder()
        .data_dir(dir.path())
        .register::<releases::v1::Account>()
        .open()
        .await?;
    let big = runtime.handle::<releases::v1::Account>("big");
    within("deposit", big.deposit(i64::MAX / 2)).await?;
    let small = runtime.handle::<releases::v1::Account>("small");
    within("deposit", small.deposit(7)).await?;
    within("shutdown", runtime.shutdown()).await?;

    let runtime = builder()
        .data_dir(dir.path())
        .register::<releases::v2::Account>()
        .open()
        .await?;
    let err = within(
        "a call whose migration panics",
        runtime.handle::<releases::v2::Account>("big").cents(),
    )
    .await
    .expect_err("migrate panics");
    assert_panicked(&err, "panics.Account", "the migration overflowed");
    assert!(err.to_string().contains("migrat"), "{err}");
    assert_eq!(
        within(
            "a migrated read",
            runtime.handle::<releases::v2::Account>("small").cents()
        )
        .await?,
        700
    );
    still_serving(&runtime, 5).await?;
    within("shutdown", runtime.shutdown()).await
}

/// Expires after about 585 million years: its expiry time overflows a u64
/// of milliseconds when added to today's clock.
#[stateful_function(name = "panics.Eternal", expire_after = "213503982000d")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Eternal {
    n: u64,
}

#[stateful_function]
impl Eternal {
    #[handler]
    pub fn add(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_beyond_the_clock_s_range_is_applied_and_never_fires() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = builder()
        .data_dir(dir.path())
        .register::<Eternal>()
        .open()
        .await?;
    let eternal = runtime.handle::<Eternal>("e");
    assert_eq!(within("add", eternal.add()).await?, 1);
    assert_eq!(within("add", eternal.add()).await?, 2);
    still_serving(&runtime, 6).await?;
    within("shutdown", runtime.shutdown()).await
}
