//! Who may call each `ward.v1.Inventory` method: the table, and the check
//! every method makes first (REST's rules: `crate::access`).

use tonic::{Request, Status as GrpcStatus};

use super::inventory::InventoryService;
use crate::access::{self, Access, Refusal};
use crate::auth::{Principal, Role};
use crate::store::Actor;
use crate::time::now_ms;

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
    ("ListProfiles", Access::Read),
    ("UpsertProfile", Access::Role(Role::Admin)),
    ("DeleteProfile", Access::Role(Role::Admin)),
    ("ListSites", Access::Read),
    ("SetSiteProfile", Access::Role(Role::Admin)),
];

impl InventoryService {
    /// Who made `request` (for the audit log) if it may call `method` (on `object`,
    /// as the audit log names it): an API token in `authorization:
    /// Bearer …`, else the client certificate's agent (which may use the
    /// agent link only), else nobody. A refusal is counted, logged and
    /// audited.
    pub(super) async fn authorize<T>(
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
