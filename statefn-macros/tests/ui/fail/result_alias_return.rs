use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// A crate-wide result alias: its error type is hidden from the macro.
pub type Result<T> = std::result::Result<T, Refused>;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function]
impl Account {
    #[handler]
    pub fn withdraw(&mut self, amount: i64) -> crate::Result<i64> {
        self.balance -= amount;
        Ok(self.balance)
    }
}

fn main() {}
