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
    self as pb, AlertState, DeleteDeviceRequest, DeleteDeviceResponse, GetDeviceRequest,
    GetSummaryRequest, ListAgentsRequest, ListAgentsResponse, ListAlertsRequest,
    ListAlertsResponse, ListDevicesRequest, ListDevicesResponse, StatusChange, UpsertDeviceRequest,
    WatchStatusRequest,
};

use super::convert::{
    alert_to_proto, device_id, from_proto, from_proto_severity, given, grpc_error,
    maintenance_from_proto, page_request, state, status_filter, to_proto, window_to_proto,
};
use crate::services::{App, DEVICE_PAGE_MAX, DeviceFilter, LiveEvent, UNPAGED_MAX};
use crate::store::{
    AckOutcome, Actor, AuditFilter, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, HistoryCursor,
    HistoryFilter, MAX_ACK_COMMENT, SyncMode, SyncedDevice,
};
use crate::time::now_ms;

/// The service.
pub struct InventoryService {
    pub(super) app: App,
}

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
        let filter = DeviceFilter {
            status: status_filter(request.status)?,
            site: given(&request.site),
            query: given(&request.query),
            severity: from_proto_severity(request.severity)?,
            tag: given(&request.tag),
            parent: None,
        };
        let inventory = &self.app.inventory;
        let (devices, next) = if request.page_size == 0 && request.page_token.is_empty() {
            let devices = inventory.find_devices(&filter).await.map_err(grpc_error)?;
            if devices.len() > UNPAGED_MAX {
                return Err(GrpcStatus::invalid_argument(format!(
                    "page_size: {} devices match, more than {UNPAGED_MAX} in one answer: \
                     page them (page_size at most {DEVICE_PAGE_MAX}, then next_page_token), or filter",
                    devices.len()
                )));
            }
            (devices, None)
        } else {
            let (limit, after) = page_request(request.page_size, &request.page_token)?;
            inventory
                .find_devices_page(&filter, after.as_ref(), limit)
                .await
                .map_err(grpc_error)?
        };
        let open = self.app.maintenance.open_windows();
        Ok(Response::new(ListDevicesResponse {
            devices: devices
                .iter()
                .map(|device| to_proto(device, &open))
                .collect(),
            next_page_token: next.map(|cursor| cursor.to_string()).unwrap_or_default(),
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
                    degraded_s: seconds(totals.degraded_ms),
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

    async fn list_profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, GrpcStatus> {
        self.profiles(request).await
    }

    async fn upsert_profile(
        &self,
        request: Request<pb::UpsertProfileRequest>,
    ) -> Result<Response<pb::Profile>, GrpcStatus> {
        self.put_profile(request).await
    }

    async fn delete_profile(
        &self,
        request: Request<pb::DeleteProfileRequest>,
    ) -> Result<Response<pb::DeleteProfileResponse>, GrpcStatus> {
        self.remove_profile(request).await
    }

    async fn list_sites(
        &self,
        request: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, GrpcStatus> {
        self.sites(request).await
    }

    async fn set_site_profile(
        &self,
        request: Request<pb::SetSiteProfileRequest>,
    ) -> Result<Response<pb::Site>, GrpcStatus> {
        self.put_site_profile(request).await
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
            degraded: summary.degraded,
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
            .map_err(grpc_error)?
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
            .map_err(grpc_error)?;
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
