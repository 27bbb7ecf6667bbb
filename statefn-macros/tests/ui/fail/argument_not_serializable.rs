use serde::{Deserialize, Serialize};
use statefn::prelude::*;

pub struct Payment {
    pub amount: i64,
}

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function]
impl Account {
    #[handler]
    pub fn pay(&mut self, payment: Payment) {
        self.balance += payment.amount;
    }
}

fn main() {}
