//! Changing a function's state struct between releases never makes stored
//! state silently unreadable: versions are stored with the state, older ones
//! are migrated, and what cannot be read fails clearly and stays on disk.

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

/// Release 1: a balance in whole units.
mod v1 {
    use super::*;

    #[stateful_function(name = "evo.Account")]
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

/// Release 2: cents and an owner; migrates release 1's states.
mod v2 {
    use super::*;

    #[stateful_function(name = "evo.Account", version = 2, migrate = Account::migrate_from)]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Account {
        pub(crate) cents: i64,
        pub(crate) owner: String,
    }

    impl Account {
        fn migrate_from(version: u32, bytes: &[u8]) -> Result<Self, String> {
            match version {
                1 => {
                    let old: super::v1::Account = statefn::decode_state(bytes)?;
                    Ok(Account {
                        cents: old.balance * 100,
                        owner: "unknown".into(),
                    })
                }
                other => Err(format!("no migration from version {other}")),
            }
        }
    }

    #[stateful_function]
    impl Account {
        #[handler]
        fn deposit_cents(&mut self, cents: i64) -> i64 {
            self.cents += cents;
            self.cents
        }

        #[handler]
        fn view(&self) -> (i64, String) {
            (self.cents, self.owner.clone())
        }
    }
}

/// Release 3: changed again, but its author forgot the migration.
mod v3 {
    use super::*;

    #[stateful_function(name = "evo.Account", version = 3)]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Account {
        pub(crate) millis: u128,
    }

    #[stateful_function]
    impl Account {
        #[handler]
        fn millis(&self) -> u128 {
            self.millis
        }
    }
}

async fn release<T: StatefulFunction>(dir: &std::path::Path) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .register::<T>()
        .open()
        .await
}

#[tokio::test]
async fn old_states_are_migrated_and_unreadable_ones_fail_clearly_and_stay() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = release::<v1::Account>(dir.path()).await?;
    runtime.handle::<v1::Account>("ann").deposit(7).await?;
    runtime.handle::<v1::Account>("bob").deposit(1).await?;
    runtime.shutdown().await?;

    // Release 2 reads release 1's states through its migration.
    let runtime = release::<v2::Account>(dir.path()).await?;
    let ann = runtime.handle::<v2::Account>("ann");
    assert_eq!(ann.view().await?, (700, "unknown".to_owned()));
    assert_eq!(
        ann.deposit_cents(5).await?,
        705,
        "written back as version 2"
    );
    runtime.shutdown().await?;

    // Release 3 has no migration: a clear error naming both versions.
    let runtime = release::<v3::Account>(dir.path()).await?;
    let err = runtime
        .handle::<v3::Account>("ann")
        .millis()
        .await
        .expect_err("version 2 state, no migration");
    match &err {
        Error::State {
            function,
            id,
            stored,
            current,
            ..
        } => {
            assert_eq!((function.as_str(), id.as_str()), ("evo.Account", "ann"));
            assert_eq!((*stored, *current), (Some(2), 3));
        }
        other => panic!("expected Error::State, got {other:?}"),
    }
    assert!(err.to_string().contains("untouched"), "{err}");
    runtime.shutdown().await?;

    // Release 1 cannot read what release 2 wrote: refused as newer.
    let runtime = release::<v1::Account>(dir.path()).await?;
    let err = runtime
        .handle::<v1::Account>("ann")
        .deposit(1)
        .await
        .expect_err("newer state");
    assert!(err.to_string().contains("newer release"), "{err}");
    runtime.shutdown().await?;

    // Nothing was lost: release 2 still reads both states.
    let runtime = release::<v2::Account>(dir.path()).await?;
    assert_eq!(runtime.handle::<v2::Account>("ann").view().await?.0, 705);
    assert_eq!(runtime.handle::<v2::Account>("bob").view().await?.0, 100);
    runtime.shutdown().await
}
