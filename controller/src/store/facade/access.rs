//! The store's users, API tokens and audit log ([`super::principals`]),
//! and dashboard sessions and login lockouts ([`super::sessions`]).

use super::super::{
    Actor, AuditEntry, AuditFilter, LockoutPolicy, NewSession, SessionRecord, Store, StoreError,
    TokenOwner, TokenRecord, UserRecord, certificates, principals, sessions,
};
use crate::auth::Role;

impl Store {
    /// Creates user `name` with `role` and (unless it logs in through LDAP
    /// or only uses tokens) a password hash; audited as `actor`.
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<UserRecord, StoreError> {
        let (name, hash, actor) = (
            name.to_owned(),
            password_hash.map(str::to_owned),
            actor.clone(),
        );
        transaction!(self, |tx| principals::add_user(
            tx,
            &name,
            role,
            hash.as_deref(),
            &actor,
            now_ms
        ))
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        on_connection!(self, |tx| principals::users(tx))
    }

    /// Enables or disables user `name`; `None` if there is none.
    pub async fn set_user_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let (name, actor) = (name.to_owned(), actor.clone());
        transaction!(self, |tx| principals::set_user_enabled(
            tx, &name, enabled, &actor, now_ms
        ))
    }

    /// Keeps a new token of `user` by its `digest` ([`crate::auth::new_token`]).
    pub async fn create_token(
        &self,
        user: &str,
        label: &str,
        digest: &str,
        expires_at_ms: Option<i64>,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<TokenRecord, StoreError> {
        let (user, label, digest, actor) = (
            user.to_owned(),
            label.to_owned(),
            digest.to_owned(),
            actor.clone(),
        );
        transaction!(self, |tx| principals::create_token(
            tx,
            &user,
            &label,
            &digest,
            expires_at_ms,
            &actor,
            now_ms
        ))
    }

    /// Every token (never a secret), by id.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        on_connection!(self, |tx| principals::tokens(tx))
    }

    /// Revokes token `id`; `None` if there is none.
    pub async fn revoke_token(
        &self,
        id: i64,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let actor = actor.clone();
        transaction!(self, |tx| principals::revoke_token(tx, id, &actor, now_ms))
    }

    /// The token kept by `digest` and its user's role and state.
    pub async fn token_owner(&self, digest: &str) -> Result<Option<TokenOwner>, StoreError> {
        let digest = digest.to_owned();
        on_connection!(self, |tx| principals::token_owner_by_digest(tx, &digest))
    }

    /// Appends `entry` to the audit log (a refusal; changes are audited
    /// in their own transaction).
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        transaction!(self, |tx| principals::record(tx, &entry))
    }

    /// Notes that agent `agent_id` presented the certificate
    /// `fingerprint`; returns when it was revoked, if it was.
    pub async fn certificate_presented(
        &self,
        fingerprint: &str,
        agent_id: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (fingerprint, agent_id) = (fingerprint.to_owned(), agent_id.to_owned());
        transaction!(self, |tx| certificates::certificate_presented(
            tx,
            &fingerprint,
            &agent_id,
            now_ms
        ))
    }

    /// Revokes every certificate agent `agent_id` presented, and the
    /// fingerprints in `also`; returns how many were revoked now.
    pub async fn revoke_agent(
        &self,
        agent_id: &str,
        also: &[String],
        actor: &Actor,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let (agent_id, also, actor) = (agent_id.to_owned(), also.to_vec(), actor.clone());
        transaction!(self, |tx| certificates::revoke_agent(
            tx, &agent_id, &also, &actor, now_ms
        ))
    }

    /// How many certificates were ever revoked (it only grows).
    pub async fn revocations(&self) -> Result<i64, StoreError> {
        on_connection!(self, |tx| certificates::revocations(tx))
    }

    /// The audit entries `filter` selects, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let filter = filter.clone();
        on_connection!(self, |tx| principals::audit(tx, &filter))
    }

    /// Deletes audit entries older than `before_ms` (retention), noting it
    /// in the log itself; returns how many went.
    pub async fn prune_audit(&self, before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        transaction!(self, |tx| principals::prune_audit(tx, before_ms, now_ms))
    }
}

impl Store {
    /// Local user `name` and its password hash (none: LDAP or tokens only).
    pub async fn credentials(
        &self,
        name: &str,
    ) -> Result<Option<(UserRecord, Option<String>)>, StoreError> {
        let name = name.to_owned();
        on_connection!(self, |tx| sessions::credentials(tx, &name))
    }

    /// Until when login name `name` is locked out, if it is at `now_ms`.
    pub async fn lockout(&self, name: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let name = name.to_owned();
        on_connection!(self, |tx| sessions::lockout(tx, &name, now_ms))
    }

    /// Keeps a new session and audits the login as `actor`.
    pub async fn start_session(
        &self,
        new: &NewSession,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (new, actor) = (new.clone(), actor.clone());
        transaction!(self, |tx| sessions::start_session(tx, &new, &actor, now_ms))
    }

    /// The live session kept by `digest`.
    pub async fn session(
        &self,
        digest: &str,
        now_ms: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let digest = digest.to_owned();
        on_connection!(self, |tx| sessions::session_by_digest(tx, &digest, now_ms))
    }

    /// Ends the session kept by `digest` (a logout by `actor`); `false`
    /// if it was not live.
    pub async fn end_session(
        &self,
        digest: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (digest, actor) = (digest.to_owned(), actor.clone());
        transaction!(self, |tx| sessions::end_session(
            tx, &digest, &actor, now_ms
        ))
    }

    /// Audits a wrong password for `name`; returns until when it is now
    /// locked out, if this failure locked it.
    pub async fn login_failed(
        &self,
        name: &str,
        reason: &str,
        policy: LockoutPolicy,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (name, reason, actor) = (name.to_owned(), reason.to_owned(), actor.clone());
        transaction!(self, |tx| sessions::login_failed(
            tx, &name, &reason, policy, &actor, now_ms
        ))
    }

    /// Audits a login refused for `reason` (not a wrong password).
    pub async fn login_refused(
        &self,
        name: &str,
        reason: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (name, reason, actor) = (name.to_owned(), reason.to_owned(), actor.clone());
        transaction!(self, |tx| sessions::login_refused(
            tx, &name, &reason, &actor, now_ms
        ))
    }
}
