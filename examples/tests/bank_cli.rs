//! The `bank` binary as an operator runs it: logs to a file or a pipe carry
//! no terminal colour codes, `--log-format json` writes one JSON object per
//! line, `--help` does not print tokens taken from the environment, and
//! `--egress-token` protects the egress logs.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Read,
    process::{Command, Stdio},
    thread::JoinHandle,
};

use common::{Bank, deposit};
use reqwest::StatusCode;

/// Starts the bank at log level info with its stderr on a pipe, and a
/// thread collecting that stderr until the bank exits.
fn bank_logging_to_a_pipe(dir: &std::path::Path, extra: &[&str]) -> (Bank, JoinHandle<String>) {
    let mut bank = Bank::start_with(dir, extra, &[("RUST_LOG", "info")], Stdio::piped());
    let mut stderr = bank.stderr().unwrap();
    let collector = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    (bank, collector)
}

#[tokio::test]
async fn logs_on_a_pipe_carry_no_ansi_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (bank, collector) = bank_logging_to_a_pipe(dir.path(), &[]);
    assert_eq!(deposit(&reqwest::Client::new(), &bank, "ann", 5).await, 5);
    assert!(bank.terminate().success());
    let logs = collector.join().unwrap();
    // Something was logged (recovery at start, the signal at the end)...
    assert!(logs.contains("SIGTERM"), "{logs}");
    // ...and none of it is colour codes.
    assert!(!logs.contains('\x1b'), "{logs:?}");
}

#[tokio::test]
async fn json_logs_are_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (bank, collector) = bank_logging_to_a_pipe(dir.path(), &["--log-format", "json"]);
    assert_eq!(deposit(&reqwest::Client::new(), &bank, "ben", 7).await, 7);
    assert!(bank.terminate().success());
    let logs = collector.join().unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string()), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("SIGTERM"))),
        "{lines:#?}"
    );
    assert!(!logs.contains('\x1b'), "{logs:?}");
}

#[test]
fn help_does_not_print_tokens_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_bank"))
        .arg("--help")
        .env("STATEFN_ADMIN_TOKEN", "admin-t0ken-value")
        .env("STATEFN_EGRESS_TOKEN", "egress-t0ken-value")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("STATEFN_ADMIN_TOKEN"), "{help}");
    assert!(help.contains("STATEFN_EGRESS_TOKEN"), "{help}");
    assert!(help.contains("--log-format"), "{help}");
    assert!(!help.contains("t0ken-value"), "{help}");
}

#[tokio::test]
async fn the_egress_token_from_the_environment_protects_egress_reads() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start_with(
        dir.path(),
        &[],
        &[
            ("RUST_LOG", "error"),
            ("STATEFN_EGRESS_TOKEN", "consumer-t0ken"),
        ],
        Stdio::inherit(),
    );
    let c = reqwest::Client::new();
    let url = bank.url("/v1/egress/transfers?wait=0ms");
    let refused = c.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let read = c
        .get(&url)
        .bearer_auth("consumer-t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
}
