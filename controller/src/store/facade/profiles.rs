//! Threshold profiles and sites' default profiles ([`super::profiles`]).

use super::super::{Actor, Site, Store, StoreError, StoredProfile, operations, profiles};
use ward_domain::quality::{Profile, ProfileBook, Thresholds};

impl Store {
    /// Every profile with what uses it, by name.
    pub async fn profiles(&self) -> Result<Vec<StoredProfile>, StoreError> {
        on_connection!(self, |tx| profiles::list(tx, None))
    }
    /// Profile `name`.
    pub async fn profile(&self, name: &str) -> Result<Option<StoredProfile>, StoreError> {
        let name = name.to_owned();
        Ok(on_connection!(self, |tx| profiles::list(tx, Some(&name)))?.pop())
    }
    /// Every profile's thresholds and each site's default.
    pub async fn profile_book(&self) -> Result<ProfileBook, StoreError> {
        on_connection!(self, |tx| profiles::book(tx))
    }
    /// Creates a profile (checked first); audited.
    pub async fn create_profile(
        &self,
        profile: &Profile,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<StoredProfile, StoreError> {
        profile.validate()?;
        let (profile, actor) = (profile.clone(), actor.clone());
        transaction!(self, |tx| async {
            let stored = profiles::create(tx, &profile, &actor, now_ms).await?;
            operations::thresholds_changed(tx).await?;
            Ok(stored)
        })
    }
    /// Replaces profile `name`'s thresholds (`Some`, checked first) or
    /// deletes it (`None`, refused while in use); audited. `None` if
    /// there is no such profile.
    pub async fn change_profile(
        &self,
        name: &str,
        thresholds: Option<&Thresholds>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<StoredProfile>, StoreError> {
        if let Some(thresholds) = thresholds {
            thresholds.validate()?;
        }
        let (name, thresholds, actor) = (name.to_owned(), thresholds.copied(), actor.clone());
        transaction!(self, |tx| async {
            let changed = profiles::change(tx, &name, thresholds.as_ref(), &actor, now_ms).await?;
            operations::thresholds_changed(tx).await?;
            Ok(changed)
        })
    }
    /// Every site with its default profile, by name.
    pub async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        on_connection!(self, |tx| profiles::sites(tx))
    }
    /// Sets site `name`'s default profile; audited. `None` if there is no
    /// such site.
    pub async fn set_site_profile(
        &self,
        name: &str,
        profile: Option<&str>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<Site>, StoreError> {
        if let Some(profile) = profile {
            ward_domain::quality::check_profile_name("profile", profile)?;
        }
        let (name, profile, actor) = (name.to_owned(), profile.map(str::to_owned), actor.clone());
        transaction!(self, |tx| async {
            let site =
                profiles::set_site_profile(tx, &name, profile.as_deref(), &actor, now_ms).await?;
            operations::thresholds_changed(tx).await?;
            Ok(site)
        })
    }
}
