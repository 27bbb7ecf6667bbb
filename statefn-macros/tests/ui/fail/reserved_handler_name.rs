use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    number: String,
}

#[stateful_function]
impl Account {
    #[handler]
    pub fn id(&self) -> String {
        self.number.clone()
    }
}

fn main() {}
