use serde::{Deserialize, Serialize};
use statefn::prelude::*;

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
}

fn main() {}
