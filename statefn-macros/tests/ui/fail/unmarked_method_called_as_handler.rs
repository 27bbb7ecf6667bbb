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

    /// `pub`, but not marked `#[handler]`: a helper, not reachable through a handle.
    pub fn audit(&self) -> i64 {
        self.balance
    }
}

async fn run(runtime: Runtime) -> Result<i64, statefn::Error> {
    runtime.handle::<Account>("alice").audit().await
}

fn main() {
    let _ = run;
}
