use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Greeter {
    last: String,
}

#[stateful_function]
impl Greeter {
    #[handler]
    pub fn greet(&mut self, name: &str) {
        self.last = name.to_owned();
    }
}

fn main() {}
