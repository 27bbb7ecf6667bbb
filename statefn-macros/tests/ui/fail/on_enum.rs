use serde::{Deserialize, Serialize};
use statefn::prelude::*;

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub enum Light {
    #[default]
    Off,
    On,
}

fn main() {}
