#[allow(unused_imports)]
use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
pub fn deposit(amount: i64) -> i64 {
    amount
}

fn main() {}
