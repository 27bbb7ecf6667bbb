//! Every handler has a route; the routes of public handlers give the
//! ingress's paths.

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function(name = "shop.Cart")]
#[derive(Default, Serialize, Deserialize)]
pub struct Cart {
    items: u32,
}

#[stateful_function]
impl Cart {
    #[handler(name = "add_units")]
    fn add(&mut self, units: u32) -> u32 {
        self.items += units;
        self.items
    }

    #[handler(internal)]
    fn expire(&mut self) {
        self.items = 0;
    }
}

mod elsewhere {
    pub fn path(id: &str) -> String {
        statefn::routes::<super::Cart>(id).add().path()
    }
}

fn main() {
    assert_eq!(elsewhere::path("a/b"), "/v1/shop.Cart/a%2Fb/add_units");
    let add = statefn::routes::<Cart>("c").add();
    assert_eq!(add.send_path(), "/v1/shop.Cart/c/add_units/send");
    assert_eq!((add.id(), add.handler()), ("c", "add_units"));
    assert_eq!(statefn::routes::<Cart>("c").expire().handler(), "expire");
}
