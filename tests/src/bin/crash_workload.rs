//! The child process of the crash tests: opens a durable runtime on a data
//! dir, runs the operations whose indices arrive on stdin (concurrently, each
//! with its idempotency key `op-{i}`), and prints `ack {i}` for every reply.
//! The parent SIGKILLs it at random moments.
//!
//! Usage: `crash-workload run <data-dir> <seed> <ops>` (indices on stdin),
//! or `crash-workload dump <data-dir> <seed> <ops>` (prints every account's
//! state as JSON lines).

use std::io::{BufRead, Write};

use futures::{StreamExt, stream};
use statefn::prelude::*;
use statefn_tests::{
    Ledger,
    workload::{ACCOUNTS, Op, account, ops},
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, dir, seed, count] = args.as_slice() else {
        return Err("usage: crash-workload run|dump <data-dir> <seed> <ops>".into());
    };
    let all = ops(seed.parse()?, count.parse()?);
    let open = || {
        Runtime::builder()
            .data_dir(dir)
            .shards(8)
            // Small logs and frequent checkpoints, so kills also land in
            // checkpoints and log truncation.
            .wal_segment_bytes(64 << 10)
            .checkpoint_log_bytes(128 << 10)
            .checkpoint_interval(std::time::Duration::from_millis(200))
            .cache_bytes(64 << 10)
            .register::<Ledger>()
            .open()
    };
    let mut runtime = open().await?;
    if mode == "dump" {
        // Egress records committed before the last crash are appended
        // again at open; a clean shutdown waits for the appender.
        runtime.shutdown().await?;
        runtime = open().await?;
    }
    let mut out = std::io::stdout().lock();
    if mode == "dump" {
        for i in 0..ACCOUNTS {
            let (balance, applied) = runtime.handle::<Ledger>(account(i)).snapshot().await?;
            writeln!(
                out,
                "{}",
                serde_json::json!({"account": i, "balance": balance, "applied": applied})
            )?;
        }
        let mut from = 0;
        loop {
            let records = runtime
                .read_egress("deposits", from, 1000, std::time::Duration::ZERO)
                .await?;
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            for r in records {
                let line = serde_json::json!({"egress": r.offset, "id": r.id, "op": r.record});
                writeln!(out, "{line}")?;
            }
        }
        drop(out);
        runtime.shutdown().await?;
        return Ok(());
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let indices: Vec<usize> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let runtime = &runtime;
    let all = &all;
    stream::iter(indices)
        .for_each_concurrent(16, |i| async move {
            let key = format!("op-{i}");
            let result = match &all[i] {
                Op::Deposit { account: a, amount } => runtime
                    .handle::<Ledger>(account(*a))
                    .deposit(key.clone(), *amount)
                    .idempotency_key(&key)
                    .await
                    .map(|_| ()),
                Op::Transfer { from, to, amount } => runtime
                    .handle::<Ledger>(account(*from))
                    .transfer(key.clone(), account(*to), *amount)
                    .idempotency_key(&key)
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {i}");
                    let _ = out.flush();
                }
                Err(e) => eprintln!("op {i} failed: {e}"),
            }
        })
        .await;
    println!("done");
    runtime.shutdown().await?;
    Ok(())
}
