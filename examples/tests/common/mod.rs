//! Runs the real `bank` binary on a free port and talks to it over HTTP.

// Each test file uses a different part of this module.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::Value;

/// How long a server may take to start before the test gives up: a hang
/// detector, not a performance bound.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How long a server may take to exit after SIGTERM before the test gives
/// up: a hang detector, not a performance bound.
pub(crate) const EXIT_DEADLINE: Duration = Duration::from_secs(60);

/// A running `bank` server.
pub(crate) struct Bank {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
}

impl Bank {
    /// Starts the bank on `dir` with `--listen 127.0.0.1:0` and waits for its
    /// `listening on ...` line. It logs errors only, to the test's stderr.
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Bank {
        Self::start_with(dir, extra, &[("RUST_LOG", "error")], Stdio::inherit())
    }

    /// As [`start`](Self::start), with environment variables `env` and the
    /// bank's stderr going to `stderr` (take it with [`stderr`](Self::stderr)
    /// when piped).
    pub(crate) fn start_with(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Bank {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bank"))
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            // Colour must be off because stderr is no terminal, not because
            // the environment says so.
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn the bank");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Keep draining after the first line; nobody may listen.
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(START_DEADLINE) {
                Ok(line) => {
                    if let Some(base) = line.strip_prefix("listening on ") {
                        return Bank {
                            child,
                            base: base.to_owned(),
                        };
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("the bank did not print its address ({e}); exit: {status:?}");
                }
            }
        }
    }

    /// The bank's stderr, if it was piped and not taken yet.
    pub(crate) fn stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the exit, at most [`EXIT_DEADLINE`]:
    /// a bank that does not exit by then is killed and the test fails (a
    /// hang detector, not a performance bound).
    pub(crate) fn terminate(self) -> ExitStatus {
        self.terminate_within(EXIT_DEADLINE)
    }

    /// Sends SIGTERM and waits for the exit at most `deadline`; past it the
    /// bank is killed and the test fails.
    pub(crate) fn terminate_within(mut self, deadline: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let until = std::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the bank") {
                return status;
            }
            if std::time::Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the bank did not exit within {deadline:?} of SIGTERM: shutdown hangs");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bank's process id (for signals such as SIGSTOP).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown at all.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL the bank");
        self.child.wait().expect("reap the bank");
    }
}

impl Drop for Bank {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A response: status, headers and the body as JSON (`Null` when empty or
/// not JSON, with the text kept).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) json: Value,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    /// `error.code` of an error reply.
    pub(crate) fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// `error.message` of an error reply.
    pub(crate) fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }
}

/// `POST url` with an optional JSON body and idempotency key. Always with
/// `Content-Type: application/json`, as the ingress requires even for no body.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> Reply {
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    Reply::from(request.send().await.expect("send the request")).await
}

/// An account's balance.
pub(crate) async fn balance(client: &reqwest::Client, bank: &Bank, id: &str) -> i64 {
    let reply = post(
        client,
        &bank.url(&format!("/v1/Account/{id}/balance")),
        None,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json.as_i64().expect("a balance")
}

/// Deposits and asserts 200; returns the new balance.
pub(crate) async fn deposit(client: &reqwest::Client, bank: &Bank, id: &str, amount: i64) -> i64 {
    let reply = post(
        client,
        &bank.url(&format!("/v1/Account/{id}/deposit")),
        Some(serde_json::json!({ "amount": amount })),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json.as_i64().expect("a balance")
}

/// Where `promtool` is: on `PATH`, or unpacked from Debian's `prometheus`
/// package under `target/ci-tools` (done here on first use, under a file
/// lock so parallel test binaries install it once). No Prometheus service is
/// installed or started.
pub(crate) fn promtool() -> Result<std::path::PathBuf, String> {
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs(Path::new("promtool")) {
        return Ok("promtool".into());
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-tools");
    let unpacked = tools.join("usr/bin/promtool");
    std::fs::create_dir_all(tools.join("deb")).map_err(|e| format!("{}: {e}", tools.display()))?;
    let lock = std::fs::File::create(tools.join("install.lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", tools.display()))?;
    if runs(&unpacked) {
        return Ok(unpacked);
    }
    let download = || {
        Command::new("apt-get")
            .args(["download", "prometheus"])
            .current_dir(tools.join("deb"))
            .status()
            .is_ok_and(|s| s.success())
    };
    if !download() {
        // Fresh machines may have no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        if !download() {
            return Err("`apt-get download prometheus` failed".into());
        }
    }
    let deb = std::fs::read_dir(tools.join("deb"))
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("no .deb downloaded")?;
    let unpack = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tools)
        .status()
        .map_err(|e| format!("dpkg-deb: {e}"))?;
    if unpack.success() && runs(&unpacked) {
        Ok(unpacked)
    } else {
        Err(format!("could not unpack promtool from {}", deb.display()))
    }
}
