//! Code serving outside callers (a web handler) holds a `Handle`: it does
//! not call an internal handler, which only other functions (and trusted
//! code, through `Handle::internal`) reach.

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Cart {
    items: u32,
}

#[stateful_function]
impl Cart {
    #[handler]
    fn add(&mut self, units: u32) -> u32 {
        self.items += units;
        self.items
    }

    /// A timer target.
    #[handler(internal)]
    fn expire(&mut self) {
        self.items = 0;
    }
}

async fn web_handler(runtime: Runtime, id: String) -> Result<(), statefn::Error> {
    let cart = runtime.handle::<Cart>(&id);
    cart.add(1).await?;
    cart.expire().await
}

fn main() {
    let _ = web_handler;
}
