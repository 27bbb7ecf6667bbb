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
    pub fn transfer(&mut self, to: String, ctx: &mut Context, amount: i64) {
        self.balance -= amount;
        let _ = (ctx.id(), to);
    }
}

fn main() {}
