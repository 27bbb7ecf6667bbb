//! A test of the HTTP API that calls an internal handler: the ingress
//! answers it with 404, so its route has no path.

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function(name = "shop.Cart")]
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

async fn test_expiry_over_http(base: &str) -> String {
    let add = statefn::routes::<Cart>("c-1").add().path();
    let expire = statefn::routes::<Cart>("c-1").expire().path();
    format!("{base}{add} then {base}{expire}")
}

fn main() {
    let _ = test_expiry_over_http;
}
