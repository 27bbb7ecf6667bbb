//! The servers of the `http` scenario, each in its own child process so
//! that the server and the load generator do not share a tokio runtime
//! (as with the peers' figures: a server process and a client process).
//!
//! - the bank: the shipped example binary (`examples/src/bin/bank.rs`,
//!   release build) on a durable data dir with default settings;
//! - the floor: `statefn-bench serve-noop`, an axum server whose `POST
//!   /noop` answers `{}` and touches nothing else: HTTP parsing, routing
//!   and the loopback round trip, which every HTTP service pays.

use std::{net::SocketAddr, path::Path, process::Stdio};

use axum::{Json, Router, routing::post};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::measure::BoxError;

/// The line both servers print once they accept connections.
const ANNOUNCEMENT: &str = "listening on http://";

/// A server child process, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `command` and waits for its announcement line on stdout.
    ///
    /// # Errors
    ///
    /// The process could not start, or exited before announcing.
    pub async fn start(mut command: Command) -> Result<ServerProcess, BoxError> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.trim().strip_prefix(ANNOUNCEMENT) {
                let addr = addr.trim_end_matches('/').parse()?;
                return Ok(ServerProcess { child, addr });
            }
        }
        Err(format!("{command:?} exited without printing {ANNOUNCEMENT:?}").into())
    }

    /// The bank example on `data_dir`.
    ///
    /// # Errors
    ///
    /// As [`ServerProcess::start`].
    pub async fn bank(binary: &Path, data_dir: &Path) -> Result<ServerProcess, BoxError> {
        let mut command = Command::new(binary);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            // Only warnings: per-request logging would be measured too.
            .env("RUST_LOG", "warn");
        ServerProcess::start(command).await
    }

    /// This binary's `serve-noop` subcommand.
    ///
    /// # Errors
    ///
    /// As [`ServerProcess::start`].
    pub async fn noop() -> Result<ServerProcess, BoxError> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["serve-noop", "--listen", "127.0.0.1:0"]);
        ServerProcess::start(command).await
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id, for `ps`/`perf` while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it (SIGKILL) and reaps it.
    ///
    /// # Errors
    ///
    /// The kill failed.
    pub async fn stop(mut self) -> Result<(), BoxError> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Serves `POST /noop` → `{}` on `listen` until killed, announcing the
/// address like the bank does. Runs on the caller's tokio runtime.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve_noop(listen: SocketAddr) -> Result<(), BoxError> {
    async fn noop() -> Json<Value> {
        Json(json!({}))
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("{ANNOUNCEMENT}{}", listener.local_addr()?);
    let app = Router::new().route("/noop", post(noop));
    axum::serve(listener, app).await?;
    Ok(())
}
