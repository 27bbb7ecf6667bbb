use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Cart {
    items: u32,
}

#[stateful_function]
impl Cart {
    #[handler(internl)]
    pub fn expire(&mut self) {
        self.items = 0;
    }
}

fn main() {}
