//! A private PostgreSQL cluster. `initdb` refuses to run as root, so the
//! cluster is created and run as the `postgres` system user.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{LocalServer, local_server_handle, service_dir};
use crate::ports::free_loopback_port;
use crate::process::Supervised;
use anyhow::{Context, bail};
use nix::unistd::{User, chown};

/// Superuser of the test cluster (trust authentication on loopback).
const SUPERUSER: &str = "ward";

/// A running PostgreSQL server; stopped and deleted on drop.
pub struct Postgres {
    server: LocalServer,
}

local_server_handle!(Postgres);

impl Postgres {
    /// Creates a fresh cluster and starts it.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None, None)
    }

    /// Like [`Postgres::start`], but connections over TCP must prove
    /// `password` (SCRAM-SHA-256) for the superuser.
    pub fn start_requiring_password(password: &str) -> anyhow::Result<Self> {
        Self::start_with(Some(password), None)
    }

    /// Like [`Postgres::start`], but with `ssl = on` and TCP connections
    /// admitted only over TLS with a client certificate whose common name
    /// is the superuser's (`hostssl … cert`; the socket stays trusted).
    pub fn start_requiring_tls(tls: &PostgresTls) -> anyhow::Result<Self> {
        Self::start_with(None, Some(tls))
    }

    fn start_with(password: Option<&str>, tls: Option<&PostgresTls>) -> anyhow::Result<Self> {
        let bin = binaries_dir()?;
        let user = User::from_name("postgres")?
            .context("no `postgres` system user: install the Debian package `postgresql`")?;
        let dir = service_dir("postgres")?;
        chown(dir.path(), Some(user.uid), Some(user.gid))?;
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["--auth=trust", "--encoding=UTF8", "--no-sync", "--username"]);
        initdb.arg(SUPERUSER);
        if let Some(password) = password {
            let file = dir.path().join("password");
            std::fs::write(&file, password)?;
            chown(&file, Some(user.uid), Some(user.gid))?;
            initdb
                .arg("--auth-host=scram-sha-256")
                .arg("--pwfile")
                .arg(&file);
        }
        let initdb = initdb
            .arg("--pgdata")
            .arg(&data)
            .current_dir(dir.path())
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .output()
            .context("running initdb")?;
        if !initdb.status.success() {
            bail!(
                "initdb failed ({}): {}",
                initdb.status,
                String::from_utf8_lossy(&initdb.stderr)
            );
        }
        if let Some(tls) = tls {
            tls.configure(&data, &user)?;
        }
        Self::run(dir, &user)
    }

    /// A streaming-replication standby of this server (a base backup
    /// with `primary_conninfo`, read-only until [`Postgres::promote`]),
    /// started on a port of its own.
    pub fn start_standby(&self) -> anyhow::Result<Self> {
        let bin = binaries_dir()?;
        let user = User::from_name("postgres")?
            .context("no `postgres` system user: install the Debian package `postgresql`")?;
        let dir = service_dir("postgres-standby")?;
        chown(dir.path(), Some(user.uid), Some(user.gid))?;
        let backup = Command::new(bin.join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &self.port().to_string(), "-U"])
            .arg(SUPERUSER)
            .args(["--write-recovery-conf", "--wal-method=stream", "--pgdata"])
            .arg(dir.path().join("data"))
            .current_dir(dir.path())
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .output()
            .context("running pg_basebackup")?;
        if !backup.status.success() {
            bail!(
                "pg_basebackup failed ({}): {}",
                backup.status,
                String::from_utf8_lossy(&backup.stderr)
            );
        }
        Self::run(dir, &user)
    }

    /// Promotes a standby to a primary (waits until it accepts writes).
    pub fn promote(&self) -> anyhow::Result<()> {
        let output = Command::new(binaries_dir()?.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port().to_string(), "-U"])
            .arg(SUPERUSER)
            .args(["-d", "postgres", "-Atc", "SELECT pg_promote(true, 30)"])
            .output()
            .context("running psql")?;
        let answer = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || answer.trim() != "t" {
            bail!(
                "pg_promote failed ({}): {answer} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Runs the cluster in `dir`'s `data` as `user`, on a free port.
    fn run(dir: tempfile::TempDir, user: &User) -> anyhow::Result<Self> {
        let bin = binaries_dir()?;
        let data = dir.path().join("data");
        let port = free_loopback_port()?;
        let socket_dir = dir.path().to_path_buf();
        let log = dir.path().join("postgres.log");
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let postgres = bin.join("postgres");
        let server = Supervised::new(
            "postgres",
            log,
            move || {
                let mut command = Command::new(&postgres);
                command
                    .arg("-D")
                    .arg(&data)
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                    .arg(&socket_dir)
                    .args(["-c", "fsync=off", "-c", "max_connections=200"])
                    .current_dir(&socket_dir)
                    .uid(uid)
                    .gid(gid);
                command
            },
            {
                let pg_isready = bin.join("pg_isready");
                move || is_ready(&pg_isready, port)
            },
        )
        .with_stop_signal(nix::sys::signal::Signal::SIGINT);
        Ok(Self {
            server: LocalServer::start(server, port, dir)?,
        })
    }

    /// Connection string for tokio-postgres / the controller.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres?connect_timeout=5",
            self.port()
        )
    }
}

/// The server's side of TLS, as PEM text: its certificate chain and key,
/// and the CA its clients' certificates must chain to.
pub struct PostgresTls {
    /// The server's certificate, then its intermediates.
    pub chain: String,
    /// Its private key.
    pub key: String,
    /// The CA (or CAs) client certificates are checked against.
    pub client_ca: String,
}

impl PostgresTls {
    /// Writes the files into `data` (owned by `user`, the key private)
    /// and turns TLS on, for TCP connections only with a certificate.
    fn configure(&self, data: &Path, user: &User) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        for (name, contents, mode) in [
            ("server.pem", &self.chain, 0o644),
            ("server.key", &self.key, 0o600),
            ("client-ca.pem", &self.client_ca, 0o644),
        ] {
            let path = data.join(name);
            std::fs::write(&path, contents)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            chown(&path, Some(user.uid), Some(user.gid))?;
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        std::io::Write::write_all(
            &mut conf,
            b"ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\nssl_ca_file = 'client-ca.pem'\n",
        )?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n",
        )?;
        Ok(())
    }
}

fn is_ready(pg_isready: &Path, port: u16) -> bool {
    Command::new(pg_isready)
        .args(["-q", "-h", "127.0.0.1", "-t", "1", "-d", "postgres", "-U"])
        .arg(SUPERUSER)
        .args(["-p", &port.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// The newest `/usr/lib/postgresql/<major>/bin`.
fn binaries_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .with_context(|| {
            format!(
                "{} missing: install the Debian package `postgresql`",
                root.display()
            )
        })?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").exists())
        .max_by_key(|(major, _)| *major);
    newest
        .map(|(_, bin)| bin)
        .with_context(|| format!("no PostgreSQL server under {}", root.display()))
}
