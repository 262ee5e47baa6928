//! The fleet's world: a private PostgreSQL (or a SQLite file) and
//! VictoriaMetrics, a CA with a certificate per agent, the inventory
//! written before the controller starts (setting up is not measured), and
//! the release `ward-controller` (one or several, sharing the database) as
//! its own process with mTLS on gRPC and TLS on REST, as deployed.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ward_controller::cache::Cache;
use ward_controller::services::{App, AppSettings};
use ward_controller::store::{Actor, DeviceSpec, Store};
use ward_testkit::services::{Postgres, VictoriaMetrics};

use super::watch::Api;
use super::{Params, site_name};

/// Everything the run needs, removed when dropped.
pub struct World {
    /// The controller processes (first: they are stopped before what they
    /// use goes away).
    pub controllers: Vec<Controller>,
    /// Certificates, the controller's configuration and the spools.
    pub dir: tempfile::TempDir,
    /// The status database's server (none on SQLite).
    pub postgres: Option<Postgres>,
    /// Where the controller writes statistics.
    pub victoria_metrics: VictoriaMetrics,
    /// REST as an admin, one client per controller.
    pub apis: Vec<Api>,
    /// The controllers' gRPC URLs, in the same order.
    pub grpc_urls: Vec<String>,
    /// Each agent's id and its devices' ids (ascending).
    pub agents: Vec<(String, Vec<u64>)>,
}

/// The controller process, killed when dropped.
pub struct Controller(pub Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Agent `agent`'s device `index`: its own IPv6 address in 2001:2::/48
/// (never probed; the simulated agents do not send packets).
fn device(agent: usize, index: usize) -> anyhow::Result<DeviceSpec> {
    let address = Ipv6Addr::new(
        0x2001,
        2,
        0,
        u16::try_from(agent)?,
        0,
        0,
        0,
        u16::try_from(index + 1)?,
    );
    Ok(ward_domain::model::DeviceSpec::new(
        format!("dev-{agent}-{index}"),
        IpAddr::V6(address),
        site_name(agent),
    ))
}

/// Builds the world for `params` and starts the controller.
pub async fn build(params: &Params) -> anyhow::Result<World> {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-fleet-")
        .tempdir()?;
    let postgres = if params.sqlite {
        None
    } else {
        Some(Postgres::start()?)
    };
    let database = match &postgres {
        Some(postgres) => postgres.url(),
        None => format!("sqlite:{}", dir.path().join("ward.db").display()),
    };
    let victoria_metrics = VictoriaMetrics::start()?;
    let started = Instant::now();
    ward_controller::certs::init(dir.path(), &["127.0.0.1".to_owned()])?;
    let ids: Vec<String> = (0..params.agents).map(|i| format!("agent-{i}")).collect();
    for id in &ids {
        ward_controller::certs::agent(dir.path(), id)?;
    }
    let agents = inventory(&database, params, ids).await?;
    eprintln!(
        "fleet: {} agents × {} devices written in {:.1} s",
        params.agents,
        params.devices,
        started.elapsed().as_secs_f64()
    );
    let mut token = None;
    let (mut controllers, mut apis, mut grpc_urls) = (Vec::new(), Vec::new(), Vec::new());
    for index in 0..params.controllers {
        let http = ward_testkit::ports::free_loopback_port()?;
        let grpc = ward_testkit::ports::free_loopback_port()?;
        let config = dir.path().join(format!("controller-{index}.toml"));
        let d = dir.path().display();
        std::fs::write(
            &config,
            format!(
                "listen_http = \"127.0.0.1:{http}\"\nlisten_grpc = \"127.0.0.1:{grpc}\"\n\
                 database = \"{database}\"\nvictoria_metrics = \"{vm}\"\n\
                 tsdb_spool_dir = \"{d}/tsdb-spool-{index}\"\ntls_cert = \"{d}/controller.pem\"\n\
                 tls_key = \"{d}/controller.key\"\ntls_client_ca = \"{d}/ca.pem\"\n",
                vm = victoria_metrics.url(),
            ),
        )?;
        let token = match &token {
            Some(token) => String::clone(token),
            None => token.insert(admin_token(&config)?).clone(),
        };
        // Outside the work directory: kept after the run, to read when it fails.
        let log = std::env::temp_dir().join(format!(
            "ward-fleet-controller-{}-{index}.log",
            std::process::id()
        ));
        eprintln!("fleet: controller {index} logs to {}", log.display());
        controllers.push(start_controller(&config, &log)?);
        apis.push(Api::new(
            format!("https://127.0.0.1:{http}"),
            &dir.path().join("ca.pem"),
            token,
        )?);
        grpc_urls.push(format!("https://127.0.0.1:{grpc}"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for api in &apis {
        while api.get("/api/v1/summary").await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "a controller did not answer in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(World {
        dir,
        postgres,
        victoria_metrics,
        controllers,
        apis,
        grpc_urls,
        agents,
    })
}

impl World {
    /// REST on the first controller.
    pub fn api(&self) -> &Api {
        &self.apis[0]
    }

    /// REST on a controller picked at random.
    pub fn any_api(&self) -> &Api {
        &self.apis[fastrand::usize(..self.apis.len())]
    }

    /// The sum of the counter `name` over every controller.
    pub async fn metric_sum(&self, name: &str) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for api in &self.apis {
            sum += api.metric(name).await?;
        }
        Ok(sum)
    }
}

/// Registers every agent and writes its devices, through the controller's
/// own library on the database the controller will run on.
async fn inventory(
    database: &str,
    params: &Params,
    ids: Vec<String>,
) -> anyhow::Result<Vec<(String, Vec<u64>)>> {
    let store = Store::open(database).await?;
    store.migrate().await?;
    let app = App::new(store, Cache::in_process(), AppSettings::default()).await?;
    let now = ward_controller::time::now_ms();
    let mut agents = Vec::with_capacity(ids.len());
    for (agent, id) in ids.into_iter().enumerate() {
        app.presence
            .register_agent(&id, &site_name(agent), &Actor::console(), now)
            .await?;
        let specs = (0..params.devices)
            .map(|index| device(agent, index))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut devices: Vec<u64> = app
            .inventory
            .import_devices(&specs, &Actor::console(), now)
            .await?
            .iter()
            .map(|device| u64::try_from(device.id))
            .collect::<Result<_, _>>()?;
        devices.sort_unstable();
        agents.push((id, devices));
    }
    Ok(agents)
}

fn controller_binary() -> anyhow::Result<PathBuf> {
    crate::tools::sibling_binary("ward-controller")
}

/// An admin and a token for the harness, made with the console.
fn admin_token(config: &Path) -> anyhow::Result<String> {
    let console = |args: &[&str]| -> anyhow::Result<String> {
        let output = Command::new(controller_binary()?)
            .args(args)
            .arg("--config")
            .arg(config)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "ward-controller {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    console(&["users", "add", "fleet", "--role", "admin", "--no-password"])?;
    let said = console(&["tokens", "create", "fleet", "--label", "fleet"])?;
    said.lines()
        .find(|line| line.starts_with("ward_"))
        .map(str::to_owned)
        .context("`tokens create` printed no token")
}

fn start_controller(config: &Path, log: &Path) -> anyhow::Result<Controller> {
    let child = Command::new(controller_binary()?)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("start ward-controller")?;
    Ok(Controller(child))
}
