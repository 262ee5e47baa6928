//! `ward-controller` command line.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing::info;
use ward_controller::cache::Cache;
use ward_controller::state::Controller;
use ward_controller::store::Store;

#[derive(Parser)]
#[command(version, about = "ward controller: status database, alerting and APIs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller until SIGINT or SIGTERM (migrates the database first).
    Run(RunArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
}

#[derive(Args)]
struct DatabaseArgs {
    /// Status database: postgres://USER@HOST:PORT/DB or sqlite:PATH.
    #[arg(long, env = "WARD_DATABASE", default_value = "sqlite:./ward.db")]
    database: String,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address for the REST API, health and metrics.
    #[arg(long, env = "WARD_LISTEN_HTTP", default_value = "127.0.0.1:8080")]
    listen_http: SocketAddr,
    /// Address for the gRPC endpoint (health, reflection).
    #[arg(long, env = "WARD_LISTEN_GRPC", default_value = "127.0.0.1:50051")]
    listen_grpc: SocketAddr,
    /// Redis for the read cache (default: an in-process cache).
    #[arg(long, env = "WARD_REDIS")]
    redis: Option<String>,
    /// JSON webhook that receives firing and resolved alerts (default:
    /// notifications wait in the outbox).
    #[arg(long, env = "WARD_WEBHOOK")]
    webhook: Option<String>,
    /// Bearer token required on REST calls that change data (default: none).
    #[arg(long, env = "WARD_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Migrate(args) => {
            let store = Store::open(&args.database).await?;
            let applied = store.migrate().await.context("migrating")?;
            info!(applied, database = %args.database, "migrations applied");
        }
        Command::Run(args) => run(args).await?,
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.database.database).await?;
    let applied = store
        .migrate()
        .await
        .context("migrating the status database")?;
    info!(applied, database = %args.database.database, "status database ready");
    let cache = match &args.redis {
        Some(url) => Cache::redis(url).await?,
        None => Cache::in_process(),
    };
    let controller = Arc::new(Controller::new(store, cache).with_api_token(args.api_token));
    let http = tokio::net::TcpListener::bind(args.listen_http)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {}; pick a free address with --listen-http",
                args.listen_http
            )
        })?;
    let grpc = ward_controller::grpc::bind(args.listen_grpc).await?;
    info!(http = %args.listen_http, grpc = %args.listen_grpc, "controller listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let notifier = args.webhook.as_deref().map(|url| {
        let mut notifier_stopped = stopped.clone();
        tokio::spawn(ward_controller::notify::run(
            Arc::clone(&controller),
            ward_controller::notify::Webhook::new(url),
            async move {
                let _ = notifier_stopped.wait_for(|stop| *stop).await;
            },
        ))
    });
    let mut http_stopped = stopped.clone();
    let mut grpc_stopped = stopped;
    let http_server = axum::serve(http, ward_controller::api::router(Arc::clone(&controller)))
        .with_graceful_shutdown(async move {
            let _ = http_stopped.wait_for(|stop| *stop).await;
        });
    let grpc_server = ward_controller::grpc::serve(grpc, Arc::clone(&controller), async move {
        let _ = grpc_stopped.wait_for(|stop| *stop).await;
    });
    let signal = async {
        shutdown_signal().await;
        info!("stopping");
        let _ = stop.send(true);
    };
    let (http_result, grpc_result, ()) = tokio::join!(http_server, grpc_server, signal);
    http_result.context("HTTP server")?;
    grpc_result.context("gRPC endpoint")?;
    if let Some(notifier) = notifier {
        notifier.await.context("notifier task")?;
    }
    info!("stopped");
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
