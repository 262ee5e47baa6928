//! Agents' client certificates: each one presented is kept (once) with
//! its agent, a revocation is audited, and the count of revocations tells
//! the agent links to look again.

use super::args::Arg;
use super::principals::{Actor, Change, audit_change, json};
use super::tx::{Query, WriteTx};
use super::{FieldError, StoreError};

/// Keeps certificate `fingerprint` as agent `agent_id`'s (once).
async fn keep_certificate(
    tx: &impl WriteTx,
    fingerprint: &str,
    agent_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.run(
        "INSERT INTO agent_certificates (fingerprint, agent_id, first_seen_ms) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[
            Arg::Text(fingerprint),
            Arg::Text(agent_id),
            Arg::Int(now_ms),
        ],
    )
    .await?;
    Ok(())
}

/// Notes that agent `agent_id` presented the certificate `fingerprint`;
/// returns when it was revoked, if it was.
pub(super) async fn certificate_presented(
    tx: &impl WriteTx,
    fingerprint: &str,
    agent_id: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    keep_certificate(tx, fingerprint, agent_id, now_ms).await?;
    let revoked = tx
        .rows(
            "SELECT revoked_at_ms FROM agent_certificates WHERE fingerprint = $1",
            &[Arg::Text(fingerprint)],
            |row| row.opt_int(0),
        )
        .await?;
    Ok(revoked.into_iter().flatten().next())
}

/// Revokes every certificate agent `agent_id` presented, and `also` (the
/// fingerprints of certificates it may not have presented yet); returns how
/// many were revoked now. An agent none of whose certificates is known is
/// an error naming what to pass.
pub(super) async fn revoke_agent(
    tx: &impl WriteTx,
    agent_id: &str,
    also: &[String],
    actor: &Actor,
    now_ms: i64,
) -> Result<u64, StoreError> {
    for fingerprint in also {
        keep_certificate(tx, fingerprint, agent_id, now_ms).await?;
    }
    let known = tx
        .rows(
            "SELECT fingerprint FROM agent_certificates WHERE agent_id = $1 ORDER BY fingerprint",
            &[Arg::Text(agent_id)],
            |row| row.text(0),
        )
        .await?;
    if known.is_empty() {
        return Err(StoreError::Invalid(FieldError {
            field: "certificate",
            message: format!(
                "agent `{agent_id}` never presented a certificate: name its certificate file \
                 (--certificate agent-{agent_id}.pem)"
            ),
        }));
    }
    let revoked = tx
        .run(
            "UPDATE agent_certificates SET revoked_at_ms = $2 \
             WHERE agent_id = $1 AND revoked_at_ms IS NULL",
            &[Arg::Text(agent_id), Arg::Int(now_ms)],
        )
        .await?;
    let change = Change {
        action: "agent.revoke",
        object: format!("agent {agent_id}"),
        before: None,
        after: Some(json(&serde_json::json!({ "revoked_certificates": known }))),
    };
    audit_change(tx, actor, change, now_ms).await?;
    Ok(revoked)
}

/// How many certificates were ever revoked (it only grows): a change means
/// a link may have to end.
pub(super) async fn revocations(tx: &impl Query) -> Result<i64, StoreError> {
    let counted = tx
        .rows(
            "SELECT count(*) FROM agent_certificates WHERE revoked_at_ms IS NOT NULL",
            &[],
            |row| row.int(0),
        )
        .await?;
    Ok(counted.first().copied().unwrap_or(0))
}
