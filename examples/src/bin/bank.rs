//! The bank as an HTTP service: accounts and transfers over JSON, state in a
//! durable data directory.
//!
//! ```sh
//! cargo run --release -p statefn-examples --bin bank -- --data-dir ./data --listen 127.0.0.1:8080
//! curl --json '{"amount": 100}' http://127.0.0.1:8080/v1/Account/alice/deposit
//! ```
//!
//! Cluster mode (docs/cluster.md): every node gets the NATS servers, an id
//! and a data directory of its own; any node answers any call.
//!
//! ```sh
//! bank --nats nats://127.0.0.1:4222 --node-id a --data-dir ./a --listen 127.0.0.1:8081
//! bank --nats nats://127.0.0.1:4222 --node-id b --data-dir ./b --listen 127.0.0.1:8082
//! ```

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf};

use clap::{Parser, ValueEnum};
use statefn::{
    Runtime,
    cluster::ClusterConfig,
    ingress::{self, DEFAULT_MAX_CONNECTIONS, IngressConfig},
};
use statefn_examples::bank::Account;

/// Serves the bank's accounts over HTTP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where state lives: the write-ahead log and the state store.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// The address to listen on; port 0 picks a free port (the real one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Turns on `/admin/...`, for requests with `Authorization: Bearer <token>`.
    /// Prefer the environment variable: arguments are visible in `ps`.
    #[arg(long, env = "STATEFN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serves `GET /v1/egress/...` only to requests with `Authorization: Bearer <token>`.
    #[arg(long, env = "STATEFN_EGRESS_TOKEN", hide_env_values = true)]
    egress_token: Option<String>,
    /// A browser origin (`https://host[:port]`) whose pages may call; repeat
    /// for several. Requests from any other web page are refused.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// A host name (`Host` header) the bank answers to: `api.example`, or
    /// `.example` for every name under it; repeat for several. Default: on
    /// a loopback address, this machine's names only; elsewhere, any.
    #[arg(long = "allowed-host", value_name = "HOST")]
    allowed_hosts: Vec<String>,
    /// The most connections served at once; more wait until one closes.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// How logs are written to stderr: `text` for people, `json` (one object
    /// per line) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Cluster mode: the NATS servers (`nats://host:4222`, comma-separated).
    /// Without it the bank runs on one node with its local log.
    #[arg(long, value_name = "URL[,URL...]")]
    nats: Option<String>,
    /// Cluster mode: this node's id, unique in the cluster and the same
    /// across restarts.
    #[arg(long, value_name = "NAME", requires = "nats")]
    node_id: Option<String>,
    /// Cluster mode: replicas of every stream (at most the NATS servers).
    #[arg(long, value_name = "N", default_value_t = 3)]
    replicas: usize,
    /// Log groups: shards sharing one log (one fsync; in cluster mode one
    /// stream, the unit of ownership and failover). Default 1 on a single
    /// node, 8 in cluster mode; every node of a cluster must use the same.
    #[arg(long, value_name = "N")]
    log_groups: Option<u16>,
    /// Cluster mode: the cluster's name, when several share NATS servers.
    #[arg(long, value_name = "NAME", default_value = "statefn")]
    cluster: String,
    /// Cluster mode: a node not heard from for this many milliseconds is
    /// declared dead and its log groups are taken over (default: the
    /// runtime's, see docs/cluster.md).
    #[arg(long, value_name = "MS")]
    failure_timeout_ms: Option<u64>,
    /// Cluster mode: how long an append the NATS servers do not confirm is
    /// tried again (a stream leader election) before the call is refused
    /// and the log group steps down (default: the runtime's, see
    /// docs/cluster.md).
    #[arg(long, value_name = "MS")]
    log_retry_ms: Option<u64>,
}

/// The format of the logs on stderr.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Log groups in cluster mode unless `--log-groups` says otherwise: enough
/// to spread over a few nodes.
const CLUSTER_LOG_GROUPS: u16 = 8;

/// mimalloc instead of the system allocator: glibc `malloc`/`free` were a
/// fifth of a cluster node's CPU at 128 callers (hyper's read buffers,
/// NATS messages, futures). The runtime allocates through the global
/// allocator, so an application chooses it in its binary, as here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The message, not the debug form: it says what to change.
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        // Colour codes are for terminals: in a file or a pipe they are noise.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    let mut builder = Runtime::builder()
        .data_dir(&args.data_dir)
        .register::<Account>();
    if let Some(urls) = &args.nats {
        let node_id = args
            .node_id
            .clone()
            .ok_or("cluster mode (--nats) needs --node-id NAME, unique per node")?;
        let mut config = ClusterConfig::new(urls, node_id);
        config.replicas = args.replicas;
        config.cluster_name = args.cluster.clone();
        if let Some(ms) = args.failure_timeout_ms {
            config.failure_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(ms) = args.log_retry_ms {
            config.log_retry_for = std::time::Duration::from_millis(ms);
        }
        builder = builder
            .cluster(config)
            .log_groups(args.log_groups.unwrap_or(CLUSTER_LOG_GROUPS));
    } else if let Some(groups) = args.log_groups {
        builder = builder.log_groups(groups);
    }
    let runtime = builder.open().await?;
    let config = IngressConfig {
        listen: args.listen,
        admin_token: args.admin_token,
        egress_token: args.egress_token,
        allowed_origins: args.allowed_origins,
        allowed_hosts: args.allowed_hosts,
        max_connections: args.max_connections,
        ..IngressConfig::default()
    };
    let server = ingress::Server::bind(runtime, config).await?;
    // Registered before the announcement: a SIGTERM sent as soon as it is
    // read must shut down gracefully, not kill the process.
    let stop = ingress::shutdown_signal()?;
    println!("listening on http://{}", server.local_addr());
    server.run_until(stop).await?;
    Ok(())
}
