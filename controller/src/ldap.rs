//! Logging in through LDAP or Active Directory: the user's DN (a template,
//! or a search as a service account), a bind with the password given, and
//! the user's groups mapped to a role. Over LDAPS or StartTLS (plain LDAP
//! only to loopback). Nothing is cached: each login asks the directory,
//! and the role lasts as long as the session.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::auth::Role;

/// How to reach the directory and read roles from it (`[ldap]` in the
/// configuration file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldaps://host:636`, or `ldap://host:389` with `starttls = true`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// The CA (PEM) the directory's certificate chains to; the system's
    /// roots when unset.
    pub ca: Option<PathBuf>,
    /// Bind directly as this DN, `{user}` replaced by the login name
    /// (`uid={user},ou=people,dc=bank,dc=example`); else the user is
    /// searched for.
    pub user_dn: Option<String>,
    /// The service account that searches (none: anonymous).
    pub bind_dn: Option<String>,
    /// A file holding the service account's password (e.g. a systemd
    /// credential).
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched for.
    pub user_base: Option<String>,
    /// Which entry is the user, `{user}` replaced by the login name.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where groups are searched for.
    pub group_base: String,
    /// Which groups the user is in, `{dn}` replaced by the user's DN and
    /// `{user}` by the login name.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// Members of this group (DN) are admins.
    pub admin_group: Option<String>,
    /// Members of this group are operators.
    pub operator_group: Option<String>,
    /// Members of this group are viewers.
    pub viewer_group: Option<String>,
    /// How long one directory operation may take (5 s when unset).
    #[serde(default, with = "ward_settings::duration")]
    pub timeout: Option<Duration>,
}

fn default_user_filter() -> String {
    "(uid={user})".into()
}

fn default_group_filter() -> String {
    "(member={dn})".into()
}

/// How long one directory operation may take unless configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// The settings cannot work.
    #[error("ldap: {0}")]
    Settings(String),
    /// The directory did not answer as it should.
    #[error("the directory (LDAP) at {url} cannot be used: {error}")]
    Directory {
        /// Its URL.
        url: String,
        /// What went wrong.
        error: String,
    },
}

/// What the directory says of a login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right and the user's groups give this role.
    Proven(Role),
    /// The password is wrong.
    WrongPassword,
    /// There is no such user.
    NoUser,
    /// The password is right but no group of the user maps to a role.
    NoRole,
}

/// A configured directory.
#[derive(Clone)]
pub struct Directory {
    settings: LdapSettings,
    bind_password: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the service account's password.
        f.debug_struct("Directory")
            .field("url", &self.settings.url)
            .finish_non_exhaustive()
    }
}

fn is_loopback_url(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(host, _)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

impl Directory {
    /// Checks `settings` and reads the files they name.
    pub fn new(settings: LdapSettings) -> Result<Self, LdapError> {
        let invalid = |message: String| Err(LdapError::Settings(message));
        let ldaps = settings.url.starts_with("ldaps://");
        if !ldaps && !settings.url.starts_with("ldap://") {
            return invalid(format!("url `{}` is not ldap:// or ldaps://", settings.url));
        }
        if !ldaps && !settings.starttls && !is_loopback_url(&settings.url) {
            return invalid(format!(
                "url `{}`: passwords would cross the network in clear; use ldaps:// or \
                 starttls = true",
                settings.url
            ));
        }
        if settings.user_dn.is_none() && settings.user_base.is_none() {
            return invalid(
                "set user_dn (a DN template with {user}) or user_base (to search)".into(),
            );
        }
        if [
            &settings.admin_group,
            &settings.operator_group,
            &settings.viewer_group,
        ]
        .iter()
        .all(|group| group.is_none())
        {
            return invalid(
                "map at least one group to a role (admin_group, operator_group, viewer_group)"
                    .into(),
            );
        }
        let bind_password = settings
            .bind_password_file
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|error| {
                        LdapError::Settings(format!(
                            "bind_password_file {}: {error}",
                            path.display()
                        ))
                    })
            })
            .transpose()?;
        let tls = settings
            .ca
            .as_ref()
            .map(|path| client_config(path))
            .transpose()?;
        Ok(Self {
            settings,
            bind_password,
            tls,
        })
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Its URL, for messages.
    pub fn url(&self) -> &str {
        &self.settings.url
    }

    fn failed(&self, error: impl std::fmt::Display) -> LdapError {
        LdapError::Directory {
            url: self.settings.url.clone(),
            error: error.to_string(),
        }
    }

    /// A connection, upgraded with StartTLS when configured.
    async fn connect(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout())
            .set_starttls(self.settings.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &self.settings.url)
            .await
            .map_err(|error| self.failed(error))?;
        ldap3::drive!(connection);
        ldap.with_timeout(self.timeout());
        Ok(ldap)
    }

    /// Binds as the service account (anonymous without one).
    async fn bind_service(&self, ldap: &mut ldap3::Ldap) -> Result<(), LdapError> {
        let (dn, password) = match (&self.settings.bind_dn, &self.bind_password) {
            (Some(dn), Some(password)) => (dn.as_str(), password.as_str()),
            (Some(dn), None) => (dn.as_str(), ""),
            (None, _) => ("", ""),
        };
        ldap.with_timeout(self.timeout())
            .simple_bind(dn, password)
            .await
            .and_then(ldap3::LdapResult::success)
            .map_err(|error| self.failed(format!("service bind as `{dn}`: {error}")))?;
        Ok(())
    }

    /// Whether the directory answers (and the service account binds), for
    /// `/readyz`.
    pub async fn check(&self) -> Result<(), LdapError> {
        let mut ldap = self.connect().await?;
        self.bind_service(&mut ldap).await?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// What the directory says of `user` with `password`.
    pub async fn authenticate(&self, user: &str, password: &str) -> Result<Verdict, LdapError> {
        // An empty password is an unauthenticated bind, which succeeds.
        if password.is_empty() {
            return Ok(Verdict::WrongPassword);
        }
        let mut ldap = self.connect().await?;
        let dn = match &self.settings.user_dn {
            Some(template) => template.replace("{user}", &dn_escape(user)),
            None => match self.find_user(&mut ldap, user).await? {
                Some(dn) => dn,
                None => return Ok(Verdict::NoUser),
            },
        };
        let bound = ldap
            .with_timeout(self.timeout())
            .simple_bind(&dn, password)
            .await
            .map_err(|error| self.failed(error))?;
        match bound.rc {
            0 => {}
            // invalidCredentials: a wrong password, or (direct binds) no
            // such DN.
            49 => return Ok(Verdict::WrongPassword),
            _ => return Err(self.failed(format!("binding as `{dn}`: {bound}"))),
        }
        let groups = self.groups(&mut ldap, user, &dn).await?;
        let _ = ldap.unbind().await;
        let is = |group: &Option<String>| {
            group.as_ref().is_some_and(|group| {
                groups
                    .iter()
                    .any(|member| member.eq_ignore_ascii_case(group))
            })
        };
        Ok(if is(&self.settings.admin_group) {
            Verdict::Proven(Role::Admin)
        } else if is(&self.settings.operator_group) {
            Verdict::Proven(Role::Operator)
        } else if is(&self.settings.viewer_group) {
            Verdict::Proven(Role::Viewer)
        } else {
            Verdict::NoRole
        })
    }

    /// The DN of `user`, searched for as the service account.
    async fn find_user(
        &self,
        ldap: &mut ldap3::Ldap,
        user: &str,
    ) -> Result<Option<String>, LdapError> {
        self.bind_service(ldap).await?;
        let base = self.settings.user_base.as_deref().unwrap_or_default();
        let filter = self
            .settings
            .user_filter
            .replace("{user}", &ldap_escape(user));
        let found = self.search(ldap, base, &filter).await?;
        match found.as_slice() {
            [dn] => Ok(Some(dn.clone())),
            [] => Ok(None),
            many => Err(self.failed(format!(
                "`{filter}` under `{base}` matches {} entries: it must name one user",
                many.len()
            ))),
        }
    }

    /// The DNs of the groups `dn` (login `user`) is in.
    async fn groups(
        &self,
        ldap: &mut ldap3::Ldap,
        user: &str,
        dn: &str,
    ) -> Result<Vec<String>, LdapError> {
        let filter = self
            .settings
            .group_filter
            .replace("{dn}", &ldap_escape(dn))
            .replace("{user}", &ldap_escape(user));
        let base = self.settings.group_base.clone();
        self.search(ldap, &base, &filter).await
    }

    /// The DNs of the entries under `base` matching `filter`.
    async fn search(
        &self,
        ldap: &mut ldap3::Ldap,
        base: &str,
        filter: &str,
    ) -> Result<Vec<String>, LdapError> {
        let (entries, _) = ldap
            .with_timeout(self.timeout())
            .search(base, Scope::Subtree, filter, vec!["1.1"])
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(|error| {
                self.failed(format!("searching `{filter}` under `{base}`: {error}"))
            })?;
        Ok(entries
            .into_iter()
            .map(|entry| SearchEntry::construct(entry).dn)
            .collect())
    }
}

/// A TLS client trusting only the CA in `path`.
fn client_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    let invalid = |error: &dyn std::fmt::Display| {
        LdapError::Settings(format!("ca {}: {error}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(|error| invalid(&error))? {
        roots
            .add(certificate.map_err(|error| invalid(&error))?)
            .map_err(|error| invalid(&error))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(&error))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> LdapSettings {
        LdapSettings {
            url: url.into(),
            starttls: false,
            ca: None,
            user_dn: Some("uid={user},ou=people,dc=bank,dc=example".into()),
            bind_dn: None,
            bind_password_file: None,
            user_base: None,
            user_filter: default_user_filter(),
            group_base: "ou=groups,dc=bank,dc=example".into(),
            group_filter: default_group_filter(),
            admin_group: None,
            operator_group: Some("cn=noc,ou=groups,dc=bank,dc=example".into()),
            viewer_group: None,
            timeout: None,
        }
    }

    fn refused(settings: LdapSettings) -> String {
        Directory::new(settings).expect_err("refused").to_string()
    }

    #[test]
    fn passwords_never_cross_the_network_in_clear() {
        let message = refused(settings("ldap://dc1.bank.example:389"));
        assert!(message.contains("ldaps:// or starttls = true"), "{message}");
        assert!(Directory::new(settings("ldaps://dc1.bank.example:636")).is_ok());
        assert!(
            Directory::new(LdapSettings {
                starttls: true,
                ..settings("ldap://dc1.bank.example:389")
            })
            .is_ok()
        );
        assert!(
            Directory::new(settings("ldap://127.0.0.1:389")).is_ok(),
            "loopback"
        );
        let message = refused(settings("http://dc1.bank.example"));
        assert!(message.contains("not ldap:// or ldaps://"), "{message}");
    }

    #[test]
    fn a_user_dn_or_search_base_and_a_mapped_group_are_required() {
        let message = refused(LdapSettings {
            user_dn: None,
            ..settings("ldaps://dc1:636")
        });
        assert!(
            message.contains("user_dn") && message.contains("user_base"),
            "{message}"
        );
        let message = refused(LdapSettings {
            operator_group: None,
            ..settings("ldaps://dc1:636")
        });
        assert!(message.contains("admin_group"), "{message}");
        let message = refused(LdapSettings {
            bind_password_file: Some("/nonexistent/ward-ldap".into()),
            ..settings("ldaps://dc1:636")
        });
        assert!(message.contains("/nonexistent/ward-ldap"), "{message}");
    }
}
