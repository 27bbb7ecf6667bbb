//! Writes the seed corpora in `fuzz/seeds/<target>/` from real data: a
//! durable runtime runs the bank and cart examples, and its write-ahead log
//! supplies real segments and real log records; messages are built with the
//! same JSON path HTTP ingress uses.
//!
//! ```text
//! cd fuzz && cargo run --example gen_seeds
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use statefn::__fuzz::message_from_json;
use statefn::prelude::*;
use statefn_store::{Lsn, StdFs, Wal, WalOptions};
use statefn_examples::bank::Account;
use statefn_examples::cart::{Cart, Inventory};

type BoxError = Box<dyn std::error::Error>;

fn seeds_dir(target: &str) -> Result<PathBuf, BoxError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(target: &str, name: &str, bytes: &[u8]) -> Result<(), BoxError> {
    std::fs::write(seeds_dir(target)?.join(name), bytes)?;
    Ok(())
}

/// Runs the examples durably; returns the segment files of every log group.
async fn run_examples(data: &Path) -> Result<Vec<PathBuf>, BoxError> {
    let runtime = Runtime::builder()
        .data_dir(data)
        .shards(1)
        .register::<Account>()
        .register::<Cart>()
        .register::<Inventory>()
        .open()
        .await?;
    let ann = runtime.handle::<Account>("ann");
    ann.deposit(100).await??;
    ann.deposit(7).idempotency_key("seed-1").await??;
    ann.transfer("bob".into(), 30).await??;
    let _ = ann.withdraw(1_000).await;
    runtime.handle::<Inventory>("apple").restock(5).await?;
    runtime.handle::<Inventory>("pear").restock(1).await?;
    let cart = runtime.handle::<Cart>("c1");
    cart.set_idle_timeout(60_000).await?;
    cart.add("apple".into(), 2).await??;
    cart.add("pear".into(), 3).await??;
    cart.checkout().await??;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    runtime.shutdown().await?;

    let mut segments = Vec::new();
    for group in std::fs::read_dir(data.join("wal"))? {
        for file in std::fs::read_dir(group?.path())? {
            let path = file?.path();
            if path.extension().is_some_and(|e| e == "wal") {
                segments.push(path);
            }
        }
    }
    segments.sort();
    Ok(segments)
}

/// Encodes segments (each with its first LSN) in the `wal_recovery` input
/// format (see `harness::wal_files`); `strip_headers` sets the flag that
/// makes the harness prepend the headers instead.
fn wal_input(segments: &[(u64, Vec<u8>)], strip_headers: bool) -> Vec<u8> {
    let mut flags = u8::try_from(segments.len() - 1).expect("at most 4 segments");
    if strip_headers {
        flags |= 0b100;
    }
    let mut out = vec![flags];
    let mut previous = 1;
    for (index, (first, bytes)) in segments.iter().enumerate() {
        let body = if strip_headers {
            &bytes[18..]
        } else {
            &bytes[..]
        };
        if index > 0 {
            out.push(u8::try_from(first - previous).expect("small delta"));
            previous = *first;
        }
        if index + 1 < segments.len() {
            let len = u16::try_from(body.len()).expect("small segment");
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(body);
    }
    out
}

fn read_segments(dir: &Path) -> Result<Vec<(u64, Vec<u8>)>, BoxError> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let first: u64 = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("bad name")?
            .parse()?;
        out.push((first, std::fs::read(&path)?));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let data = tempfile::tempdir()?;
    let segments = run_examples(data.path()).await?;
    println!("runtime wrote {} segment file(s)", segments.len());

    // Real log records, and the real segment.
    let fs = Arc::new(StdFs);
    let mut payloads = Vec::new();
    for (n, segment) in segments.iter().enumerate() {
        let dir = segment.parent().ok_or("no parent")?;
        let (_, records) = Wal::open(fs.clone(), dir, WalOptions::default(), Lsn(1))?;
        payloads.extend(records.into_iter().map(|r| r.payload));
        let bytes = std::fs::read(segment)?;
        if bytes.len() < 4096 {
            let mut input = vec![0];
            input.extend_from_slice(&bytes);
            write("wal_recovery", &format!("runtime-segment-{n}"), &input)?;
        }
    }
    println!("{} log records", payloads.len());
    payloads.sort_by_key(Vec::len);
    for (n, payload) in payloads.iter().filter(|p| p.len() < 512).enumerate() {
        write("log_record_decode", &format!("record-{n}"), payload)?;
    }

    // A multi-segment log of those records, small segments.
    let small = tempfile::tempdir()?;
    // No zeros written ahead: the seeds stay as they were generated.
    let opts = WalOptions {
        segment_bytes: 160,
        preallocate_bytes: 0,
    };
    let (mut wal, _) = Wal::open(fs.clone(), small.path(), opts, Lsn(1))?;
    for payload in payloads.iter().take(5) {
        wal.append(&payload[..payload.len().min(100)]);
    }
    wal.write()?.sync()?;
    drop(wal);
    let mut segs = read_segments(small.path())?;
    segs.truncate(4);
    write("wal_recovery", "multi-segment", &wal_input(&segs, false))?;
    write(
        "wal_recovery",
        "multi-segment-no-headers",
        &wal_input(&segs, true),
    )?;
    // A torn tail: the last record cut in the middle.
    if let Some((_, last)) = segs.last_mut() {
        let keep = last.len() - 5;
        last.truncate(keep);
    }
    write(
        "wal_recovery",
        "multi-segment-torn",
        &wal_input(&segs, false),
    )?;
    // A header only, and nothing at all (a new log).
    write("wal_recovery", "header-only", &[0b100])?;
    write("wal_recovery", "empty", &[])?;

    // Messages through the JSON path, and states.
    let account_msgs = [
        ("deposit", r#"{"amount": 25}"#),
        ("withdraw", r#"{"amount": 10}"#),
        ("transfer", r#"{"to": "bob", "amount": 5}"#),
        ("balance", "null"),
    ];
    let cart_msgs = [
        ("set_idle_timeout", r#"{"millis": 1000}"#),
        ("add", r#"{"sku": "apple", "units": 2}"#),
        ("expire", r#"{"generation": 1}"#),
        ("checkout", "{}"),
        ("reserved", r#"{"result": {"Ok": 3}}"#),
        (
            "reserved",
            r#"{"result": {"Err": {"available": 1, "asked": 2}}}"#,
        ),
        ("view", "{}"),
    ];
    let inventory_msgs = [
        ("restock", r#"{"units": 5}"#),
        ("reserve", r#"{"units": 2}"#),
        ("stock", "{}"),
    ];
    let account_state: Account = serde_json::from_str(r#"{"balance": 100}"#)?;
    let cart_state: Cart = serde_json::from_str(
        r#"{"status": "Open", "items": {"apple": 2, "pear": 1}, "idle_timeout_ms": 0,
            "generation": 2, "awaiting": 0, "unavailable": []}"#,
    )?;
    let inventory_state: Inventory = serde_json::from_str(r#"{"stock": 3}"#)?;
    let states = [
        postcard_state(&account_state)?,
        postcard_state(&cart_state)?,
        postcard_state(&inventory_state)?,
    ];
    let mut json_seeds = Vec::new();
    let mut add = |kind: u8, handler: &str, json: &str, message: Vec<u8>| -> Result<(), BoxError> {
        let state = &states[usize::from(kind)];
        let mut input = vec![kind, u8::try_from(state.len())?];
        input.extend_from_slice(state);
        input.extend_from_slice(&message);
        write("message_decode", &format!("{kind}-{handler}"), &input)?;
        // And as a new instance (no state).
        let mut fresh = vec![kind | 0x80, 0];
        fresh.extend_from_slice(&message);
        write("message_decode", &format!("{kind}-{handler}-new"), &fresh)?;
        json_seeds.push((format!("{kind}-{handler}"), json.to_owned()));
        Ok(())
    };
    for (handler, json) in account_msgs {
        add(0, handler, json, encoded::<Account>(handler, json)?)?;
    }
    for (n, (handler, json)) in cart_msgs.into_iter().enumerate() {
        add(1, &format!("{handler}{n}"), json, encoded::<Cart>(handler, json)?)?;
    }
    for (handler, json) in inventory_msgs {
        add(2, handler, json, encoded::<Inventory>(handler, json)?)?;
    }
    for (name, json) in json_seeds {
        write("json_args", &name, json.as_bytes())?;
    }
    println!("seeds written to {}", seeds_dir("")?.display());
    Ok(())
}

/// `handler`'s message with arguments `json`, encoded as the runtime stores
/// it. Built from the message enum's JSON form rather than through
/// `message_from_json`, which refuses internal handlers (`expire`,
/// `reserved`) as HTTP does; checked against it for the others.
fn encoded<T: StatefulFunction>(handler: &str, json: &str) -> Result<Vec<u8>, BoxError> {
    let args = if json == "null" { "{}" } else { json };
    let message: T::Message = serde_json::from_str(&format!("{{\"{handler}\": {args}}}"))?;
    let bytes = statefn::encode_message::<T>(&message)?;
    if let Ok(by_name) = message_from_json::<T>(handler, json.as_bytes()) {
        assert_eq!(by_name, bytes, "{handler}: the JSON path encodes the same");
    }
    Ok(bytes)
}

/// A state as the runtime stores it (postcard).
fn postcard_state<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, BoxError> {
    Ok(postcard::to_stdvec(value)?)
}
