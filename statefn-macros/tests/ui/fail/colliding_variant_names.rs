use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Worker {
    done: u32,
}

#[stateful_function]
impl Worker {
    #[handler]
    pub fn do_thing(&mut self) {
        self.done += 1;
    }

    #[handler]
    pub fn do_thing_(&mut self) {
        self.done += 2;
    }
}

fn main() {}
