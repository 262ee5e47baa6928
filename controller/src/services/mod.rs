//! The controller's services, each owning its state: [`Core`] (store,
//! cache, counters, the live feed), [`Reports`] (the agent link's writes),
//! [`AgentPresence`] (agents, groups, the offline rule), [`Cluster`]
//! (membership, leases, the other controllers' changes), [`Inventory`],
//! [`Maintenance`], [`Guard`] (access settings, logins, certificates) and
//! [`Notifications`]. [`App`] assembles them; a REST handler takes only
//! the services it uses (`State<Arc<Inventory>>`, …, through axum's
//! `FromRef`), an agent link the four it uses; the gRPC `Inventory`
//! service, the REST API's twin, holds the `App`.
//!
//! Services sit between the edges (`api`, `grpc`, `jobs`, `notify`) and
//! the store and domain below: nothing here imports an edge.

mod cluster;
mod core;
mod device_table;
mod group_commit;
mod guard;
mod inventory;
mod latency;
mod live;
mod logins;
mod maintenance;
mod metrics;
mod notifications;
mod overview;
mod paging;
mod presence;
mod reports;

pub use self::core::Core;
pub use cluster::{Cluster, DEFAULT_FAILOVER_DELAY, Lease, follow_other_controllers};
pub use device_table::WRITES_KEPT;
pub use guard::Guard;
pub use inventory::{DeviceFilter, Inventory, Summary};
pub use latency::ApiLatency;
pub use live::{Live, LiveEvent, StatusEvent};
pub use logins::{LoginCounters, LoginSettings, Logins};
pub use maintenance::Maintenance;
pub use metrics::Metrics;
pub use notifications::{DEFAULT_RECEIVER_FAILING_AFTER, ListedReceiver, Notifications, Outcome};
pub use overview::{Overview, PROBLEMS_DEFAULT, PROBLEMS_MAX, SiteTally};
pub use paging::{DEVICE_PAGE_DEFAULT, DEVICE_PAGE_MAX, DeviceCursor, UNPAGED_MAX};
pub use presence::AgentPresence;
pub use reports::{Reports, StatisticsError, Taken};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;

use crate::auth::Access;
use crate::cache::Cache;
use crate::store::{FlapPolicy, Store, StoreError};
use crate::tsdb::Tsdb;

/// What the services are built with (each key's meaning is in
/// `config/`); the defaults are the embedded defaults'.
pub struct AppSettings {
    /// `api_token`.
    pub api_token: Option<String>,
    /// `anonymous_read`.
    pub anonymous_read: bool,
    /// `metrics_access`.
    pub metrics_access: Access,
    /// Login limits.
    pub login: LoginSettings,
    /// The LDAP directory, if any.
    pub directory: Option<crate::ldap::Directory>,
    /// `certificate_warning_days`.
    pub certificate_warning_days: u32,
    /// `failover_delay`.
    pub failover_delay: Duration,
    /// `agent_failover_delay`.
    pub agent_failover_delay: Duration,
    /// `flap_changes`, `flap_window`.
    pub flapping: FlapPolicy,
    /// `[degraded]`.
    pub quality: ward_domain::quality::Thresholds,
    /// The time-series writer, when VictoriaMetrics is configured.
    pub tsdb: Option<Tsdb>,
    /// The receivers (each a notification channel with a worker).
    pub receivers: Vec<ListedReceiver>,
    /// The routes that choose among them.
    pub routes: Vec<ward_domain::routing::Route>,
    /// `receiver_failing_after`.
    pub receiver_failing_after: Duration,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            api_token: None,
            anonymous_read: false,
            metrics_access: Access::Open,
            login: LoginSettings::default(),
            directory: None,
            certificate_warning_days: 14,
            failover_delay: DEFAULT_FAILOVER_DELAY,
            agent_failover_delay: crate::agents::DEFAULT_AGENT_FAILOVER_DELAY,
            flapping: FlapPolicy::default(),
            quality: ward_domain::quality::Thresholds::default(),
            tsdb: None,
            receivers: Vec::new(),
            routes: Vec::new(),
            receiver_failing_after: DEFAULT_RECEIVER_FAILING_AFTER,
        }
    }
}

/// Every service of one controller.
#[derive(Clone)]
pub struct App {
    /// Store, cache, counters, live feed.
    pub core: Arc<Core>,
    /// The agent link's writes.
    pub reports: Arc<Reports>,
    /// Agents' presence.
    pub presence: Arc<AgentPresence>,
    /// This controller in its cluster.
    pub cluster: Arc<Cluster>,
    /// The device inventory.
    pub inventory: Arc<Inventory>,
    /// Maintenance windows.
    pub maintenance: Arc<Maintenance>,
    /// Access settings, logins, certificates.
    pub guard: Arc<Guard>,
    /// Notification channels.
    pub notifications: Arc<Notifications>,
    /// For reading history back from VictoriaMetrics.
    pub http: reqwest::Client,
}

impl App {
    /// The services over `store` and `cache`, set up by `settings` (the
    /// notification channels are recorded in the store).
    pub async fn new(
        store: Store,
        cache: Cache,
        settings: AppSettings,
    ) -> Result<Self, StoreError> {
        let core = Arc::new(Core::new(store, cache));
        let reports = Arc::new(Reports::new(
            Arc::clone(&core),
            settings.flapping,
            settings.quality,
            settings.tsdb,
        ));
        let cluster = Arc::new(Cluster::new(Arc::clone(&core), settings.failover_delay));
        let presence = Arc::new(AgentPresence::new(
            Arc::clone(&core),
            Arc::clone(&reports),
            Arc::clone(&cluster),
            settings.agent_failover_delay,
        ));
        let maintenance = Arc::new(Maintenance::new(Arc::clone(&core)));
        let inventory = Arc::new(Inventory::new(Arc::clone(&core), Arc::clone(&maintenance)));
        let mut logins = Logins::new(settings.login);
        logins.directory = settings.directory;
        let guard = Arc::new(Guard::new(
            Arc::clone(&core),
            settings.api_token,
            settings.anonymous_read,
            settings.metrics_access,
            logins,
            settings.certificate_warning_days,
        ));
        let notifications = Arc::new(
            Notifications::new(
                Arc::clone(&core),
                settings.receivers,
                settings.routes,
                settings.receiver_failing_after,
            )
            .await?,
        );
        Ok(Self {
            core,
            reports,
            presence,
            cluster,
            inventory,
            maintenance,
            guard,
            notifications,
            http: reqwest::Client::new(),
        })
    }
}

/// `State<Arc<Service>>` from the app's state, for each service.
macro_rules! substates {
    ($($field:ident: $service:ty),* $(,)?) => {
        $(impl FromRef<App> for $service {
            fn from_ref(app: &App) -> Self {
                app.$field.clone()
            }
        })*
    };
}

substates!(
    core: Arc<Core>,
    reports: Arc<Reports>,
    presence: Arc<AgentPresence>,
    cluster: Arc<Cluster>,
    inventory: Arc<Inventory>,
    maintenance: Arc<Maintenance>,
    guard: Arc<Guard>,
    notifications: Arc<Notifications>,
    http: reqwest::Client,
);

/// A device for the services' unit tests: `name` of `site`, `status`.
#[cfg(test)]
pub(crate) fn test_device(
    id: i64,
    site: &str,
    name: &str,
    status: crate::store::Status,
) -> crate::store::Device {
    crate::store::Device {
        id,
        spec: crate::store::DeviceSpec {
            severity: crate::store::Severity::Major,
            ..crate::store::DeviceSpec::new(
                name.into(),
                "198.18.1.1".parse().expect("address"),
                site.into(),
            )
        },
        status,
        down_since_ms: None,
        status_changed_at_ms: 0,
        last_rtt_us: None,
        agent: None,
        flapping: false,
        degraded: None,
    }
}
