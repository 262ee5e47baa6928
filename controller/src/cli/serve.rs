//! `ward-controller run`: the store migrated, the services assembled, the
//! jobs started, REST and gRPC served until SIGINT or SIGTERM (long-lived
//! streams ended first); SIGHUP re-reads the TLS files.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tracing::info;

use super::connect;
use crate::cache::Cache;
use crate::config::Settings;
use crate::notify::Workers;
use crate::services::{App, AppSettings, ListedReceiver};
use crate::tsdb::{Tsdb, TsdbConfig};

/// Holds `database`'s controller lock when it is SQLite: one controller
/// per file (several controllers share a PostgreSQL database instead).
pub(super) fn hold_sqlite(database: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = database.strip_prefix("sqlite:") else {
        return Ok(None);
    };
    let lock = format!("{path}.controller-lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .with_context(|| format!("cannot open {lock}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another ward-controller already runs on {path}: an SQLite database serves one \
             controller; to run several, put them on one PostgreSQL database \
             (database = \"postgres://…\", see docs/HA.md)"
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {lock}"))
        }
    }
}

/// Reads the configuration again (file, flags, environment), for SIGHUP.
pub(super) type Reread = Box<dyn Fn() -> anyhow::Result<Settings> + Send + Sync>;

/// Runs the controller until SIGINT or SIGTERM; on SIGHUP, `reread`
/// gives the receivers and routes (and the TLS files are read again).
pub(super) async fn run(settings: Settings, reread: Reread) -> anyhow::Result<()> {
    let _one_controller = hold_sqlite(&settings.database)?;
    let store = migrated_store(&settings).await?;
    let cache = match &settings.redis {
        Some(url) => Cache::redis(url).await?,
        None => Cache::in_process(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let mut tasks = Vec::new();
    let tsdb_writer = match &settings.victoria_metrics {
        Some(url) => {
            let (tsdb, writer) = start_tsdb(url, &settings, until_stopped())?;
            tasks.push(writer);
            Some(tsdb)
        }
        None => None,
    };
    let app = App::new(store, cache, app_settings(&settings, tsdb_writer)?).await?;
    let workers = Arc::new(tokio::sync::Mutex::new(Workers::new(&app)));
    workers
        .lock()
        .await
        .apply(&settings)
        .await
        .map_err(anyhow::Error::msg)?;
    let names: Vec<&str> = settings.receivers.iter().map(|r| r.name.as_str()).collect();
    info!(receivers = ?names, routes = settings.routes.len(), "notification receivers");
    tasks.extend(crate::jobs::start(
        &app,
        crate::jobs::every_job(settings.audit_retention, settings.history_retention),
        &until_stopped,
    ));
    let http = bind_http(settings.listen_http).await?;
    let grpc = crate::grpc::bind(settings.listen_grpc).await?;
    let tls = settings
        .tls
        .as_ref()
        .map(crate::tls::ServerTls::load)
        .transpose()?;
    if let Some(expires_at_ms) = tls.as_ref().and_then(crate::tls::ServerTls::expires_at_ms) {
        app.guard.note_certificate("controller", expires_at_ms);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(http = %settings.listen_http, scheme, grpc = %settings.listen_grpc, "controller listening");
    let http_server = serve_http(http, tls.clone(), &app, until_stopped());
    tasks.push(tokio::spawn(
        Reload {
            tls: tls.clone(),
            app: app.clone(),
            workers: Arc::clone(&workers),
            in_force: settings.clone(),
            reread,
        }
        .on_hangup(until_stopped()),
    ));
    let grpc_server = crate::grpc::serve(grpc, app.clone(), tls, until_stopped());
    let signal = async {
        shutdown_signal().await;
        info!("stopping");
        app.core.live.begin_shutdown();
        let _ = stop.send(true);
    };
    let (http_result, grpc_result, ()) = tokio::join!(http_server, grpc_server, signal);
    http_result.context("HTTP server")?;
    grpc_result.context("gRPC endpoint")?;
    for task in tasks {
        task.await.context("background task")?;
    }
    workers.lock().await.stop_all().await;
    info!("stopped");
    Ok(())
}

/// The time-series writer and its task, writing to VictoriaMetrics at
/// `url` until `stopped`.
fn start_tsdb(
    url: &str,
    settings: &Settings,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Tsdb, tokio::task::JoinHandle<()>)> {
    let started = Tsdb::start(
        TsdbConfig {
            url: url.to_owned(),
            spool_dir: settings.tsdb_spool_dir.clone(),
            spool_max_bytes: settings.tsdb_spool_max_bytes,
        },
        stopped,
    )?;
    info!(url = %ward_settings::redact_secrets(url), spool = %settings.tsdb_spool_dir.display(), "writing statistics to VictoriaMetrics");
    Ok(started)
}

/// The REST API's and dashboard's listener.
async fn bind_http(address: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("cannot listen for HTTP on {address}; pick a free address with --listen-http")
        })
}

/// The status database, connected and migrated (and a hint logged while
/// no user exists).
async fn migrated_store(settings: &Settings) -> anyhow::Result<crate::store::Store> {
    let store = connect(settings).await?;
    let applied = store
        .migrate()
        .await
        .context("migrating the status database")?;
    info!(applied, database = %ward_settings::redact_secrets(&settings.database), "status database ready");
    if settings.api_token.is_none() && store.users().await?.is_empty() {
        tracing::warn!("{}", crate::access::FIRST_ADMIN_HINT);
    }
    Ok(store)
}

/// The receivers as the API lists them.
fn listed_receivers(settings: &Settings) -> Vec<ListedReceiver> {
    settings
        .receivers
        .iter()
        .map(|receiver| ListedReceiver {
            name: receiver.name.clone(),
            kind: receiver.kind.as_str(),
            target: receiver.target(),
        })
        .collect()
}

/// What the services are built with, from the settings.
fn app_settings(settings: &Settings, tsdb: Option<Tsdb>) -> anyhow::Result<AppSettings> {
    Ok(AppSettings {
        api_token: settings.api_token.clone(),
        anonymous_read: settings.anonymous_read,
        metrics_access: settings.metrics_access,
        login: settings.login.clone(),
        directory: settings
            .ldap
            .clone()
            .map(crate::ldap::Directory::new)
            .transpose()?,
        certificate_warning_days: settings.certificate_warning_days,
        failover_delay: settings.failover_delay,
        agent_failover_delay: settings.agent_failover_delay,
        flapping: settings.flapping,
        quality: settings.degraded,
        tsdb,
        receivers: listed_receivers(settings),
        routes: settings.routes.clone(),
        receiver_failing_after: settings.receiver_failing_after,
    })
}

/// Serves the REST API and the dashboard on `http` (over TLS when `tls` is
/// given) until `stop` completes.
async fn serve_http(
    http: tokio::net::TcpListener,
    tls: Option<crate::tls::ServerTls>,
    app: &App,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::api::router(app.clone());
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(tls) => {
            let listener = crate::tls::HttpsListener::new(http, tls, Arc::clone(&app.core))?;
            // `tap_io` makes each connection's peer address its
            // `ConnectInfo`, as for plain TCP.
            axum::serve(listener.tap_io(|_| ()), service)
                .with_graceful_shutdown(stop)
                .await
        }
        None => {
            axum::serve(http, service)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

/// What SIGHUP reads again: the TLS files, the receivers and routes.
struct Reload {
    tls: Option<crate::tls::ServerTls>,
    app: App,
    workers: Arc<tokio::sync::Mutex<Workers>>,
    /// The settings whose receivers and routes are in force.
    in_force: Settings,
    reread: Reread,
}

impl Reload {
    /// On each SIGHUP until `stop`: the TLS certificate and key (new
    /// connections use them; connected agents stay), then the
    /// configuration's receivers and routes, put in force whole or not at
    /// all (a refused one is logged naming the key, counted, and the ones
    /// in force stay; waiting notifications of a receiver still configured
    /// stay queued).
    async fn on_hangup(mut self, stop: impl std::future::Future<Output = ()>) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGHUP: certificates, receivers and routes are read only at start");
                return;
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = hangups.recv() => {}
            }
            if let Some(tls) = &self.tls {
                self.reload_tls(tls).await;
            }
            self.reload_receivers().await;
        }
    }

    async fn reload_tls(&self, tls: &crate::tls::ServerTls) {
        // The files are read on a blocking thread, not on an async worker.
        let reloading = tls.clone();
        let reloaded = tokio::task::spawn_blocking(move || reloading.reload()).await;
        match reloaded.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic())) {
            Ok(()) => {
                if let Some(expires_at_ms) = tls.expires_at_ms() {
                    self.app.guard.note_certificate("controller", expires_at_ms);
                }
                info!(expires = %tls.expires_at_ms().map(crate::time::rfc3339).unwrap_or_default(),
                    "SIGHUP: TLS certificate and key read again; new connections use them");
            }
            Err(error) => tracing::error!(%error,
                "SIGHUP: the TLS files do not load; the certificate in use stays"),
        }
    }

    async fn reload_receivers(&mut self) {
        let refused = |error: &dyn std::fmt::Display| {
            self.app
                .core
                .metrics
                .config_reloads_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(%error, "SIGHUP: the configuration is refused; the receivers and routes in force stay");
        };
        let read = match (self.reread)() {
            Ok(read) => read,
            Err(error) => return refused(&error),
        };
        if !notification_settings_differ(&self.in_force, &read) {
            return;
        }
        // Every channel is made before anything changes.
        let prepared = match Workers::prepare(&read) {
            Ok(prepared) => prepared,
            Err(error) => return refused(&error),
        };
        let mut workers = self.workers.lock().await;
        if let Err(error) = self
            .app
            .notifications
            .reconfigure(listed_receivers(&read), read.routes.clone())
            .await
        {
            return refused(&error);
        }
        workers.switch(prepared).await;
        let names: Vec<&str> = read.receivers.iter().map(|r| r.name.as_str()).collect();
        info!(receivers = ?names, routes = read.routes.len(), "SIGHUP: receivers and routes read again");
        if without_notifications(&read) != without_notifications(&self.in_force) {
            tracing::warn!(
                "SIGHUP: only receivers, routes and the TLS files are read again; restart the controller for the other settings changed"
            );
        }
        self.in_force = read;
    }
}

/// Whether `a` and `b` differ in what notifications go through.
fn notification_settings_differ(a: &Settings, b: &Settings) -> bool {
    a.receivers != b.receivers || a.routes != b.routes || a.public_url != b.public_url
}

/// `settings` without what a reload puts in force.
fn without_notifications(settings: &Settings) -> Settings {
    Settings {
        receivers: Vec::new(),
        routes: Vec::new(),
        webhook: None,
        alertmanagers: Vec::new(),
        public_url: None,
        ..settings.clone()
    }
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
