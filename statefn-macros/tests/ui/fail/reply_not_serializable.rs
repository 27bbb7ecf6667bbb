use serde::{Deserialize, Serialize};
use statefn::prelude::*;

pub struct Statement {
    pub balance: i64,
}

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function]
impl Account {
    #[handler]
    pub fn statement(&self) -> Statement {
        Statement {
            balance: self.balance,
        }
    }
}

fn main() {}
