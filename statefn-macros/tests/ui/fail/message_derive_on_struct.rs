use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function(message_derive(Debug))]
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function]
impl Account {
    #[handler]
    pub fn balance(&self) -> i64 {
        self.balance
    }
}

fn main() {}
