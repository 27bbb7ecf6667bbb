//! The scenarios of `statefn-bench`, one module each, and the options they
//! share.

use std::{path::PathBuf, time::Duration};

use crate::measure::Window;

pub mod actors;
pub mod cluster;
pub mod embedded;
pub mod floor;
pub mod http;
pub mod jetstream;
pub mod recovery;
pub mod scale;
pub mod timers;

/// Options every scenario takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Unrecorded warm-up seconds before each run.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Where durable runs keep their data: must be on the disk under test,
    /// not a tmpfs such as /tmp. Each run wipes its own subdirectory.
    #[arg(long, default_value = "./bench-data")]
    pub data_dir: PathBuf,
}

impl Common {
    /// The warm-up and measured durations.
    pub fn window(&self) -> Window {
        Window {
            warmup: Duration::from_secs_f64(self.warmup.max(0.0)),
            duration: Duration::from_secs_f64(self.duration.max(0.001)),
        }
    }
}

/// How an in-process runtime keeps state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `Durability::Fsync`: a reply waits for the group commit's fdatasync.
    Durable,
    /// `Runtime::builder().in_memory()`: no disk at all.
    InMemory,
}

impl Mode {
    /// The name used in output.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Durable => "durable",
            Mode::InMemory => "in-memory",
        }
    }
}
