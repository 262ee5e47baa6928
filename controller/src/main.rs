//! `ward-controller` command line.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing::info;

#[derive(Parser)]
#[command(version, about = "ward controller: status database, alerting and APIs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller until SIGINT or SIGTERM.
    Run {
        /// Address for the gRPC endpoint (health, reflection).
        #[arg(long, env = "WARD_LISTEN_GRPC", default_value = "127.0.0.1:50051")]
        listen_grpc: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Run { listen_grpc } => {
            let listener = ward_controller::grpc::bind(listen_grpc).await?;
            info!(address = %listen_grpc, "gRPC endpoint listening");
            ward_controller::grpc::serve(listener, shutdown_signal())
                .await
                .context("gRPC endpoint")?;
            info!("stopped");
        }
    }
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot watch SIGTERM; stopping only on SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
