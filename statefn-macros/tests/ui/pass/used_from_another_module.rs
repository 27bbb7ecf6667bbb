mod bank {
    use serde::{Deserialize, Serialize};
    use statefn::prelude::*;

    #[stateful_function]
    #[derive(Default, Serialize, Deserialize)]
    pub struct Account {
        balance: i64,
    }

    #[stateful_function]
    impl Account {
        #[handler]
        pub fn deposit(&mut self, amount: i64) -> i64 {
            self.balance += amount;
            self.balance
        }

        #[handler]
        pub fn balance(&self) -> i64 {
            self.balance
        }
    }
}

// Only the runtime types are imported: the handle's methods come from `Deref`.
use statefn::{Handle, Runtime};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), statefn::Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<bank::Account>()
        .open()
        .await?;
    let alice: Handle<bank::Account> = runtime.handle::<bank::Account>("alice");
    assert_eq!(alice.deposit(7).await?, 7);
    assert_eq!(alice.balance().await?, 7);
    runtime.shutdown().await?;
    Ok(())
}
