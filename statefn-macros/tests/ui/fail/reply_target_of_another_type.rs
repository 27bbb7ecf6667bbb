// A reply comes back to the instance that asked: naming a handler of
// another function type as the reply target does not compile.
use serde::{Deserialize, Serialize};
use statefn::{RequestFailed, prelude::*};

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Stock {
    units: u32,
}

#[stateful_function]
impl Stock {
    #[handler]
    fn reserve(&mut self, units: u32) -> u32 {
        self.units = self.units.saturating_sub(units);
        self.units
    }
}

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Audit {
    seen: u32,
}

#[stateful_function]
impl Audit {
    #[handler(internal)]
    fn reserved(&mut self, left: Result<u32, RequestFailed>) {
        self.seen += u32::from(left.is_ok());
    }
}

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Cart {
    asked: u32,
}

#[stateful_function]
impl Cart {
    #[handler]
    fn checkout(&mut self, ctx: &mut Context) {
        self.asked += 1;
        ctx.request::<Stock>("apple")
            .reserve(1)
            .reply_to(AuditMessage::reserved());
    }
}

fn main() {}
