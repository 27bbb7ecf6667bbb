use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Clock;

#[stateful_function]
impl Clock {
    #[handler]
    pub fn echo(&self, text: String) -> String {
        text
    }

    #[handler]
    pub fn who(&self, ctx: &Context) -> String {
        ctx.id().to_owned()
    }

    #[handler]
    pub fn ping(&self) {}
}

fn main() {
    assert!(Clock::HANDLERS.iter().all(|h| !h.mutates));
}
