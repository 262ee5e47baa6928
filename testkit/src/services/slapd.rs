//! A private OpenLDAP server (Debian `slapd`): one `mdb` database under
//! `dc=ward,dc=test`, seeded from LDIF before it starts, answering plain
//! LDAP (StartTLS offered) and LDAPS on two loopback ports.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::{LocalServer, local_server_handle, service_dir};
use crate::ports::free_loopback_port;
use crate::process::Supervised;

/// The directory's base DN.
pub const BASE_DN: &str = "dc=ward,dc=test";

/// The directory manager, who may read everything.
pub const ADMIN_DN: &str = "cn=admin,dc=ward,dc=test";

/// The directory manager's password.
pub const ADMIN_PASSWORD: &str = "ward-test-admin";

/// The server's TLS files (PEM).
pub struct SlapdTls {
    /// The CA its certificate chains to.
    pub ca: PathBuf,
    /// Its certificate, valid for 127.0.0.1.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// A running slapd; stopped and deleted on drop.
pub struct Slapd {
    server: LocalServer,
    ldaps_port: u16,
}

local_server_handle!(Slapd);

fn config(dir: &Path, tls: &SlapdTls) -> String {
    let d = dir.display();
    format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         pidfile {d}/slapd.pid\n\
         argsfile {d}/slapd.args\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         TLSCACertificateFile {ca}\n\
         TLSCertificateFile {cert}\n\
         TLSCertificateKeyFile {key}\n\
         database mdb\n\
         maxsize 67108864\n\
         suffix \"{BASE_DN}\"\n\
         rootdn \"{ADMIN_DN}\"\n\
         rootpw {ADMIN_PASSWORD}\n\
         directory {d}/data\n\
         access to attrs=userPassword by anonymous auth by self read by * none\n\
         access to * by users read by * none\n",
        ca = tls.ca.display(),
        cert = tls.cert.display(),
        key = tls.key.display(),
    )
}

impl Slapd {
    /// Starts a server holding the base entry and `entries` (LDIF, e.g.
    /// `ou=people` with users and `ou=groups` with `groupOfNames`).
    pub fn start(entries: &str, tls: &SlapdTls) -> anyhow::Result<Self> {
        let dir = service_dir("slapd")?;
        let (port, ldaps_port) = (free_loopback_port()?, free_loopback_port()?);
        let path = dir.path().to_path_buf();
        std::fs::create_dir(path.join("data"))?;
        let conf = path.join("slapd.conf");
        std::fs::write(&conf, config(&path, tls))?;
        let seed = path.join("seed.ldif");
        std::fs::write(
            &seed,
            format!(
                "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: ward test\ndc: ward\n\n{entries}"
            ),
        )?;
        let loaded = Command::new("slapadd")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&seed)
            .output()
            .context("slapadd (Debian package `slapd`; testkit/run-tests.sh installs it)")?;
        if !loaded.status.success() {
            bail!(
                "slapadd refused the seed: {}",
                String::from_utf8_lossy(&loaded.stderr)
            );
        }
        let urls = format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/");
        let server = Supervised::new(
            "slapd",
            path.join("slapd.log"),
            move || {
                let mut command = Command::new("slapd");
                // `-d` keeps it in the foreground, logging to stderr.
                command.args(["-d", "0", "-h", &urls, "-f"]).arg(&conf);
                command
            },
            move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        Ok(Self {
            server: LocalServer::start(server, port, dir)?,
            ldaps_port,
        })
    }

    /// `ldap://127.0.0.1:PORT` (StartTLS offered).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port())
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }
}
