//! A private Exim (Debian's `exim4-daemon-light`) on a loopback port:
//! STARTTLS offered, AUTH PLAIN and LOGIN only once TLS is up (one user and
//! password), mail accepted only from that user, every recipient's copy
//! delivered to one Maildir the test reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{LocalServer, exchange, local_server_handle, service_dir};
use crate::ports::free_loopback_port;
use crate::process::Supervised;

/// The user the server accepts mail from.
pub const SMTP_USER: &str = "ward";
/// Its password.
pub const SMTP_PASSWORD: &str = "exim-test-password";

/// A running Exim; stopped and deleted on drop.
pub struct Exim {
    server: LocalServer,
    maildir: PathBuf,
}

local_server_handle!(Exim);

/// The server's configuration; `@NAME@` are filled in by [`config`].
const CONFIG: &str = "primary_hostname = ward-test.invalid
exim_user = root
exim_group = root
spool_directory = @DIR@/spool
log_file_path = @DIR@/log/%slog
pid_file_path = @DIR@/exim.pid
daemon_smtp_ports = @PORT@
local_interfaces = 127.0.0.1
tls_advertise_hosts = *
tls_certificate = @CERT@
tls_privatekey = @KEY@
acl_smtp_rcpt = acl_check_rcpt
begin acl
acl_check_rcpt:
  accept authenticated = *
  deny message = authentication required
begin routers
to_maildir:
  driver = accept
  transport = maildir
begin transports
maildir:
  driver = appendfile
  directory = @DIR@/Maildir
  maildir_format
  user = nobody
  group = nogroup
  mode = 0644
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{@USER@}}{eq{$auth3}{@PASSWORD@}}}}
  server_set_id = $auth2
  server_advertise_condition = ${if def:tls_in_cipher}
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${if and {{eq{$auth1}{@USER@}}{eq{$auth2}{@PASSWORD@}}}}
  server_set_id = $auth1
  server_advertise_condition = ${if def:tls_in_cipher}
";

fn config(dir: &Path, port: u16, cert: &Path, key: &Path) -> String {
    CONFIG
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@CERT@", &cert.display().to_string())
        .replace("@KEY@", &key.display().to_string())
        .replace("@USER@", SMTP_USER)
        .replace("@PASSWORD@", SMTP_PASSWORD)
}

impl Exim {
    /// Starts a fresh server presenting `cert` and `key` (PEM) for
    /// STARTTLS.
    pub fn start(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let dir = service_dir("exim")?;
        let port = free_loopback_port()?;
        for sub in ["spool", "log", "Maildir"] {
            std::fs::create_dir(dir.path().join(sub))?;
        }
        // Deliveries run as nobody.
        let maildir = dir.path().join("Maildir");
        std::fs::set_permissions(
            &maildir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let conf = dir.path().join("exim.conf");
        std::fs::write(&conf, config(dir.path(), port, cert, key))?;
        let server = Supervised::new(
            "exim4",
            dir.path().join("exim.out"),
            move || {
                let mut command = Command::new("/usr/sbin/exim4");
                command.arg("-C").arg(&conf).args(["-bdf", "-odi"]);
                command
            },
            move || exchange(port, b"QUIT\r\n").is_some_and(|answer| answer.starts_with("220")),
        );
        Ok(Self {
            server: LocalServer::start(server, port, dir)?,
            maildir,
        })
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port())
    }

    /// Every message delivered so far (one per recipient), as received,
    /// oldest first.
    pub fn messages(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let new = self.maildir.join("new");
        if !new.exists() {
            return Ok(Vec::new());
        }
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(new)?
            .map(|entry| {
                let entry = entry?;
                Ok((entry.metadata()?.modified()?, entry.path()))
            })
            .collect::<anyhow::Result<_>>()?;
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| Ok(std::fs::read(path)?))
            .collect()
    }
}
