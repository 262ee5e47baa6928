//! The `ward.v1.Inventory` methods for threshold profiles and sites'
//! default profiles (REST: `/api/v1/profiles`, `/api/v1/sites`), over the
//! same store operations.

use tonic::{Request, Response, Status as GrpcStatus};
use ward_proto::v1 as pb;

use super::convert::{given, grpc_error, quality, quality_from_proto};
use super::inventory::InventoryService;
use crate::store::{Site, StoreError, StoredProfile};
use crate::time::now_ms;
use ward_domain::quality::Profile;

fn profile_to_proto(stored: StoredProfile) -> pb::Profile {
    pb::Profile {
        thresholds: Some(quality(&stored.profile.thresholds)),
        name: stored.profile.name,
        devices: stored.devices,
        sites: stored.sites,
    }
}

fn site_to_proto(site: Site) -> pb::Site {
    pb::Site {
        name: site.name,
        profile: site.profile.unwrap_or_default(),
        devices: site.devices,
    }
}

impl InventoryService {
    pub(super) async fn profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, GrpcStatus> {
        self.authorize(&request, "ListProfiles", "profiles").await?;
        let profiles = self.app.core.store.profiles().await.map_err(grpc_error)?;
        Ok(Response::new(pb::ListProfilesResponse {
            profiles: profiles.into_iter().map(profile_to_proto).collect(),
        }))
    }

    pub(super) async fn put_profile(
        &self,
        request: Request<pb::UpsertProfileRequest>,
    ) -> Result<Response<pb::Profile>, GrpcStatus> {
        let object = format!("profile {}", request.get_ref().name);
        let actor = self.authorize(&request, "UpsertProfile", &object).await?;
        let request = request.into_inner();
        let profile = Profile {
            name: request.name,
            thresholds: quality_from_proto(request.thresholds)?,
        };
        let stored = self
            .app
            .inventory
            .change_profiles(move |core| async move {
                let now = now_ms();
                match core
                    .store
                    .change_profile(&profile.name, Some(&profile.thresholds), &actor, now)
                    .await?
                {
                    Some(stored) => Ok(stored),
                    None => core.store.create_profile(&profile, &actor, now).await,
                }
            })
            .await
            .map_err(grpc_error)?;
        Ok(Response::new(profile_to_proto(stored)))
    }

    pub(super) async fn remove_profile(
        &self,
        request: Request<pb::DeleteProfileRequest>,
    ) -> Result<Response<pb::DeleteProfileResponse>, GrpcStatus> {
        let object = format!("profile {}", request.get_ref().name);
        let actor = self.authorize(&request, "DeleteProfile", &object).await?;
        let name = request.into_inner().name;
        self.app
            .inventory
            .change_profiles(move |core| async move {
                core.store
                    .change_profile(&name, None, &actor, now_ms())
                    .await
            })
            .await
            .map_err(|error| match error {
                StoreError::Conflict { message, .. } => GrpcStatus::failed_precondition(message),
                other => grpc_error(other),
            })?
            .ok_or_else(|| GrpcStatus::not_found(format!("no {object}")))?;
        Ok(Response::new(pb::DeleteProfileResponse {}))
    }

    pub(super) async fn sites(
        &self,
        request: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, GrpcStatus> {
        self.authorize(&request, "ListSites", "sites").await?;
        let sites = self.app.core.store.sites().await.map_err(grpc_error)?;
        Ok(Response::new(pb::ListSitesResponse {
            sites: sites.into_iter().map(site_to_proto).collect(),
        }))
    }

    pub(super) async fn put_site_profile(
        &self,
        request: Request<pb::SetSiteProfileRequest>,
    ) -> Result<Response<pb::Site>, GrpcStatus> {
        let object = format!("site {}", request.get_ref().site);
        let actor = self.authorize(&request, "SetSiteProfile", &object).await?;
        let request = request.into_inner();
        let profile = given(&request.profile).map(str::to_owned);
        let site = self
            .app
            .inventory
            .change_profiles(move |core| async move {
                core.store
                    .set_site_profile(&request.site, profile.as_deref(), &actor, now_ms())
                    .await
            })
            .await
            .map_err(grpc_error)?
            .ok_or_else(|| GrpcStatus::not_found(format!("no {object}")))?;
        Ok(Response::new(site_to_proto(site)))
    }
}
