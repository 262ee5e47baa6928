//! What controllers of one database share about themselves: the agents
//! whose links each holds (timed by the database's clock), read by
//! everyone, so no controller takes an agent connected to another for
//! gone; and leases, so a job meant to run once per cluster runs on one
//! controller at a time and moves to another when its holder dies.

use super::StoreError;
use super::args::Arg;
use super::tx::{Query, WriteTx};

/// How often each controller writes the presence of the agents it holds
/// (and its membership heartbeat).
pub const SHARE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// An agent another controller heard within this is shown connected
/// there (three of its shares).
pub const HEARD_RECENTLY: std::time::Duration = std::time::Duration::from_secs(3);

/// An agent as last heard by some controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeardAgent {
    /// The agent.
    pub agent_id: String,
    /// The controller (its instance id) holding its link then.
    pub controller: String,
    /// How long ago, by the database's clock, ms.
    pub age_ms: i64,
}

/// `controller` holds the links of `agents` now.
pub(super) async fn heard<T: WriteTx>(
    tx: &T,
    controller: &str,
    agents: &[String],
) -> Result<(), StoreError> {
    // Online since the first time it was heard after a gap of more than
    // two shares.
    let statement = format!(
        "INSERT INTO agent_presence (agent_id, controller, heard_at_ms, online_since_ms) \
         VALUES ($1, $2, {now}, {now}) \
         ON CONFLICT (agent_id) DO UPDATE SET controller = excluded.controller, \
         heard_at_ms = excluded.heard_at_ms, \
         online_since_ms = CASE WHEN agent_presence.online_since_ms IS NULL \
             OR agent_presence.heard_at_ms < excluded.heard_at_ms - $3 \
             THEN excluded.heard_at_ms ELSE agent_presence.online_since_ms END",
        now = T::NOW_MS
    );
    let gap_ms = 2 * i64::try_from(SHARE_INTERVAL.as_millis()).unwrap_or(0);
    for agent in agents {
        tx.run(
            &statement,
            &[Arg::Text(agent), Arg::Text(controller), Arg::Int(gap_ms)],
        )
        .await?;
    }
    Ok(())
}

/// Every agent ever heard, with how long ago.
pub(super) async fn heard_agents<T: Query>(tx: &T) -> Result<Vec<HeardAgent>, StoreError> {
    tx.rows(
        &format!(
            "SELECT agent_id, controller, {now} - heard_at_ms FROM agent_presence",
            now = T::NOW_MS
        ),
        &[],
        |row| {
            Ok(HeardAgent {
                agent_id: row.text(0)?,
                controller: row.text(1)?,
                age_ms: row.int(2)?,
            })
        },
    )
    .await
}

/// A controller of the cluster, as its membership row says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its instance id.
    pub instance: String,
    /// Its version.
    pub version: String,
    /// When it started, Unix ms (its own clock).
    pub started_at_ms: i64,
    /// How long ago it last heartbeat, by the database's clock, ms.
    pub heard_ago_ms: i64,
    /// The once-per-cluster jobs whose lease it holds now.
    pub jobs: Vec<String>,
}

/// Rows unheard for this long are deleted, ms (a day).
const FORGET_CONTROLLERS_MS: i64 = 86_400_000;

/// `instance` is alive: its membership row heard now.
pub(super) async fn controller_alive<T: WriteTx>(
    tx: &T,
    instance: &str,
    version: &str,
    started_at_ms: i64,
) -> Result<(), StoreError> {
    tx.run(
        &format!(
            "INSERT INTO controllers (instance, version, started_at_ms, heard_at_ms) \
             VALUES ($1, $2, $3, {now}) ON CONFLICT (instance) DO UPDATE SET \
             version = excluded.version, heard_at_ms = excluded.heard_at_ms",
            now = T::NOW_MS
        ),
        &[
            Arg::Text(instance),
            Arg::Text(version),
            Arg::Int(started_at_ms),
        ],
    )
    .await?;
    tx.run(
        &format!(
            "DELETE FROM controllers WHERE heard_at_ms < {now} - $1",
            now = T::NOW_MS
        ),
        &[Arg::Int(FORGET_CONTROLLERS_MS)],
    )
    .await?;
    Ok(())
}

/// Every controller with a membership row, with the jobs it holds.
pub(super) async fn members<T: Query>(tx: &T) -> Result<Vec<Member>, StoreError> {
    let mut members = tx
        .rows(
            &format!(
                "SELECT instance, version, started_at_ms, {now} - heard_at_ms FROM controllers \
                 ORDER BY started_at_ms, instance",
                now = T::NOW_MS
            ),
            &[],
            |row| {
                Ok(Member {
                    instance: row.text(0)?,
                    version: row.text(1)?,
                    started_at_ms: row.int(2)?,
                    heard_ago_ms: row.int(3)?,
                    jobs: Vec::new(),
                })
            },
        )
        .await?;
    let leases = tx
        .rows(
            &format!(
                "SELECT name, holder FROM leases WHERE expires_at_ms > {now} ORDER BY name",
                now = T::NOW_MS
            ),
            &[],
            |row| Ok((row.text(0)?, row.text(1)?)),
        )
        .await?;
    for (job, holder) in leases {
        if let Some(member) = members.iter_mut().find(|m| m.instance == holder) {
            member.jobs.push(job);
        }
    }
    Ok(members)
}

/// Takes or renews lease `name` for `holder` until `ttl_ms` from now (the
/// database's clock); `true` while `holder` holds it. Another holder's
/// lease is taken only once it expired.
pub(super) async fn take_lease<T: WriteTx>(
    tx: &T,
    name: &str,
    holder: &str,
    ttl_ms: i64,
) -> Result<bool, StoreError> {
    let statement = format!(
        "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, {now} + $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
         expires_at_ms = excluded.expires_at_ms \
         WHERE leases.holder = excluded.holder OR leases.expires_at_ms < {now}",
        now = T::NOW_MS
    );
    let taken = tx
        .run(
            &statement,
            &[Arg::Text(name), Arg::Text(holder), Arg::Int(ttl_ms)],
        )
        .await?;
    Ok(taken == 1)
}
