//! The `ward.v1.Inventory` gRPC service: the REST API's inventory and
//! status, with the same rules (validation, cache, truth), over the same
//! services ([`App`]).

use std::pin::Pin;
use std::sync::atomic::Ordering;

use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status as GrpcStatus};
use ward_proto::v1::inventory_server::Inventory;
use ward_proto::v1::{
    self as pb, AlertState, DeleteDeviceRequest, DeleteDeviceResponse, DeviceState,
    GetDeviceRequest, GetSummaryRequest, ListAgentsRequest, ListAgentsResponse, ListAlertsRequest,
    ListAlertsResponse, ListDevicesRequest, ListDevicesResponse, StatusChange, UpsertDeviceRequest,
    WatchStatusRequest,
};

use crate::access::{self, Access, Refusal};
use crate::auth::{Principal, Role};
use crate::services::{App, DeviceFilter, LiveEvent};
use crate::store::{
    AckOutcome, Actor, Alert, AlertName, AuditFilter, Device, DeviceSpec, HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT, HistoryCursor, HistoryFilter, MAX_ACK_COMMENT, MaintenanceSpec,
    MaintenanceWindow, Severity, Status, StoreError, SyncMode, SyncedDevice,
};
use crate::time::now_ms;
use ward_domain::maintenance::{Day, Every, OpenWindow};

/// The service.
pub struct InventoryService {
    app: App,
}

/// What each `ward.v1.Inventory` method requires, declared next to the
/// methods; a method missing here refuses everyone, and the authorization
/// test checks every method of the service against this table.
pub const INVENTORY_ACCESS: &[(&str, Access)] = &[
    ("ListDevices", Access::Read),
    ("GetDevice", Access::Read),
    ("UpsertDevice", Access::Role(Role::Admin)),
    ("DeleteDevice", Access::Role(Role::Admin)),
    ("ListAlerts", Access::Read),
    ("ListAgents", Access::Read),
    ("GetSummary", Access::Read),
    ("WatchStatus", Access::Read),
    ("ListAudit", Access::Role(Role::Admin)),
    ("ListHistory", Access::Read),
    ("AcknowledgeAlert", Access::Role(Role::Operator)),
    ("UnacknowledgeAlert", Access::Role(Role::Operator)),
    ("SyncDevices", Access::Role(Role::Admin)),
    ("ListMaintenance", Access::Read),
    ("UpsertMaintenance", Access::Role(Role::Operator)),
    ("DeleteMaintenance", Access::Role(Role::Operator)),
    ("GetAvailability", Access::Read),
];

impl InventoryService {
    /// Serves `controller`'s inventory.
    pub fn new(app: App) -> Self {
        Self { app }
    }

    /// Acknowledges alert `id` (`comment`), or withdraws its
    /// acknowledgement (`None`): the alert, NOT_FOUND, or
    /// FAILED_PRECONDITION when it is resolved.
    async fn acknowledged(
        &self,
        id: u64,
        comment: Option<&str>,
        actor: &Actor,
    ) -> Result<Response<pb::Alert>, GrpcStatus> {
        let id = device_id(id)?;
        match self
            .app
            .inventory
            .acknowledge(id, comment, actor, now_ms())
            .await
            .map_err(grpc_error)?
        {
            AckOutcome::Done(alert) => Ok(Response::new(alert_to_proto(&alert))),
            AckOutcome::NotFound => Err(GrpcStatus::not_found(format!("no alert with id {id}"))),
            AckOutcome::Resolved(_) => Err(GrpcStatus::failed_precondition(format!(
                "alert {id} is resolved: only an open alert is acknowledged"
            ))),
        }
    }

    /// Who made `request` (for the audit log) if it may call `method` (on `object`,
    /// as the audit log names it): an API token in `authorization:
    /// Bearer …`, else the client certificate's agent (which may use the
    /// agent link only), else nobody. A refusal is counted, logged and
    /// audited.
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &str,
        object: &str,
    ) -> Result<Actor, GrpcStatus> {
        let guard = &self.app.guard;
        let source = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |address| address.to_string());
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let certificate = request.peer_certs().and_then(|chain| {
            chain
                .first()
                .and_then(|leaf| crate::certs::common_name(leaf))
        });
        let proven = match (token, certificate) {
            (None, Some(id)) => Ok(Principal::Agent { id }),
            (token, _) => access::token_principal(&guard.core, token, now_ms()).await,
        };
        let declared = INVENTORY_ACCESS
            .iter()
            .find(|(name, _)| *name == method)
            .map(|(_, access)| *access);
        let (principal, decided) = match (proven, declared) {
            (Ok(principal), Some(access)) => {
                let decided = access::permit(&principal, access, guard.anonymous_read);
                (principal, decided)
            }
            // Not in the table: nobody may call it (no fallback role).
            (Ok(principal), None) => (
                principal,
                Err(Refusal::Forbidden(format!(
                    "Inventory/{method} declares no access: refused to everyone"
                ))),
            ),
            (Err(refusal), _) => (Principal::Anonymous, Err(refusal)),
        };
        let Err(refusal) = decided else {
            return Ok(Actor {
                principal: principal.to_string(),
                source,
            });
        };
        let action = format!("grpc Inventory/{method}");
        access::refused(&guard.core, &principal, &source, &action, object, &refusal).await;
        Err(match refusal {
            Refusal::Unauthenticated(message) => GrpcStatus::unauthenticated(message),
            Refusal::Forbidden(message) => GrpcStatus::permission_denied(message),
            Refusal::Unavailable(message) => GrpcStatus::unavailable(message),
        })
    }
}

fn state(status: Status) -> DeviceState {
    match status {
        Status::Up => DeviceState::Up,
        Status::Down => DeviceState::Down,
        Status::Unreachable => DeviceState::Unreachable,
        Status::Unknown => DeviceState::Unknown,
    }
}

/// A device with the `open` maintenance windows that apply to it.
fn to_proto(device: &Device, open: &[OpenWindow]) -> pb::Device {
    let maintenance = ward_domain::maintenance::covering(open, device);
    pb::Device {
        flapping: device.flapping,
        in_maintenance: !maintenance.is_empty(),
        maintenance: maintenance
            .into_iter()
            .filter_map(|id| u64::try_from(id).ok())
            .collect(),
        id: u64::try_from(device.id).unwrap_or_default(),
        spec: Some(pb::DeviceSpec {
            name: device.spec.name.clone(),
            address: device.spec.address.to_string(),
            site: device.spec.site.clone(),
            parent_id: device.spec.parent_id.and_then(|id| u64::try_from(id).ok()),
            interval_ms: device.spec.interval_ms,
            timeout_ms: device.spec.timeout_ms,
            down_after: u32::from(device.spec.down_after),
            up_after: u32::from(device.spec.up_after),
            tags: device.spec.tags.clone(),
            enabled: device.spec.enabled,
            severity: to_proto_severity(device.spec.severity).into(),
        }),
        status: state(device.status).into(),
        down_since_unix_ms: device.down_since_ms,
        last_change_unix_ms: device.status_changed_at_ms,
        last_rtt_us: device.last_rtt_us,
        agent: device.agent.clone().unwrap_or_default(),
    }
}

/// A proto spec with the documented defaults for zero fields.
fn from_proto(spec: Option<pb::DeviceSpec>) -> Result<DeviceSpec, GrpcStatus> {
    let spec = spec.ok_or_else(|| GrpcStatus::invalid_argument("spec: required"))?;
    let address = spec.address.parse().map_err(|_| {
        GrpcStatus::invalid_argument(format!(
            "address: `{}` is not an IPv4 or IPv6 address",
            spec.address
        ))
    })?;
    let or = |value: u32, default: u32| if value == 0 { default } else { value };
    let threshold = |field: &str, value: u32, default: u8| {
        if value == 0 {
            Ok(default)
        } else {
            u8::try_from(value).map_err(|_| {
                GrpcStatus::invalid_argument(format!("{field}: must be between 1 and 100"))
            })
        }
    };
    Ok(DeviceSpec {
        name: spec.name,
        address,
        site: spec.site,
        parent_id: spec
            .parent_id
            .map(|id| i64::try_from(id).unwrap_or(i64::MAX)),
        interval_ms: or(spec.interval_ms, 1000),
        timeout_ms: or(
            spec.timeout_ms,
            DeviceSpec::default_timeout_ms(or(spec.interval_ms, 1000)),
        ),
        down_after: threshold("down_after", spec.down_after, 3)?,
        up_after: threshold("up_after", spec.up_after, 2)?,
        tags: spec.tags,
        enabled: spec.enabled,
        severity: from_proto_severity(spec.severity)?.unwrap_or_default(),
    })
}

fn to_proto_severity(severity: Severity) -> pb::Severity {
    match severity {
        Severity::Critical => pb::Severity::Critical,
        Severity::Major => pb::Severity::Major,
        Severity::Minor => pb::Severity::Minor,
        Severity::Info => pb::Severity::Info,
    }
}

/// A proto severity; `None` for UNSPECIFIED (any, or the default).
fn from_proto_severity(value: i32) -> Result<Option<Severity>, GrpcStatus> {
    match pb::Severity::try_from(value) {
        Ok(pb::Severity::Unspecified) => Ok(None),
        Ok(pb::Severity::Critical) => Ok(Some(Severity::Critical)),
        Ok(pb::Severity::Major) => Ok(Some(Severity::Major)),
        Ok(pb::Severity::Minor) => Ok(Some(Severity::Minor)),
        Ok(pb::Severity::Info) => Ok(Some(Severity::Info)),
        Err(_) => Err(GrpcStatus::invalid_argument(format!(
            "severity: unknown value {value}"
        ))),
    }
}

fn alert_to_proto(alert: &Alert) -> pb::Alert {
    let is_device = alert.alertname == AlertName::DeviceDown;
    pb::Alert {
        id: u64::try_from(alert.id).unwrap_or_default(),
        device_id: alert
            .device_id
            .and_then(|id| u64::try_from(id).ok())
            .unwrap_or_default(),
        device_name: if is_device {
            alert.name.clone()
        } else {
            String::new()
        },
        site: alert.site.clone(),
        alertname: alert.alertname.as_str().to_owned(),
        agent_id: alert.agent_id.clone().unwrap_or_default(),
        resolved_reason: alert.resolved_reason.clone(),
        severity: to_proto_severity(alert.severity).into(),
        state: if alert.resolved_at_ms.is_some() {
            AlertState::Resolved
        } else {
            AlertState::Open
        }
        .into(),
        opened_at_unix_ms: alert.opened_at_ms,
        resolved_at_unix_ms: alert.resolved_at_ms,
        acknowledgement: alert.acknowledged.as_ref().map(|ack| pb::Acknowledgement {
            by: ack.by.clone(),
            at_unix_ms: ack.at_ms,
            comment: ack.comment.clone(),
        }),
    }
}

fn window_to_proto(window: MaintenanceWindow, open: Option<&OpenWindow>) -> pb::MaintenanceWindow {
    let spec = window.spec;
    let recurrence = spec.every.map(|every| {
        let (name, days, day) = match every {
            Every::Daily => ("daily", Vec::new(), 0),
            Every::Weekly { days } => ("weekly", days, 0),
            Every::Monthly { day } => ("monthly", Vec::new(), u32::from(day)),
        };
        pb::Recurrence {
            every: name.to_owned(),
            days: days
                .iter()
                .map(|day| {
                    serde_json::to_value(day)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect(),
            day,
            until_unix_ms: spec.until_ms,
        }
    });
    pb::MaintenanceWindow {
        id: u64::try_from(window.id).unwrap_or_default(),
        spec: Some(pb::MaintenanceSpec {
            name: spec.name,
            starts_at_unix_ms: spec.starts_at_ms,
            ends_at_unix_ms: spec.ends_at_ms,
            time_zone: spec.time_zone,
            recurrence,
            devices: spec
                .devices
                .into_iter()
                .filter_map(|id| u64::try_from(id).ok())
                .collect(),
            sites: spec.sites,
            tags: spec.tags,
            comment: spec.comment,
        }),
        created_by: window.created_by,
        created_at_unix_ms: window.created_at_ms,
        active: open.is_some(),
        current_starts_unix_ms: open.map(|open| open.starts_ms),
        current_ends_unix_ms: open.map(|open| open.ends_ms),
    }
}

/// A proto window spec; a bad field is named.
fn maintenance_from_proto(
    spec: Option<pb::MaintenanceSpec>,
) -> Result<MaintenanceSpec, GrpcStatus> {
    let spec = spec.ok_or_else(|| GrpcStatus::invalid_argument("spec: required"))?;
    let named = |error: ward_domain::maintenance::ScheduleError| {
        GrpcStatus::invalid_argument(format!("{}: {}", error.field, error.message))
    };
    let (every, until_ms) = match spec.recurrence {
        None => (None, None),
        Some(recurrence) => {
            let days = recurrence
                .days
                .iter()
                .map(|day| day.parse::<Day>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(named)?;
            let day = u8::try_from(recurrence.day).unwrap_or(u8::MAX);
            let every = Every::named(
                &recurrence.every,
                Some(days).filter(|days| !days.is_empty()),
                Some(day).filter(|day| *day != 0),
            )
            .map_err(named)?;
            (Some(every), recurrence.until_unix_ms)
        }
    };
    Ok(MaintenanceSpec {
        name: spec.name,
        starts_at_ms: spec.starts_at_unix_ms,
        ends_at_ms: spec.ends_at_unix_ms,
        time_zone: Some(spec.time_zone)
            .filter(|zone| !zone.is_empty())
            .unwrap_or_else(|| "UTC".into()),
        every,
        until_ms,
        devices: spec
            .devices
            .into_iter()
            .map(|id| i64::try_from(id).unwrap_or(i64::MAX))
            .collect(),
        sites: spec.sites,
        tags: spec.tags,
        comment: spec.comment,
    })
}

fn grpc_error(error: StoreError) -> GrpcStatus {
    match error {
        StoreError::Invalid(field) => {
            GrpcStatus::invalid_argument(format!("{}: {}", field.field, field.message))
        }
        StoreError::InvalidEntry {
            index,
            field,
            message,
        } => GrpcStatus::invalid_argument(format!("devices[{index}].{field}: {message}")),
        StoreError::Conflict(message) => GrpcStatus::already_exists(message),
        other => GrpcStatus::unavailable(format!("the status database is not answering: {other}")),
    }
}

/// A filter's text; empty: not given.
fn given(text: &str) -> Option<&str> {
    Some(text).filter(|text| !text.is_empty())
}

fn device_id(id: u64) -> Result<i64, GrpcStatus> {
    i64::try_from(id).map_err(|_| GrpcStatus::invalid_argument(format!("id: {id} is out of range")))
}

type ChangeStream = Pin<Box<dyn Stream<Item = Result<StatusChange, GrpcStatus>> + Send>>;

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, GrpcStatus> {
        self.authorize(&request, "ListDevices", "devices").await?;
        let request = request.into_inner();
        let status = match DeviceState::try_from(request.status) {
            Ok(DeviceState::Unspecified) => None,
            Ok(DeviceState::Up) => Some(Status::Up),
            Ok(DeviceState::Down) => Some(Status::Down),
            Ok(DeviceState::Unreachable) => Some(Status::Unreachable),
            Ok(DeviceState::Unknown) => Some(Status::Unknown),
            Err(_) => {
                return Err(GrpcStatus::invalid_argument(format!(
                    "status: unknown value {}",
                    request.status
                )));
            }
        };
        let devices = self
            .app
            .inventory
            .find_devices(&DeviceFilter {
                status,
                site: given(&request.site),
                query: given(&request.query),
                severity: from_proto_severity(request.severity)?,
                tag: given(&request.tag),
            })
            .await
            .map_err(grpc_error)?;
        let open = self.app.maintenance.open_windows();
        Ok(Response::new(ListDevicesResponse {
            devices: devices
                .iter()
                .map(|device| to_proto(device, &open))
                .collect(),
        }))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, GrpcStatus> {
        let object = format!("device {}", request.get_ref().id);
        self.authorize(&request, "GetDevice", &object).await?;
        let id = device_id(request.into_inner().id)?;
        let device = self
            .app
            .core
            .store
            .get_device(id)
            .await
            .map_err(grpc_error)?;
        device
            .map(|device| Response::new(to_proto(&device, &self.app.maintenance.open_windows())))
            .ok_or_else(|| GrpcStatus::not_found(format!("no device with id {id}")))
    }

    async fn upsert_device(
        &self,
        request: Request<UpsertDeviceRequest>,
    ) -> Result<Response<pb::Device>, GrpcStatus> {
        let object = request
            .get_ref()
            .id
            .map_or_else(|| "a new device".to_owned(), |id| format!("device {id}"));
        let actor = self.authorize(&request, "UpsertDevice", &object).await?;
        let request = request.into_inner();
        let spec = from_proto(request.spec)?;
        let device = match request.id {
            None => self
                .app
                .inventory
                .create_device(&spec, &actor, now_ms())
                .await
                .map_err(grpc_error)?,
            Some(id) => {
                let id = device_id(id)?;
                self.app
                    .inventory
                    .update_device(id, &spec, &actor, now_ms())
                    .await
                    .map_err(grpc_error)?
                    .ok_or_else(|| GrpcStatus::not_found(format!("no device with id {id}")))?
            }
        };
        Ok(Response::new(to_proto(
            &device,
            &self.app.maintenance.open_windows(),
        )))
    }

    async fn sync_devices(
        &self,
        request: Request<pb::SyncDevicesRequest>,
    ) -> Result<Response<pb::SyncDevicesResponse>, GrpcStatus> {
        let actor = self
            .authorize(&request, "SyncDevices", "the inventory")
            .await?;
        let request = request.into_inner();
        let specs = request
            .devices
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                from_proto(Some(spec)).map_err(|status| {
                    GrpcStatus::invalid_argument(format!("devices[{index}].{}", status.message()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mode = SyncMode {
            delete_missing: request.delete_missing,
            dry_run: request.dry_run,
        };
        let diff = self
            .app
            .inventory
            .sync_devices(&specs, mode, &actor, now_ms())
            .await
            .map_err(grpc_error)?;
        let synced = |devices: Vec<SyncedDevice>| -> Vec<pb::SyncedDevice> {
            devices
                .into_iter()
                .map(|device| pb::SyncedDevice {
                    id: device
                        .id
                        .and_then(|id| u64::try_from(id).ok())
                        .unwrap_or_default(),
                    name: device.name,
                    site: device.site,
                    changed: device
                        .changed
                        .iter()
                        .map(|&field| field.to_owned())
                        .collect(),
                })
                .collect()
        };
        Ok(Response::new(pb::SyncDevicesResponse {
            dry_run: mode.dry_run,
            created: synced(diff.created),
            updated: synced(diff.updated),
            deleted: synced(diff.deleted),
            unchanged: synced(diff.unchanged),
        }))
    }

    async fn get_availability(
        &self,
        request: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::GetAvailabilityResponse>, GrpcStatus> {
        use ward_domain::availability::{By, ReportFilter, RowKey};
        self.authorize(&request, "GetAvailability", "availability")
            .await?;
        let request = request.into_inner();
        let to = Some(request.to_unix_ms)
            .filter(|ms| *ms != 0)
            .unwrap_or_else(now_ms);
        let from = Some(request.from_unix_ms)
            .filter(|ms| *ms != 0)
            .unwrap_or(to - ward_domain::availability::DEFAULT_RANGE_MS);
        if to <= from {
            return Err(GrpcStatus::invalid_argument(
                "to_unix_ms: must be after from_unix_ms",
            ));
        }
        let by = match request.by.as_str() {
            "" | "device" => By::Device,
            "site" => By::Site,
            "tag" => By::Tag,
            other => {
                return Err(GrpcStatus::invalid_argument(format!(
                    "by: `{other}`: use device, site or tag"
                )));
            }
        };
        let filter = ReportFilter {
            site: given(&request.site).map(str::to_owned),
            tag: given(&request.tag).map(str::to_owned),
            device: i64::try_from(request.device_id).ok().filter(|id| *id != 0),
        };
        let rows = self
            .app
            .maintenance
            .availability((from, to), by, &filter)
            .await
            .map_err(grpc_error)?
            .into_iter()
            .map(|(key, totals)| {
                let seconds = |ms: i64| ms as f64 / 1000.0;
                let mut row = pb::AvailabilityRow {
                    up_s: seconds(totals.up_ms),
                    down_s: seconds(totals.down_ms),
                    unreachable_s: seconds(totals.unreachable_ms),
                    unknown_s: seconds(totals.unknown_ms),
                    maintenance_s: seconds(totals.maintenance_ms),
                    outages: totals.outages,
                    mttr_s: totals.mttr_ms().map(|ms| ms / 1000.0),
                    longest_outage_s: seconds(totals.longest_outage_ms),
                    availability: totals.availability(),
                    ..Default::default()
                };
                match key {
                    RowKey::Device { site, name, id } => {
                        row.device_id = u64::try_from(id).unwrap_or_default();
                        row.device_name = name;
                        row.site = site;
                    }
                    RowKey::Site(site) => row.site = site,
                    RowKey::Tag(tag) => row.tag = tag,
                }
                row
            })
            .collect();
        Ok(Response::new(pb::GetAvailabilityResponse { rows }))
    }

    async fn list_maintenance(
        &self,
        request: Request<pb::ListMaintenanceRequest>,
    ) -> Result<Response<pb::ListMaintenanceResponse>, GrpcStatus> {
        self.authorize(&request, "ListMaintenance", "maintenance")
            .await?;
        let active_only = request.into_inner().active_only;
        let windows = self
            .app
            .core
            .store
            .maintenance_windows()
            .await
            .map_err(grpc_error)?;
        let open = ward_domain::maintenance::open_at(windows.clone(), now_ms());
        let windows = windows
            .into_iter()
            .map(|window| {
                let current = open.iter().find(|open| open.window.id == window.id);
                window_to_proto(window.clone(), current)
            })
            .filter(|window| !active_only || window.active)
            .collect();
        Ok(Response::new(pb::ListMaintenanceResponse { windows }))
    }

    async fn upsert_maintenance(
        &self,
        request: Request<pb::UpsertMaintenanceRequest>,
    ) -> Result<Response<pb::MaintenanceWindow>, GrpcStatus> {
        let object = request.get_ref().id.map_or_else(
            || "a new maintenance window".to_owned(),
            |id| format!("maintenance {id}"),
        );
        let actor = self
            .authorize(&request, "UpsertMaintenance", &object)
            .await?;
        let request = request.into_inner();
        let spec = maintenance_from_proto(request.spec)?;
        let id = request.id.map(device_id).transpose()?;
        let window = self
            .app
            .maintenance
            .change_maintenance(id, Some(spec), &actor)
            .await
            .map_err(grpc_error)?
            .ok_or_else(|| GrpcStatus::not_found(format!("no {object}")))?;
        let open = ward_domain::maintenance::open_at(vec![window.clone()], now_ms());
        Ok(Response::new(window_to_proto(window, open.first())))
    }

    async fn delete_maintenance(
        &self,
        request: Request<pb::DeleteMaintenanceRequest>,
    ) -> Result<Response<pb::DeleteMaintenanceResponse>, GrpcStatus> {
        let object = format!("maintenance {}", request.get_ref().id);
        let actor = self
            .authorize(&request, "DeleteMaintenance", &object)
            .await?;
        let id = device_id(request.into_inner().id)?;
        self.app
            .maintenance
            .change_maintenance(Some(id), None, &actor)
            .await
            .map_err(grpc_error)?
            .ok_or_else(|| GrpcStatus::not_found(format!("no {object}")))?;
        Ok(Response::new(pb::DeleteMaintenanceResponse {}))
    }

    async fn delete_device(
        &self,
        request: Request<DeleteDeviceRequest>,
    ) -> Result<Response<DeleteDeviceResponse>, GrpcStatus> {
        let object = format!("device {}", request.get_ref().id);
        let actor = self.authorize(&request, "DeleteDevice", &object).await?;
        let id = device_id(request.into_inner().id)?;
        if self
            .app
            .inventory
            .delete_device(id, &actor, now_ms())
            .await
            .map_err(grpc_error)?
        {
            Ok(Response::new(DeleteDeviceResponse {}))
        } else {
            Err(GrpcStatus::not_found(format!("no device with id {id}")))
        }
    }

    async fn list_alerts(
        &self,
        request: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, GrpcStatus> {
        self.authorize(&request, "ListAlerts", "alerts").await?;
        let request = request.into_inner();
        let wanted = AlertState::try_from(request.state).unwrap_or(AlertState::Unspecified);
        let open_only = wanted == AlertState::Open;
        let severity = from_proto_severity(request.severity)?;
        let alerts = self
            .app
            .core
            .store
            .alerts(open_only)
            .await
            .map_err(grpc_error)?;
        let alerts = alerts
            .into_iter()
            .filter(|alert| wanted != AlertState::Resolved || alert.resolved_at_ms.is_some())
            .filter(|alert| severity.is_none_or(|wanted| alert.severity == wanted))
            .filter(|alert| request.tag.is_empty() || alert.tags.contains(&request.tag))
            .map(|alert| alert_to_proto(&alert))
            .collect();
        Ok(Response::new(ListAlertsResponse { alerts }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::Alert>, GrpcStatus> {
        let object = format!("alert {}", request.get_ref().id);
        let actor = self
            .authorize(&request, "AcknowledgeAlert", &object)
            .await?;
        let request = request.into_inner();
        if request.comment.chars().count() > MAX_ACK_COMMENT {
            return Err(GrpcStatus::invalid_argument(format!(
                "comment: at most {MAX_ACK_COMMENT} characters"
            )));
        }
        self.acknowledged(request.id, Some(&request.comment), &actor)
            .await
    }

    async fn unacknowledge_alert(
        &self,
        request: Request<pb::UnacknowledgeAlertRequest>,
    ) -> Result<Response<pb::Alert>, GrpcStatus> {
        let object = format!("alert {}", request.get_ref().id);
        let actor = self
            .authorize(&request, "UnacknowledgeAlert", &object)
            .await?;
        self.acknowledged(request.into_inner().id, None, &actor)
            .await
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, GrpcStatus> {
        self.authorize(&request, "ListAgents", "agents").await?;
        let agents = self
            .app
            .presence
            .agents_with_devices()
            .await
            .map_err(grpc_error)?
            .into_iter()
            .map(|(agent, presence)| pb::Agent {
                id: agent.id,
                site: agent.site,
                connected: presence.connected,
                last_heartbeat_unix_ms: presence.last_heartbeat_ms,
                version: presence.version,
                counters: Some(presence.counters),
                devices: presence.devices,
            })
            .collect();
        Ok(Response::new(ListAgentsResponse { agents }))
    }

    async fn get_summary(
        &self,
        request: Request<GetSummaryRequest>,
    ) -> Result<Response<pb::Summary>, GrpcStatus> {
        self.authorize(&request, "GetSummary", "summary").await?;
        let summary = self.app.inventory.summary().await.map_err(grpc_error)?;
        Ok(Response::new(pb::Summary {
            up: summary.up,
            down: summary.down,
            unreachable: summary.unreachable,
            unknown: summary.unknown,
            total: summary.total,
            in_maintenance: summary.in_maintenance,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, GrpcStatus> {
        self.authorize(&request, "ListAudit", "audit log").await?;
        let request = request.into_inner();
        let given = |text: String| Some(text).filter(|text| !text.is_empty());
        let filter = AuditFilter {
            principal: given(request.principal),
            object: given(request.object),
            since_ms: Some(request.since_unix_ms).filter(|ms| *ms != 0),
            until_ms: Some(request.until_unix_ms).filter(|ms| *ms != 0),
            limit: crate::access::audit_limit(Some(request.limit).filter(|limit| *limit != 0)),
        };
        let entries = self
            .app
            .core
            .store
            .audit(&filter)
            .await
            .map_err(|error| grpc_error(self.app.core.store_failed(error)))?
            .into_iter()
            .map(|entry| pb::AuditEntry {
                id: u64::try_from(entry.id).unwrap_or_default(),
                at_unix_ms: entry.at_ms,
                principal: entry.principal,
                source: entry.source,
                action: entry.action,
                object: entry.object,
                outcome: entry.outcome,
                before_json: entry.before.unwrap_or_default(),
                after_json: entry.after.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListAuditResponse { entries }))
    }

    async fn list_history(
        &self,
        request: Request<pb::ListHistoryRequest>,
    ) -> Result<Response<pb::ListHistoryResponse>, GrpcStatus> {
        self.authorize(&request, "ListHistory", "history").await?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => HISTORY_DEFAULT_LIMIT,
            limit => limit.min(HISTORY_MAX_LIMIT),
        };
        let after = Some(request.cursor)
            .filter(|cursor| !cursor.is_empty())
            .map(|cursor| cursor.parse::<HistoryCursor>())
            .transpose()
            .map_err(|error| GrpcStatus::invalid_argument(format!("cursor: {error}")))?;
        let filter = HistoryFilter {
            device: i64::try_from(request.device_id).ok().filter(|id| *id != 0),
            site: Some(request.site).filter(|site| !site.is_empty()),
            from_ms: Some(request.from_unix_ms).filter(|ms| *ms != 0),
            to_ms: Some(request.to_unix_ms).filter(|ms| *ms != 0),
            after,
            limit,
        };
        let page = self
            .app
            .core
            .store
            .history(&filter)
            .await
            .map_err(|error| grpc_error(self.app.core.store_failed(error)))?;
        let next_cursor = page
            .next
            .map(|cursor| cursor.to_string())
            .unwrap_or_default();
        let changes = page
            .changes
            .into_iter()
            .map(|entry| pb::HistoryChange {
                id: u64::try_from(entry.id).unwrap_or_default(),
                device_id: u64::try_from(entry.device_id).unwrap_or_default(),
                device_name: entry.device_name,
                site: entry.site,
                from: state(entry.from).into(),
                to: state(entry.to).into(),
                at_unix_ms: entry.at_ms,
                reason: entry.reason,
                agent: entry.agent,
            })
            .collect();
        Ok(Response::new(pb::ListHistoryResponse {
            changes,
            next_cursor,
        }))
    }

    type WatchStatusStream = ChangeStream;

    async fn watch_status(
        &self,
        request: Request<WatchStatusRequest>,
    ) -> Result<Response<ChangeStream>, GrpcStatus> {
        self.authorize(&request, "WatchStatus", "status changes")
            .await?;
        let app = self.app.clone();
        let changes = BroadcastStream::new(self.app.core.live.subscribe()).map(move |change| match change {
            Ok(LiveEvent::Status(change)) => Ok(StatusChange {
                device: Some(to_proto(&change.device, &app.maintenance.open_windows())),
                previous: state(change.previous).into(),
            }),
            Ok(LiveEvent::Resync) => Err(GrpcStatus::aborted(
                "changes were committed that this watcher could not be sent: list the devices again and watch anew",
            )),
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                app.core.metrics.event_subscribers_lagged.fetch_add(1, Ordering::Relaxed);
                Err(GrpcStatus::aborted(format!(
                    "this watcher fell {missed} changes behind: list the devices again and watch anew"
                )))
            }
        });
        Ok(Response::new(Box::pin(
            futures_util::StreamExt::take_until(changes, self.app.core.live.stopped()),
        )))
    }
}
