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
    pub fn deposit<T: Into<i64>>(&mut self, amount: T) -> i64 {
        self.balance += amount.into();
        self.balance
    }
}

fn main() {}
