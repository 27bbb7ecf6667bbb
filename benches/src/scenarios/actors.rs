//! `actors`: statefn in-memory against an established actor framework
//! (kameo) on the same workload.
//!
//! Both sides keep one counter per key (1,000 keys, an actor per key for
//! kameo) and answer an increment with the new count; callers are a closed
//! loop of tokio tasks on the same runtime. With no disk involved, the ratio
//! is the per-message cost of statefn's machinery (encoding, shard queues,
//! worker threads, the reply channel) over a plain actor mailbox.

use std::sync::Arc;

use kameo::{
    Actor,
    actor::{ActorRef, Spawn},
    message::{Context, Message},
};
use statefn::Runtime;

use super::Common;
use crate::{
    counter::{Counter, CounterKeys},
    measure::{BoxError, Record, Summary, closed_loop, ratio},
};

/// The key count, as in `embedded --keys 1000`.
const KEYS: u64 = 1_000;

/// Options of the `actors` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct ActorsArgs {
    /// Shared options (`--data-dir` is unused: nothing touches the disk).
    #[command(flatten)]
    pub common: Common,
    /// Concurrent callers (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64, 256])]
    pub callers: Vec<usize>,
    /// Run only one side (`kameo` or `statefn`), e.g. to count one side's
    /// instructions per message under callgrind; both by default.
    #[arg(long)]
    pub only: Option<Side>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// The kameo actors.
    Kameo,
    /// statefn in memory.
    Statefn,
}

/// The kameo counter actor: the same state and reply as [`Counter`].
#[derive(Debug, Default, Actor)]
pub struct KameoCounter {
    n: u64,
}

/// Adds its value and replies with the new count.
#[derive(Debug, Clone, Copy)]
pub struct Add(pub u64);

impl Message<Add> for KameoCounter {
    type Reply = u64;

    async fn handle(&mut self, Add(by): Add, _ctx: &mut Context<Self, Self::Reply>) -> u64 {
        self.n += by;
        self.n
    }
}

/// Runs kameo then statefn for each caller count.
///
/// # Errors
///
/// The first runtime or send error.
pub async fn run(args: &ActorsArgs) -> Result<(), BoxError> {
    Record::print_header();
    for &callers in &args.callers {
        if args.only == Some(Side::Statefn) {
            let statefn = statefn_run(&args.common, callers).await?;
            Record::new("actors", "statefn in-memory", &statefn)
                .param("keys", KEYS)
                .param("callers", callers)
                .emit();
            continue;
        }
        let kameo = kameo_run(&args.common, callers).await?;
        let kameo_record = Record::new("actors", "kameo", &kameo)
            .param("keys", KEYS)
            .param("callers", callers);
        kameo_record.emit();
        if args.only == Some(Side::Kameo) {
            continue;
        }
        let statefn = statefn_run(&args.common, callers).await?;
        let record = Record::new("actors", "statefn in-memory", &statefn)
            .param("keys", KEYS)
            .param("callers", callers);
        // Per-message cost ratio: how many kameo messages fit in the time of
        // one statefn message (closed loop, same cores).
        let cost = ratio(kameo_record.throughput_per_s(), record.throughput_per_s());
        let p50 = ratio(record.p50_ms(), kameo_record.p50_ms());
        record
            .field("cost_ratio_vs_kameo", cost)
            .field("p50_ratio_vs_kameo", p50)
            .emit();
    }
    Ok(())
}

async fn kameo_run(common: &Common, callers: usize) -> Result<Summary, BoxError> {
    let actors: Arc<Vec<ActorRef<KameoCounter>>> = Arc::new(
        (0..KEYS)
            .map(|_| KameoCounter::spawn(KameoCounter::default()))
            .collect(),
    );
    let label = format!("actors kameo callers={callers}");
    let len = actors.len() as u64;
    let summary = closed_loop(callers, common.window(), &label, {
        let actors = Arc::clone(&actors);
        move |random| {
            let actor = actors
                .get(usize::try_from(random % len).unwrap_or_default())
                .cloned();
            async move {
                let actor = actor.ok_or("no actor for the key")?;
                actor.ask(Add(1)).await.map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    })
    .await;
    for actor in actors.iter() {
        // Stopping is best effort: the process ends soon anyway.
        let _ = actor.stop_gracefully().await;
    }
    summary
}

async fn statefn_run(common: &Common, callers: usize) -> Result<Summary, BoxError> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Counter>()
        .open()
        .await?;
    let space = Arc::new(CounterKeys::new(&runtime, KEYS));
    let label = format!("actors statefn callers={callers}");
    let summary = closed_loop(callers, common.window(), &label, move |random| {
        let call = space.add_one(random);
        async move {
            call.await?;
            Ok(())
        }
    })
    .await;
    runtime.shutdown().await?;
    summary
}
