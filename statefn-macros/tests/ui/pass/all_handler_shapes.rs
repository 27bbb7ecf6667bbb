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
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }

    /// `&mut self`, no arguments, no reply.
    pub fn reset(&mut self) {
        self.n = 0;
    }

    /// `&mut self`, a fallible reply.
    pub fn take(&mut self, by: u64) -> Result<u64, Underflow> {
        self.n = self.n.checked_sub(by).ok_or(Underflow)?;
        Ok(self.n)
    }

    /// `&mut Context` first, several arguments.
    pub fn forward(&mut self, ctx: &mut Context, to: String, by: u64) -> Result<u64, Underflow> {
        let left = self.take(by)?;
        ctx.send::<Counter>(&to).add(by);
        Ok(left)
    }

    /// `&Context` and `&self`.
    pub fn whoami(&self, ctx: &Context) -> String {
        format!("{}:{}", ctx.id(), self.label)
    }

    /// `&self`, no arguments.
    pub fn get(&self) -> u64 {
        self.n
    }

    /// A compound argument and reply.
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

    /// Uses the helpers.
    pub fn doubled(&self) -> u64 {
        self.double().min(Self::limit())
    }
}

fn main() {
    assert_eq!(Counter::type_name(), "ui.Counter");
    let names: Vec<_> = Counter::HANDLERS.iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        ["add", "reset", "take", "forward", "whoami", "get", "relabel", "doubled"]
    );
    let take = &Counter::HANDLERS[2];
    assert!(take.mutates && take.fallible);
    assert!(!Counter::HANDLERS[5].mutates);
    assert_eq!(Counter::HANDLERS[3].args, ["to", "by"]);
}
