//! A shopping cart that expires when left idle (a keyed timer) and checks
//! out by reserving stock from inventory items (request/reply, correlated
//! by SKU, with a timeout). Its timer and reply handlers are internal: not
//! callable over HTTP.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use statefn::{RequestFailed, prelude::*};

/// A stock keeping unit's inventory.
#[stateful_function(name = "shop.Inventory")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Inventory {
    stock: u32,
}

/// Not enough stock to reserve.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, schemars::JsonSchema,
)]
#[error("only {available} left, {asked} asked")]
pub struct OutOfStock {
    /// Units available.
    pub available: u32,
    /// Units asked for.
    pub asked: u32,
}

#[stateful_function]
impl Inventory {
    /// Adds stock; returns the new stock.
    #[handler]
    pub fn restock(&mut self, units: u32) -> u32 {
        self.stock += units;
        self.stock
    }

    /// Reserves `units`, or refuses without changing anything.
    #[handler]
    pub fn reserve(&mut self, units: u32) -> Result<u32, OutOfStock> {
        if units > self.stock {
            return Err(OutOfStock {
                available: self.stock,
                asked: units,
            });
        }
        self.stock -= units;
        Ok(self.stock)
    }

    /// Units in stock.
    #[handler]
    pub fn stock(&self) -> u32 {
        self.stock
    }
}

/// Where a cart is in its life.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum CartStatus {
    /// Taking items.
    #[default]
    Open,
    /// Waiting for the inventory's replies.
    CheckingOut,
    /// Every item was reserved.
    Ordered,
    /// Some item could not be reserved.
    Failed,
    /// Left idle too long: emptied.
    Expired,
}

/// Why a cart refused a change.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, schemars::JsonSchema,
)]
#[error("the cart is {0:?}, not open")]
pub struct CartClosed(pub CartStatus);

/// A what a cart looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CartView {
    /// The status.
    pub status: CartStatus,
    /// Items by SKU.
    pub items: BTreeMap<String, u32>,
    /// SKUs that could not be reserved, each with why: `"plum: only 1
    /// left, 4 asked"`.
    pub unavailable: Vec<String>,
}

/// One customer's cart.
#[stateful_function(name = "shop.Cart", version = 2, migrate = Cart::from_older)]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cart {
    status: CartStatus,
    items: BTreeMap<String, u32>,
    idle_timeout_ms: u64,
    awaiting: u32,
    unavailable: Vec<String>,
}

/// The cart as version 1 stored it: a generation counter told the latest
/// idle timer from the older ones, which all still fired.
#[derive(Deserialize)]
struct CartV1 {
    status: CartStatus,
    items: BTreeMap<String, u32>,
    idle_timeout_ms: u64,
    #[expect(dead_code, reason = "read to skip it: the keyed timer replaced it")]
    generation: u64,
    awaiting: u32,
    unavailable: Vec<String>,
}

impl Cart {
    fn from_older(version: u32, bytes: &[u8]) -> Result<Self, String> {
        match version {
            1 => {
                let v1: CartV1 = statefn::decode_state(bytes)?;
                Ok(Cart {
                    status: v1.status,
                    items: v1.items,
                    idle_timeout_ms: v1.idle_timeout_ms,
                    awaiting: v1.awaiting,
                    unavailable: v1.unavailable,
                })
            }
            other => Err(format!("no cart state of version {other}")),
        }
    }
}

/// The key of a cart's idle timer.
const IDLE: &str = "idle";

/// How long checkout waits for each inventory's answer.
pub const RESERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a cart may stay idle when `set_idle_timeout` was not called.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[stateful_function]
impl Cart {
    /// Sets how long the cart may stay idle before it expires.
    #[handler]
    pub fn set_idle_timeout(&mut self, millis: u64) {
        self.idle_timeout_ms = millis;
    }

    /// Adds units of a SKU; (re)starts the idle timer. Returns the item
    /// count.
    #[handler]
    pub fn add(&mut self, ctx: &mut Context, sku: String, units: u32) -> Result<usize, CartClosed> {
        if self.status != CartStatus::Open {
            return Err(CartClosed(self.status));
        }
        *self.items.entry(sku).or_default() += units;
        let timeout = match self.idle_timeout_ms {
            0 => DEFAULT_IDLE_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        // A durable keyed timer: setting it again replaces the earlier one,
        // which then never fires, so only the latest change counts.
        ctx.timer::<Cart>(IDLE).after(timeout).expire_idle();
        Ok(self.items.len())
    }

    /// The cart's idle timer: empties it. Internal: not callable over HTTP.
    #[handler(internal)]
    pub fn expire_idle(&mut self) {
        if self.status == CartStatus::Open {
            self.items.clear();
            self.status = CartStatus::Expired;
        }
    }

    /// Asks every SKU's inventory to reserve the units; each answer (or
    /// its failure, or its timeout) arrives later at `reserved`, with the
    /// SKU it is about. Returns how many requests went out.
    #[handler]
    pub fn checkout(&mut self, ctx: &mut Context) -> Result<u32, CartClosed> {
        if self.status != CartStatus::Open || self.items.is_empty() {
            return Err(CartClosed(self.status));
        }
        for (sku, units) in &self.items {
            ctx.request::<Inventory>(sku)
                .reserve(*units)
                .timeout(RESERVE_TIMEOUT)
                .reply_to_with(CartMessage::reserved(), sku.clone());
        }
        self.awaiting = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        self.status = CartStatus::CheckingOut;
        ctx.cancel_timer(IDLE);
        Ok(self.awaiting)
    }

    /// The answer to `checkout`'s request for `sku`: reserved, out of
    /// stock, failed or timed out; exactly one arrives per SKU. Internal:
    /// not callable over HTTP, so nobody outside can forge a reply.
    #[handler(internal)]
    pub fn reserved(&mut self, sku: String, reply: Result<u32, RequestFailed<OutOfStock>>) {
        match reply {
            Ok(_left) => {}
            Err(RequestFailed::Rejected(out)) => self.unavailable.push(format!("{sku}: {out}")),
            Err(failed) => self.unavailable.push(format!("{sku}: {failed}")),
        }
        self.awaiting = self.awaiting.saturating_sub(1);
        if self.awaiting == 0 {
            self.status = if self.unavailable.is_empty() {
                CartStatus::Ordered
            } else {
                CartStatus::Failed
            };
        }
    }

    /// The cart as the customer sees it.
    #[handler]
    pub fn view(&self) -> CartView {
        CartView {
            status: self.status,
            items: self.items.clone(),
            unavailable: self.unavailable.clone(),
        }
    }
}
