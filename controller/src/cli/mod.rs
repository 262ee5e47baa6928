//! `ward-controller` command line (the binary's `main` is [`main`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{FileConfig, Settings};
use crate::store::Store;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing::info;

mod backup;
mod certs;
mod healthcheck;
mod serve;

#[derive(Parser)]
#[command(version, about = "ward controller: status database, alerting and APIs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller until SIGINT or SIGTERM (migrates the database first).
    Run(Box<RunArgs>),
    /// Apply pending database migrations and exit.
    Migrate(MigrateArgs),
    /// Register or list agents (the inventory of who may connect).
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Create, list, disable or enable users (audited as the console).
    Users {
        #[command(subcommand)]
        command: crate::console::UsersCommand,
        #[command(flatten)]
        database: MigrateArgs,
    },
    /// Create, list or revoke API tokens.
    Tokens {
        #[command(subcommand)]
        command: crate::console::TokensCommand,
        #[command(flatten)]
        database: MigrateArgs,
    },
    /// Make the certificates of a deployment (a private CA, the
    /// controller's, one per agent).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Test the configuration's notification routes.
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// Exit 0 if a running controller answers its readiness URL with 2xx
    /// (a container's health check).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Write the status database, the configuration file and the TLS files
    /// it names to one archive (while controllers run; mode 0600: it holds
    /// the controller's key). SQLite is copied, PostgreSQL dumped with
    /// pg_dump.
    Backup {
        /// The archive to write (a gzipped tar), replaced atomically.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[command(flatten)]
        database: MigrateArgs,
    },
    /// Put a backup's database back in place of the configured one (every
    /// controller on it stopped; the one replaced is kept aside), then make
    /// every device `unknown` until its agent reports.
    Restore {
        /// The archive `backup` wrote.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "already_restored"
        )]
        from: Option<PathBuf>,
        /// Also write the backup's configuration and certificates into DIR
        /// (never over an existing file), to compare and put in place.
        #[arg(long, value_name = "DIR", conflicts_with = "already_restored")]
        files_to: Option<PathBuf>,
        /// The database was put back by other means (pg_restore,
        /// point-in-time recovery, a copied file): only migrate it and make
        /// every device `unknown`.
        #[arg(long, conflicts_with = "from")]
        already_restored: bool,
        #[command(flatten)]
        database: MigrateArgs,
    },
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Print the receivers an alert with these labels would go to, one per
    /// line (nothing is sent), and the routes that matched on stderr.
    Test {
        /// TOML configuration file with the `[[receivers]]` and `[[routes]]`.
        #[arg(long, env = "WARD_CONFIG")]
        config: PathBuf,
        /// DeviceDown, DeviceDegraded or AgentDown.
        #[arg(long, default_value = "DeviceDown")]
        alertname: String,
        /// The site.
        #[arg(long)]
        site: String,
        /// A tag of the device (repeat the flag).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The name of the device's parent.
        #[arg(long)]
        parent: Option<String>,
        /// critical, major, minor, info or warning.
        #[arg(long, default_value = "major")]
        severity: String,
    },
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Register an agent for a site (again for the same site: no change).
    Add {
        /// The agent's id (its host name unless configured otherwise).
        id: String,
        /// The site whose devices it probes.
        #[arg(long)]
        site: String,
        #[command(flatten)]
        database: MigrateArgs,
    },
    /// List registered agents.
    List {
        #[command(flatten)]
        database: MigrateArgs,
    },
    /// Revoke an agent's certificates: its link ends within a second and
    /// reconnects are refused until it has a new one (`certs agent ID`).
    Revoke {
        /// The agent's id.
        id: String,
        /// Also revoke this certificate file (PEM), e.g. one issued but
        /// never used.
        #[arg(long)]
        certificate: Option<PathBuf>,
        #[command(flatten)]
        database: MigrateArgs,
    },
}

#[derive(Args)]
struct MigrateArgs {
    /// TOML configuration file (its `database` key is used).
    #[arg(long, env = "WARD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Status database: postgres://USER@HOST:PORT/DB or sqlite:PATH
    /// [default: sqlite:./ward.db].
    #[arg(long, env = "WARD_DATABASE", global = true)]
    database: Option<String>,
    /// A file holding PostgreSQL's password.
    #[arg(long, env = "WARD_DATABASE_PASSWORD_FILE", global = true)]
    database_password_file: Option<PathBuf>,
}

/// Each flag overrides the same key of the configuration file.
#[derive(Args)]
struct RunArgs {
    /// TOML configuration file; flags and WARD_* variables override its keys.
    #[arg(long, env = "WARD_CONFIG")]
    config: Option<PathBuf>,
    /// Status database: postgres://USER@HOST:PORT/DB or sqlite:PATH
    /// [default: sqlite:./ward.db].
    #[arg(long, env = "WARD_DATABASE")]
    database: Option<String>,
    /// A file holding PostgreSQL's password (e.g. a systemd credential:
    /// `${CREDENTIALS_DIRECTORY}/database-password`).
    #[arg(long, env = "WARD_DATABASE_PASSWORD_FILE")]
    database_password_file: Option<PathBuf>,
    /// Address for the REST API, dashboard, health and metrics
    /// [default: 127.0.0.1:8080].
    #[arg(long, env = "WARD_LISTEN_HTTP")]
    listen_http: Option<SocketAddr>,
    /// Address for the gRPC endpoint [default: 127.0.0.1:50051].
    #[arg(long, env = "WARD_LISTEN_GRPC")]
    listen_grpc: Option<SocketAddr>,
    /// Redis for the read cache [default: an in-process cache].
    #[arg(long, env = "WARD_REDIS")]
    redis: Option<String>,
    /// VictoriaMetrics base URL for probe statistics [default: off].
    #[arg(long, env = "WARD_VICTORIA_METRICS")]
    victoria_metrics: Option<String>,
    /// Directory spooling statistics while VictoriaMetrics is unreachable
    /// [default: ./ward-tsdb-spool].
    #[arg(long, env = "WARD_TSDB_SPOOL_DIR")]
    tsdb_spool_dir: Option<PathBuf>,
    /// Most MiB the statistics spool holds before dropping its oldest rows
    /// [default: 256].
    #[arg(long, env = "WARD_TSDB_SPOOL_MAX_MIB")]
    tsdb_spool_max_mib: Option<u64>,
    /// JSON webhook that receives firing and resolved alerts [default: off].
    #[arg(long, env = "WARD_WEBHOOK")]
    webhook: Option<String>,
    /// Alertmanager base URL (alerts go to /api/v2/alerts) [default: off];
    /// repeat (or separate with commas) for the instances of a cluster.
    #[arg(long, env = "WARD_ALERTMANAGER", value_delimiter = ',')]
    alertmanager: Vec<String>,
    /// How often firing alerts are sent to Alertmanager again [default: 60s].
    #[arg(long, env = "WARD_ALERTMANAGER_RESEND_INTERVAL", value_parser = humantime::parse_duration)]
    alertmanager_resend_interval: Option<Duration>,
    /// Bearer token required on REST calls that change data [default: none].
    #[arg(long, env = "WARD_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Let anyone read the REST API, dashboard and gRPC inventory without
    /// a principal [default: false].
    #[arg(long, env = "WARD_ANONYMOUS_READ")]
    anonymous_read: Option<bool>,
    /// `/readyz` is degraded while a certificate in use expires within
    /// this many days [default: 14].
    #[arg(long, env = "WARD_CERTIFICATE_WARNING_DAYS")]
    certificate_warning_days: Option<u32>,
    /// Server certificate (PEM) for gRPC over mTLS.
    #[arg(long, env = "WARD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "WARD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) that agents' client certificates must chain to.
    #[arg(long, env = "WARD_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
}

impl RunArgs {
    /// The flags as overrides of the file's keys.
    fn overrides(self) -> (Option<PathBuf>, FileConfig) {
        let overrides = FileConfig {
            listen_http: self.listen_http,
            listen_grpc: self.listen_grpc,
            database: self.database,
            database_password_file: self.database_password_file,
            redis: self.redis,
            victoria_metrics: self.victoria_metrics,
            tsdb_spool_dir: self.tsdb_spool_dir,
            tsdb_spool_max_mib: self.tsdb_spool_max_mib,
            webhook: self.webhook,
            alertmanager: (!self.alertmanager.is_empty())
                .then_some(crate::config::OneOrMany::Many(self.alertmanager)),
            alertmanager_resend_interval: self.alertmanager_resend_interval,
            api_token: self.api_token,
            anonymous_read: self.anonymous_read,
            certificate_warning_days: self.certificate_warning_days,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_client_ca: self.tls_client_ca,
            ..FileConfig::default()
        };
        (self.config, overrides)
    }
}

/// The file at `path` (if any) under `overrides`.
fn settings(path: Option<PathBuf>, overrides: FileConfig) -> anyhow::Result<Settings> {
    let file = match &path {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    Ok(Settings::resolve(overrides, file)?)
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_command())
}

async fn run_command() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    ward_settings::init_logging();
    match command {
        Command::Migrate(args) => {
            open_store(args).await?;
            info!("migrations applied");
        }
        Command::Agents(command) => agents(command).await?,
        Command::Users { command, database } => {
            crate::console::users(&open_store(database).await?, command).await?;
        }
        Command::Tokens { command, database } => {
            crate::console::tokens(&open_store(database).await?, command).await?;
        }
        Command::Certs(command) => certs::run(command)?,
        Command::Run(args) => {
            let (path, overrides) = (*args).overrides();
            let first = settings(path.clone(), overrides.clone())?;
            serve::run(
                first,
                Box::new(move || settings(path.clone(), overrides.clone())),
            )
            .await?;
        }
        Command::Backup { to, database } => {
            let config = database.config.clone();
            let settings = database.settings()?;
            let password = database_password(&settings)?;
            let manifest =
                backup::backup(&settings, password.as_deref(), config.as_deref(), &to).await?;
            println!("{}", to.display());
            eprintln!(
                "backup of the {} database (migration {}) taken at {}, with {} file(s) of the \
                 controller's; it holds the controller's private key: keep it as you keep that",
                manifest.backend,
                manifest.schema_version,
                manifest.taken_at,
                manifest.files.len()
            );
        }
        Command::Restore {
            from,
            files_to,
            already_restored,
            database,
        } => {
            let settings = database.settings()?;
            let password = database_password(&settings)?;
            let restored = match from {
                Some(from) if !already_restored => {
                    backup::restore(&settings, password.as_deref(), &from, files_to.as_deref())
                        .await?
                }
                _ => backup::already_restored(&settings, password.as_deref()).await?,
            };
            print_restored(&restored);
        }
        Command::Healthcheck(args) => healthcheck::run(args).await?,
        Command::Routes(RoutesCommand::Test {
            config,
            alertname,
            site,
            tags,
            parent,
            severity,
        }) => {
            let labels = ward_domain::routing::Labels {
                alertname,
                site,
                tags,
                parent,
                severity,
            };
            test_routes(&settings(Some(config), FileConfig::default())?, &labels)?;
        }
    }
    Ok(())
}

/// `routes test`: where an alert with `labels` would go under `settings`.
fn test_routes(settings: &Settings, labels: &ward_domain::routing::Labels) -> anyhow::Result<()> {
    use ward_domain::routing::Routes;
    labels
        .check()
        .map_err(|(key, why)| anyhow::anyhow!("--{key}: {why}"))?;
    let names = settings.receivers.iter().map(|r| r.name.clone()).collect();
    let routing = Routes::new(settings.routes.clone(), names).explain(labels);
    for receiver in &routing.receivers {
        println!("{receiver}");
    }
    if routing.matched.is_empty() {
        eprintln!("no route matched: every receiver");
    } else {
        let matched: Vec<String> = routing.matched.iter().map(usize::to_string).collect();
        eprintln!("matched route(s) {}", matched.join(", "));
    }
    Ok(())
}

impl MigrateArgs {
    /// The settings of the config file with these flags over it.
    fn settings(self) -> anyhow::Result<Settings> {
        let overrides = FileConfig {
            database: self.database,
            database_password_file: self.database_password_file,
            ..FileConfig::default()
        };
        settings(self.config, overrides)
    }
}

/// What `restore` did, for the operator: the files on stdout, the rest on
/// stderr.
fn print_restored(restored: &backup::Restored) {
    for path in &restored.files_written {
        println!("{}", path.display());
    }
    if let Some(manifest) = &restored.manifest {
        eprintln!(
            "restored the backup taken at {} (migration {})",
            manifest.taken_at, manifest.schema_version
        );
    }
    if let Some(aside) = &restored.kept_aside {
        eprintln!(
            "the database as it was is kept as {aside}: remove it once the restore is checked"
        );
    }
    eprintln!(
        "{} device(s) are unknown until their agents report (agents state every device when \
         they reconnect)",
        restored.forgotten
    );
}

/// The migrated store named by `args` (and its config file).
async fn open_store(args: MigrateArgs) -> anyhow::Result<Store> {
    let settings = args.settings()?;
    let store = connect(&settings).await?;
    store
        .migrate()
        .await
        .context("migrating the status database")?;
    Ok(store)
}

async fn agents(command: AgentsCommand) -> anyhow::Result<()> {
    match command {
        AgentsCommand::Add { id, site, database } => {
            let store = open_store(database).await?;
            let agent = store
                .register_agent(
                    &id,
                    &site,
                    &crate::store::Actor::console(),
                    crate::time::now_ms(),
                )
                .await?;
            println!("agent {} registered for site {}", agent.id, agent.site);
        }
        AgentsCommand::Revoke {
            id,
            certificate,
            database,
        } => {
            let also = match certificate {
                Some(path) => vec![crate::certs::file_fingerprint(&path)?],
                None => Vec::new(),
            };
            let revoked = open_store(database)
                .await?
                .revoke_agent(
                    &id,
                    &also,
                    &crate::store::Actor::console(),
                    crate::time::now_ms(),
                )
                .await?;
            println!("agent {id}: {revoked} certificate(s) revoked");
        }
        AgentsCommand::List { database } => {
            for agent in open_store(database).await?.list_agents().await? {
                println!("{}\t{}", agent.id, agent.site);
            }
        }
    }
    Ok(())
}

/// The status database `settings` name, with its password file read.
async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let password = database_password(settings)?;
    Ok(Store::connect(&settings.database, password.as_deref()).await?)
}

/// The password in `settings`' `database_password_file`, if any.
fn database_password(settings: &Settings) -> anyhow::Result<Option<String>> {
    settings
        .database_password_file
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .with_context(|| format!("database_password_file {}", path.display()))
        })
        .transpose()
}
