use serde::{Deserialize, Serialize};
use statefn::{NoError, RequestFailed, prelude::*};

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

    #[handler]
    pub fn count(&self) -> u32 {
        self.units
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
        ctx.request::<Stock>(&sku)
            .count()
            .timeout(std::time::Duration::from_secs(1))
            .reply_to_with(OrderMessage::counted(), sku.clone());
    }

    #[handler]
    pub fn reserved(&mut self, result: Result<u32, RequestFailed<OutOfStock>>) {
        self.reserved = result.is_ok();
    }

    #[handler(internal)]
    fn counted(&mut self, sku: String, count: Result<u32, RequestFailed<NoError>>) {
        let _ = (sku, count);
    }
}

fn main() {
    assert_eq!(OrderMessage::reserved().name(), "reserved");
    assert_eq!(OrderMessage::counted().name(), "counted");
}
