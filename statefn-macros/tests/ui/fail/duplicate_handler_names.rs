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
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[handler(name = "deposit")]
    pub fn deposit_cents(&mut self, cents: i64) {
        self.balance += cents / 100;
    }
}

fn main() {}
