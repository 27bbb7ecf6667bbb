use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("only {0} left")]
pub struct OutOfStock(pub u32);

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Stock {
    units: u32,
}

#[stateful_function]
impl Stock {
    #[handler]
    pub fn reserve(&mut self, units: u32) -> Result<u32, OutOfStock> {
        if units > self.units {
            return Err(OutOfStock(self.units));
        }
        self.units -= units;
        Ok(self.units)
    }
}

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Order {
    reserved: bool,
}

#[stateful_function]
impl Order {
    #[handler]
    pub fn place(&mut self, ctx: &mut Context, sku: String, units: u32) {
        ctx.request::<Stock>(&sku)
            .reserve(units)
            .reply_to(OrderMessage::reserved());
    }

    #[handler]
    pub fn reserved(&mut self, result: Result<u32, OutOfStock>) {
        self.reserved = result.is_ok();
    }
}

fn main() {
    assert_eq!(OrderMessage::reserved().name(), "reserved");
}
