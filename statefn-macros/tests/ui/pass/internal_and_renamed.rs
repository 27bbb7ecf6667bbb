//! Internal handlers are reached through `ctx.send`, `ctx.send_after`,
//! reply targets and `Handle::internal`; renamed handlers keep their new
//! name.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Cart {
    items: u32,
    reserved: u32,
}

#[stateful_function]
impl Cart {
    #[handler]
    fn add(&mut self, ctx: &mut Context, units: u32) {
        self.items += units;
        ctx.send_after::<Cart>(Duration::from_secs(60), ctx.id()).expire();
        ctx.send::<Cart>(ctx.id()).recount(self.items);
        ctx.request::<Stock>("sku")
            .reserve(units)
            .reply_to(CartMessage::on_reserved());
    }

    #[handler(internal)]
    fn expire(&mut self) {
        self.items = 0;
    }

    #[handler(internal, renamed_from = "count")]
    fn recount(&mut self, items: u32) {
        self.items = items;
    }

    #[handler(internal, name = "reserved")]
    fn on_reserved(&mut self, units: Result<u32, statefn::RequestFailed>) {
        self.reserved += units.unwrap_or(0);
    }
}

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
        units
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), statefn::Error> {
    let names: Vec<_> = Cart::HANDLERS.iter().map(|h| (h.name, h.internal)).collect();
    assert_eq!(
        names,
        [("add", false), ("expire", true), ("recount", true), ("reserved", true)]
    );
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Cart>()
        .register::<Stock>()
        .open()
        .await?;
    // A handle reaches an internal handler only through `internal()`.
    runtime.handle::<Cart>("c").internal().expire().await?;
    runtime.handle::<Cart>("c").internal().add(1).await?;
    runtime.shutdown().await?;
    Ok(())
}
