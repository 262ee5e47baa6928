//! Who may do what: the roles, the principals a request can come from, and
//! the secrets that prove them. Passwords are kept as Argon2id hashes (PHC
//! strings); API tokens are random, shown once, and kept as SHA-256
//! digests (a token has 256 bits of entropy: a slow hash adds nothing).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;

/// What a route or method requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness and readiness.
    Open,
    /// A read: `viewer`, or anyone when `anonymous_read` is on.
    Read,
    /// At least this role.
    Role(Role),
}

/// What a principal may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// A viewer who also acknowledges alerts and manages maintenance.
    Operator,
    /// An operator who also changes the inventory, agents, users and
    /// settings.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `viewer`, `operator`, `admin`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}`: use viewer, operator or admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Nobody proved anything.
    Anonymous,
    /// An API token of `user`, with the user's role.
    Token {
        /// The token's id (not its secret).
        id: i64,
        /// Its user.
        user: String,
        /// The user's role.
        role: Role,
    },
    /// An agent, by its client certificate: it may use the agent link and
    /// nothing else.
    Agent {
        /// The certificate's common name.
        id: String,
    },
    /// A user logged in to the dashboard (its session cookie).
    Session {
        /// The user.
        user: String,
        /// Its role for this session.
        role: Role,
    },
    /// The controller's own command line, run on its host with access to
    /// its database.
    Console,
}

impl Principal {
    /// The role the principal acts with; `None` for anonymous requests and
    /// agents.
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Token { role, .. } | Principal::Session { role, .. } => Some(*role),
            Principal::Console => Some(Role::Admin),
            Principal::Anonymous | Principal::Agent { .. } => None,
        }
    }
}

impl std::fmt::Display for Principal {
    /// As the audit log names it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Token { id, user, .. } => write!(f, "user {user} (token {id})"),
            Principal::Agent { id } => write!(f, "agent {id} (certificate)"),
            Principal::Session { user, .. } => write!(f, "user {user} (dashboard session)"),
            Principal::Console => f.write_str("console (ward-controller on the controller host)"),
        }
    }
}

/// Randomness or hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The system's random source failed.
    #[error("no randomness from the system: {0}")]
    Random(String),
    /// Hashing a password failed.
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

fn random_text(bytes: usize) -> Result<String, SecretError> {
    let mut buffer = vec![0; bytes];
    getrandom::fill(&mut buffer).map_err(|error| SecretError::Random(error.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// A random id for a controller process or a store (16 hex digits): not
/// a secret, only different from every other one.
pub fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness, the process id and the time tell them apart.
    if getrandom::fill(&mut bytes).is_err() {
        bytes =
            (u64::from(std::process::id()) ^ crate::time::now_ms().unsigned_abs()).to_be_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A new API token (`ward_…`, shown once) and the digest to keep.
pub fn new_token() -> Result<(String, String), SecretError> {
    let token = format!("ward_{}", random_text(32)?);
    let digest = token_digest(&token);
    Ok((token, digest))
}

/// A new dashboard session: the cookie's secret (shown once, to the
/// browser), the digest to keep, and the CSRF token changes must carry.
pub fn new_session() -> Result<SessionSecrets, SecretError> {
    let cookie = random_text(32)?;
    Ok(SessionSecrets {
        digest: token_digest(&cookie),
        cookie,
        csrf: random_text(32)?,
    })
}

/// The secrets of a new session ([`new_session`]).
pub struct SessionSecrets {
    /// The cookie's value.
    pub cookie: String,
    /// Its digest, as kept.
    pub digest: String,
    /// The CSRF token.
    pub csrf: String,
}

/// The digest an API token (or a session cookie) is kept and looked up by.
pub fn token_digest(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A random password of 24 characters (144 bits), for a first admin.
pub fn generate_password() -> Result<String, SecretError> {
    random_text(18)
}

/// `password` hashed with Argon2id (OWASP parameters), as a PHC string.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let mut salt = [0; 16];
    getrandom::fill(&mut salt).map_err(|error| SecretError::Random(error.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|error| SecretError::Hash(error.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| SecretError::Hash(error.to_string()))
}

/// Whether `password` matches `hash` (a PHC string from [`hash_password`]).
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_weaker_ones_and_parse_by_name() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!("operator".parse::<Role>().ok(), Some(Role::Operator));
        let refused = "root".parse::<Role>().unwrap_err().to_string();
        assert!(refused.contains("viewer, operator or admin"), "{refused}");
    }

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse!", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_kept_only_as_digests() {
        let (first, digest) = new_token().expect("token");
        let (second, _) = new_token().expect("token");
        assert_ne!(first, second);
        assert!(first.starts_with("ward_") && first.len() > 40, "{first}");
        assert_eq!(digest, token_digest(&first));
        assert_eq!(digest.len(), 64);
        assert!(!digest.contains(&first));
    }
}
