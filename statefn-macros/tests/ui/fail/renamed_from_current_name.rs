use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function]
impl Account {
    #[handler(renamed_from = "withdraw")]
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    #[handler]
    pub fn withdraw(&mut self, amount: i64) {
        self.balance -= amount;
    }
}

fn main() {}
