use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("the counter would go below zero")]
pub struct Underflow;

#[stateful_function(name = "ui.Counter")]
#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    n: u64,
    label: String,
}

#[stateful_function]
impl Counter {
    /// `&mut self`, one argument, a plain reply.
    #[handler]
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }

    /// `&mut self`, no arguments, no reply.
    #[handler]
    pub fn reset(&mut self) {
        self.n = 0;
    }

    /// `&mut self`, a fallible reply.
    #[handler]
    pub fn take(&mut self, by: u64) -> Result<u64, Underflow> {
        self.n = self.n.checked_sub(by).ok_or(Underflow)?;
        Ok(self.n)
    }

    /// `&mut Context` first, several arguments.
    #[handler]
    pub fn forward(&mut self, ctx: &mut Context, to: String, by: u64) -> Result<u64, Underflow> {
        let left = self.take(by)?;
        ctx.send::<Counter>(&to).add(by);
        Ok(left)
    }

    /// `&Context` and `&self`.
    #[handler]
    pub fn whoami(&self, ctx: &Context) -> String {
        format!("{}:{}", ctx.id(), self.label)
    }

    /// `&self`, no arguments; not `pub`: a handler's visibility does not matter.
    #[handler]
    fn get(&self) -> u64 {
        self.n
    }

    /// A compound argument and reply.
    #[handler]
    pub fn relabel(&mut self, parts: Vec<String>) -> Option<String> {
        Some(std::mem::replace(&mut self.label, parts.join("-")))
    }

    /// Not `pub`: a helper, not a handler.
    fn double(&self) -> u64 {
        self.n * 2
    }

    /// No `self`: a helper, not a handler.
    pub fn limit() -> u64 {
        1_000
    }

    /// `pub`, but without `#[handler]`: a helper, so it may be generic, async
    /// or borrow its arguments.
    pub fn scaled<T: Into<u64>>(&self, by: T, _unused: &str) -> u64 {
        self.n * by.into()
    }

    /// An async helper.
    pub async fn later(&self) -> u64 {
        self.n
    }

    /// Uses the helpers; `pub(crate)` handlers are handlers too.
    #[handler]
    pub(crate) fn doubled(&self) -> u64 {
        self.double().min(Self::limit()).max(self.scaled(1u8, ""))
    }

    /// Arguments named like the generated code's own variables.
    #[handler]
    fn shadowing(&mut self, c: &mut Context, ctx: String, out: u64, reader: u64, message: u64) {
        let _ = (c.id(), ctx, out, reader, message);
    }

    /// Written as `statefn::handler`, with every option.
    #[statefn::handler(internal, name = "wired", renamed_from = "wire", renamed_from = "w")]
    fn wire_name(&self) -> u64 {
        self.n
    }
}

fn main() {
    assert_eq!(Counter::type_name(), "ui.Counter");
    let names: Vec<_> = Counter::HANDLERS.iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        [
            "add", "reset", "take", "forward", "whoami", "get", "relabel", "doubled", "shadowing",
            "wired"
        ]
    );
    let wired = &Counter::HANDLERS[9];
    assert!(wired.internal && !Counter::HANDLERS[0].internal);
    assert_eq!(wired.renamed_from, ["wire", "w"]);
    assert_eq!(Counter::HANDLERS[3].signature, "to:String,by:u64");
    let take = &Counter::HANDLERS[2];
    assert!(take.mutates && take.fallible);
    assert!(!Counter::HANDLERS[5].mutates);
    assert_eq!(Counter::HANDLERS[3].args, ["to", "by"]);
}
