//! The bank as an HTTP service: accounts and transfers over JSON, state in a
//! durable data directory.
//!
//! ```sh
//! cargo run --release -p statefn-examples --bin bank -- --data-dir ./data --listen 127.0.0.1:8080
//! curl --json '{"amount": 100}' http://127.0.0.1:8080/v1/Account/alice/deposit
//! ```

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use statefn::{
    Runtime,
    ingress::{self, IngressConfig},
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
    #[arg(long, env = "STATEFN_ADMIN_TOKEN")]
    admin_token: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = Runtime::builder()
        .data_dir(&args.data_dir)
        .register::<Account>()
        .open()
        .await?;
    let config = IngressConfig {
        listen: args.listen,
        admin_token: args.admin_token,
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
