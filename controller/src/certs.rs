//! `ward-controller certs`: a private CA for one deployment, the
//! controller's server certificate, and one client certificate per agent
//! (its common name is the agent's id: the controller checks it against
//! the agent's `Hello`). PEM files; private keys are written mode 0600.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Leaf certificates are valid this long.
const LEAF_DAYS: i64 = 825;
/// The CA is valid this long.
const CA_DAYS: i64 = 3_650;

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The CA exists already.
    #[error("{0} exists: this directory has a CA already; use `certs agent` or another --dir")]
    Exists(String),
    /// Generating or parsing failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A bad name.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = rcgen::date_time_ymd(1970, 1, 1) + time_since_epoch();
    params.not_before = now - rcgen_days(1);
    params.not_after = now + rcgen_days(days);
}

fn time_since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn rcgen_days(days: i64) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(days).unwrap_or(0) * 86_400)
}

/// Writes `contents` to `path` whole or not at all (a new file renamed
/// over the old one), so a controller re-reading its files on `SIGHUP`
/// never sees half of one.
fn write(path: &Path, contents: &str, private: bool) -> Result<PathBuf, CertError> {
    let partial = path.with_extension("partial");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&partial)
        .map_err(io(&partial))?;
    file.write_all(contents.as_bytes()).map_err(io(&partial))?;
    file.sync_all().map_err(io(&partial))?;
    fs::rename(&partial, path).map_err(io(path))?;
    Ok(path.to_path_buf())
}

/// PBKDF2-SHA256 rounds that make an encrypted CA key's key (OWASP's
/// figure for 2023).
const PBKDF2_ROUNDS: u32 = 600_000;

/// Where a CA's key is kept, and the passphrase that encrypts it.
#[derive(Clone, Debug, Default)]
pub struct CaKey {
    /// Its file (default: `ca.key` beside `ca.pem`).
    pub path: Option<PathBuf>,
    /// Encrypts it (PKCS#8: PBKDF2-SHA256 and AES-256-CBC, as `openssl
    /// pkcs8 -topk8 -v2 aes-256-cbc` writes; `openssl pkey` reads it).
    pub passphrase: Option<String>,
}

impl CaKey {
    /// The key's file for the certificates in `dir`.
    pub fn path(&self, dir: &Path) -> PathBuf {
        self.path.clone().unwrap_or_else(|| dir.join("ca.key"))
    }

    /// Whether the key is encrypted.
    pub fn encrypted(&self) -> bool {
        self.passphrase.is_some()
    }

    /// `key` as PEM, encrypted when there is a passphrase.
    fn seal(&self, key: &KeyPair) -> Result<String, CertError> {
        let Some(passphrase) = &self.passphrase else {
            return Ok(key.serialize_pem());
        };
        let info = pkcs8::PrivateKeyInfo::try_from(key.serialized_der())
            .map_err(|error| CertError::Invalid(format!("the CA key: {error}")))?;
        let (mut salt, mut iv) = ([0u8; 16], [0u8; 16]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
        let sealed =
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ROUNDS, &salt, &iv)
                .map_err(pkcs8::Error::from)
                .and_then(|parameters| info.encrypt_with_params(parameters, passphrase.as_bytes()))
                .and_then(|document| {
                    document
                        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
                        .map_err(pkcs8::Error::from)
                })
                .map_err(|error| CertError::Invalid(format!("encrypting the CA key: {error}")))?;
        Ok(sealed.to_string())
    }

    /// The key in `path`, decrypted with the passphrase when it is
    /// encrypted.
    fn open(&self, path: &Path) -> Result<KeyPair, CertError> {
        let text = fs::read_to_string(path).map_err(io(path))?;
        if !text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Ok(KeyPair::from_pem(&text)?);
        }
        let Some(passphrase) = &self.passphrase else {
            return Err(CertError::Invalid(format!(
                "{} is encrypted: give its passphrase (--ca-passphrase-file FILE)",
                path.display()
            )));
        };
        let refused = |why: String| CertError::Invalid(format!("{}: {why}", path.display()));
        let (_, document) = pkcs8::SecretDocument::from_pem(&text)
            .map_err(|error| refused(format!("not a PEM key: {error}")))?;
        let der = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
            .and_then(|info| info.decrypt(passphrase.as_bytes()))
            .map_err(|_| refused("cannot decrypt it: is the passphrase right?".into()))?;
        Ok(KeyPair::try_from(der.as_bytes())?)
    }
}

/// Creates `dir/ca.{pem,key}` and `dir/controller.{pem,key}` for the
/// controller's `names` (host names and IP addresses agents connect to).
pub fn init(dir: &Path, names: &[String]) -> Result<Vec<PathBuf>, CertError> {
    init_with(dir, names, &CaKey::default())
}

/// [`init`], the CA's key kept as `ca_key` says.
pub fn init_with(dir: &Path, names: &[String], ca_key: &CaKey) -> Result<Vec<PathBuf>, CertError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_key_path = ca_key.path(dir);
    if let Some(parent) = ca_key_path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    for existing in [ca_key_path.clone(), dir.join("ca.pem")] {
        if existing.exists() {
            return Err(CertError::Exists(existing.display().to_string()));
        }
    }
    check_names(names)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "ward deployment CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, CA_DAYS);
    let key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&key)?;
    let mut written = vec![
        write(&dir.join("ca.pem"), &ca_cert.pem(), false)?,
        write(&ca_key_path, &ca_key.seal(&key)?, true)?,
    ];
    written.extend(issue_controller(dir, names, &Issuer::new(ca, key))?);
    Ok(written)
}

/// Re-issues `dir/controller.{pem,key}` for `names`, signed by the CA in
/// `dir` (agents keep trusting it); the running controller takes them on
/// `SIGHUP`.
pub fn controller(dir: &Path, names: &[String], ca_key: &CaKey) -> Result<Vec<PathBuf>, CertError> {
    check_names(names)?;
    issue_controller(dir, names, &issuer(dir, ca_key)?)
}

fn check_names(names: &[String]) -> Result<(), CertError> {
    if names.is_empty() {
        return Err(CertError::Invalid(
            "name at least one host name or address agents connect to (--name)".into(),
        ));
    }
    Ok(())
}

/// The CA in `dir` (its key where `ca_key` says), to sign with.
fn issuer(dir: &Path, ca_key: &CaKey) -> Result<Issuer<'static, KeyPair>, CertError> {
    let ca_pem_path = dir.join("ca.pem");
    let ca_pem = fs::read_to_string(&ca_pem_path).map_err(io(&ca_pem_path))?;
    let key = ca_key.open(&ca_key.path(dir))?;
    Ok(Issuer::from_ca_cert_pem(&ca_pem, key)?)
}

fn issue_controller(
    dir: &Path,
    names: &[String],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<Vec<PathBuf>, CertError> {
    let mut server = CertificateParams::new(names.to_vec())?;
    server
        .distinguished_name
        .push(DnType::CommonName, "ward-controller");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server, LEAF_DAYS);
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, issuer)?;
    // The key first: a controller reloading between the two writes gets
    // a key that does not fit the old certificate, says so, and keeps the
    // one it has.
    Ok(vec![
        write(
            &dir.join("controller.key"),
            &server_key.serialize_pem(),
            true,
        )?,
        write(&dir.join("controller.pem"), &server_cert.pem(), false)?,
    ])
}

/// Creates `dir/agent-{id}.{pem,key}`, signed by the CA in `dir`.
pub fn agent(dir: &Path, id: &str) -> Result<Vec<PathBuf>, CertError> {
    agent_with(dir, id, &CaKey::default())
}

/// [`agent`], the CA's key where `ca_key` says.
pub fn agent_with(dir: &Path, id: &str, ca_key: &CaKey) -> Result<Vec<PathBuf>, CertError> {
    crate::store::AgentRecord::validate(id, "-")
        .map_err(|error| CertError::Invalid(format!("agent id: {}", error.message)))?;
    let issuer = issuer(dir, ca_key)?;
    let mut params = CertificateParams::new(vec![id.to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, id);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, LEAF_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(vec![
        write(&dir.join(format!("agent-{id}.pem")), &cert.pem(), false)?,
        write(
            &dir.join(format!("agent-{id}.key")),
            &key.serialize_pem(),
            true,
        )?,
    ])
}

/// The common name of a DER certificate's subject.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .map(str::to_owned)
}

/// A DER certificate's SHA-256 fingerprint, lowercase hex: how a revoked
/// certificate is known.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The fingerprint ([`fingerprint`]) of the PEM certificate in `path`.
pub fn file_fingerprint(path: &Path) -> Result<String, CertError> {
    let pem = fs::read(path).map_err(io(path))?;
    let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem).map_err(|error| {
        CertError::Invalid(format!(
            "{}: not a PEM certificate: {error}",
            path.display()
        ))
    })?;
    Ok(fingerprint(&parsed.contents))
}

/// When a DER certificate stops being valid, Unix ms.
pub fn not_after_ms(der: &[u8]) -> Option<i64> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    certificate
        .validity()
        .not_after
        .timestamp()
        .checked_mul(1_000)
}

/// The names a DER certificate is valid for: its DNS names and IP
/// addresses (subject alternative names).
pub fn subject_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(names)) = certificate.subject_alternative_name() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|octets| std::net::Ipv4Addr::from(octets).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|octets| std::net::Ipv6Addr::from(octets).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_ca_key_signs_only_with_its_passphrase_and_openssl_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let offline = tempfile::tempdir().unwrap();
        let sealed = CaKey {
            path: Some(offline.path().join("ward-ca.key")),
            passphrase: Some("correct horse".into()),
        };
        let written = init_with(dir.path(), &["127.0.0.1".into()], &sealed).unwrap();
        assert!(
            !dir.path().join("ca.key").exists(),
            "no CA key beside the controller's"
        );
        assert!(written.contains(&offline.path().join("ward-ca.key")));
        let text = fs::read_to_string(offline.path().join("ward-ca.key")).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{text}"
        );

        let unsealed = CaKey {
            passphrase: None,
            ..sealed.clone()
        };
        let error = agent_with(dir.path(), "branch-7", &unsealed)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("is encrypted: give its passphrase"),
            "{error}"
        );
        let wrong = CaKey {
            passphrase: Some("wrong".into()),
            ..sealed.clone()
        };
        let error = agent_with(dir.path(), "branch-7", &wrong)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot decrypt it"), "{error}");
        agent_with(dir.path(), "branch-7", &sealed).unwrap();
        controller(dir.path(), &["ward.example".into()], &sealed).unwrap();

        let passphrase = offline.path().join("passphrase");
        fs::write(&passphrase, "correct horse").unwrap();
        let read = std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(offline.path().join("ward-ca.key"))
            .arg("-passin")
            .arg(format!("file:{}", passphrase.display()))
            .output()
            .expect("openssl runs");
        assert!(
            read.status.success(),
            "{}",
            String::from_utf8_lossy(&read.stderr)
        );
    }

    #[test]
    fn agent_certificates_name_the_agent_and_the_ca_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(
            dir.path(),
            &["127.0.0.1".into(), "controller.example".into()],
        )
        .unwrap();
        assert_eq!(files.len(), 4);
        let mode = fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let error = init(dir.path(), &["x".into()]).unwrap_err().to_string();
        assert!(error.contains("has a CA already"), "{error}");
        agent(dir.path(), "branch-7").unwrap();
        let pem = fs::read_to_string(dir.path().join("agent-branch-7.pem")).unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(common_name(&der).as_deref(), Some("branch-7"));
        assert!(agent(dir.path(), "bad id").is_err());
        let pem = fs::read_to_string(dir.path().join("controller.pem")).unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(subject_names(&der), ["127.0.0.1", "controller.example"]);
        let days_left = (not_after_ms(&der).expect("expiry") - crate::time::now_ms()) / 86_400_000;
        assert!(
            (LEAF_DAYS - 2..=LEAF_DAYS).contains(&days_left),
            "{days_left}"
        );
    }
}
