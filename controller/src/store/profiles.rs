//! Threshold profiles as stored: created, replaced and deleted by an admin
//! (audited), and the default profile of each site. A profile in use (by a
//! device or as a site's default) is never deleted. Each change's
//! transaction also moves the data version on and announces the inventory
//! (`operations::thresholds_changed`, run by the facade), so each agent
//! link sends its devices' new thresholds
//! ([`ward_domain::quality::ProfileBook`] says which apply).

use super::FieldError;
use super::StoreError;
use super::args::Arg;
use super::principals::{Actor, Change, audit_change, json};
use super::rows::Columns;
use super::tx::{Query, WriteTx};
use ward_domain::quality::{Profile, ProfileBook, Thresholds};

/// A stored profile with who made it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredProfile {
    /// The profile.
    pub profile: Profile,
    /// Devices whose own profile it is.
    pub devices: u64,
    /// Sites whose default it is.
    pub sites: Vec<String>,
    /// Who created it.
    pub created_by: String,
    /// When, Unix ms.
    pub created_at_ms: i64,
}

/// A site and its default profile, with how many devices it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The site's name.
    pub name: String,
    /// Its devices' profile when they have none of their own.
    pub profile: Option<String>,
    /// How many devices it has.
    pub devices: u64,
}

fn thresholds(text: &str) -> Result<Thresholds, StoreError> {
    serde_json::from_str(text)
        .map_err(|error| StoreError::Corrupt(format!("profiles.thresholds `{text}`: {error}")))
}

fn count(row: &dyn Columns, at: usize) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.int(at)?).unwrap_or_default())
}

/// Every profile (`name` given: that one), by name.
pub(super) async fn list<T: Query>(
    tx: &T,
    name: Option<&str>,
) -> Result<Vec<StoredProfile>, StoreError> {
    let mut profiles = tx
        .rows(
            "SELECT p.name, p.thresholds, p.created_by, p.created_at_ms, \
             (SELECT COUNT(*) FROM devices d WHERE d.profile = p.name) \
             FROM profiles p WHERE CAST($1 AS TEXT) = '' OR p.name = $1 ORDER BY p.name",
            &[Arg::Text(name.unwrap_or_default())],
            |row| {
                Ok(StoredProfile {
                    profile: Profile {
                        name: row.text(0)?,
                        thresholds: thresholds(&row.text(1)?)?,
                    },
                    created_by: row.text(2)?,
                    created_at_ms: row.int(3)?,
                    devices: count(row, 4)?,
                    sites: Vec::new(),
                })
            },
        )
        .await?;
    for site in sites(tx).await? {
        if let Some(profile) = profiles
            .iter_mut()
            .find(|stored| Some(&stored.profile.name) == site.profile.as_ref())
        {
            profile.sites.push(site.name);
        }
    }
    Ok(profiles)
}

/// Every site, by name.
pub(super) async fn sites<T: Query>(tx: &T) -> Result<Vec<Site>, StoreError> {
    tx.rows(
        "SELECT s.name, s.profile, (SELECT COUNT(*) FROM devices d WHERE d.site = s.name) \
         FROM sites s ORDER BY s.name",
        &[],
        |row| {
            Ok(Site {
                name: row.text(0)?,
                profile: row.opt_text(1)?,
                devices: count(row, 2)?,
            })
        },
    )
    .await
}

/// What decides each device's thresholds: every profile and each site's
/// default.
pub(super) async fn book<T: Query>(tx: &T) -> Result<ProfileBook, StoreError> {
    let profiles = tx
        .rows("SELECT name, thresholds FROM profiles", &[], |row| {
            Ok((row.text(0)?, thresholds(&row.text(1)?)?))
        })
        .await?;
    let site_defaults = tx
        .rows(
            "SELECT name, profile FROM sites WHERE profile IS NOT NULL",
            &[],
            |row| Ok((row.text(0)?, row.text(1)?)),
        )
        .await?;
    Ok(ProfileBook {
        profiles: profiles.into_iter().collect(),
        site_defaults: site_defaults.into_iter().collect(),
    })
}

/// Refuses `name` (given as `field`) unless it is a profile.
pub(super) async fn must_exist<T: Query + ?Sized>(
    tx: &T,
    field: &'static str,
    name: &str,
) -> Result<(), StoreError> {
    let found = tx
        .rows(
            "SELECT 1 FROM profiles WHERE name = $1",
            &[Arg::Text(name)],
            |_| Ok(()),
        )
        .await?;
    if found.is_empty() {
        return Err(StoreError::Invalid(FieldError {
            field,
            message: format!("no profile named `{name}`: create it first (POST /api/v1/profiles)"),
        }));
    }
    Ok(())
}

/// Creates a profile; audited. A name in use is a conflict.
pub(super) async fn create<T: WriteTx>(
    tx: &T,
    profile: &Profile,
    actor: &Actor,
    now_ms: i64,
) -> Result<StoredProfile, StoreError> {
    if !list(tx, Some(&profile.name)).await?.is_empty() {
        return Err(StoreError::Conflict {
            field: "name".into(),
            message: format!("a profile named `{}` exists", profile.name),
        });
    }
    tx.run(
        "INSERT INTO profiles (name, thresholds, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4)",
        &[
            Arg::Text(&profile.name),
            Arg::Text(&json(&profile.thresholds)),
            Arg::Text(&actor.principal),
            Arg::Int(now_ms),
        ],
    )
    .await?;
    let change = Change {
        action: "profile.create",
        object: format!("profile {}", profile.name),
        before: None,
        after: Some(json(profile)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(StoredProfile {
        profile: profile.clone(),
        devices: 0,
        sites: Vec::new(),
        created_by: actor.principal.clone(),
        created_at_ms: now_ms,
    })
}

/// Replaces profile `name`'s thresholds (`Some`) or deletes it (`None`;
/// refused while a device or site uses it, naming how many); audited.
/// `None` if there is no such profile; else the profile after (or,
/// deleted, before) the change.
pub(super) async fn change<T: WriteTx>(
    tx: &T,
    name: &str,
    thresholds: Option<&Thresholds>,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<StoredProfile>, StoreError> {
    let Some(before) = list(tx, Some(name)).await?.pop() else {
        return Ok(None);
    };
    let after = match thresholds {
        Some(thresholds) => {
            tx.run(
                "UPDATE profiles SET thresholds = $1 WHERE name = $2",
                &[Arg::Text(&json(thresholds)), Arg::Text(name)],
            )
            .await?;
            Some(StoredProfile {
                profile: Profile {
                    name: name.to_owned(),
                    thresholds: *thresholds,
                },
                ..before.clone()
            })
        }
        None => {
            if before.devices > 0 || !before.sites.is_empty() {
                return Err(StoreError::Conflict {
                    field: "name".into(),
                    message: format!(
                        "profile `{name}` is in use by {} devices and {} sites: give them \
                         another profile (or none) first",
                        before.devices,
                        before.sites.len()
                    ),
                });
            }
            tx.run("DELETE FROM profiles WHERE name = $1", &[Arg::Text(name)])
                .await?;
            None
        }
    };
    let change = Change {
        action: if thresholds.is_some() {
            "profile.update"
        } else {
            "profile.delete"
        },
        object: format!("profile {name}"),
        before: Some(json(&before.profile)),
        after: after.as_ref().map(|stored| json(&stored.profile)),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(Some(after.unwrap_or(before)))
}

/// Sets site `name`'s default profile (`None`: the controller's
/// `[degraded]` table); audited. `None` if there is no such site.
pub(super) async fn set_site_profile<T: WriteTx>(
    tx: &T,
    name: &str,
    profile: Option<&str>,
    actor: &Actor,
    now_ms: i64,
) -> Result<Option<Site>, StoreError> {
    if let Some(profile) = profile {
        must_exist(tx, "profile", profile).await?;
    }
    let Some(before) = sites(tx).await?.into_iter().find(|site| site.name == name) else {
        return Ok(None);
    };
    tx.run(
        "UPDATE sites SET profile = $1 WHERE name = $2",
        &[Arg::OptText(profile), Arg::Text(name)],
    )
    .await?;
    let change = Change {
        action: "site.update",
        object: format!("site {name}"),
        before: Some(json(&serde_json::json!({ "profile": before.profile }))),
        after: Some(json(&serde_json::json!({ "profile": profile }))),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(Some(Site {
        profile: profile.map(str::to_owned),
        ..before
    }))
}
