//! `ward-controller certs`: the deployment's CA, the controller's
//! certificate and the agents', each command saying which file goes to
//! which host. The CA's key can live elsewhere (`--ca-key`, e.g. a PKI
//! host or removable media) and be encrypted (`--ca-passphrase-file`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::certs::CaKey;

#[derive(Subcommand)]
pub(super) enum CertsCommand {
    /// Create a CA and the controller's certificate in DIR.
    Init(ControllerCertificate),
    /// Re-issue the controller's certificate and key, signed by the CA in
    /// DIR (then `kill -HUP` the controller: connected agents stay).
    Controller(ControllerCertificate),
    /// Create an agent's certificate, signed by the CA in DIR.
    Agent {
        /// The agent's id (its certificate's common name).
        id: String,
        /// Directory with the CA.
        #[arg(long, default_value = "./ward-certs")]
        dir: PathBuf,
        #[command(flatten)]
        ca_key: CaKeyArgs,
    },
}

/// The controller's certificate: where, for which names, signed how.
#[derive(Args)]
pub(super) struct ControllerCertificate {
    /// Directory of the PEM files (the CA's certificate, the controller's).
    #[arg(long, default_value = "./ward-certs")]
    dir: PathBuf,
    /// Host names and addresses agents use to reach the controller
    /// (repeat the flag).
    #[arg(long = "name", required = true)]
    names: Vec<String>,
    #[command(flatten)]
    ca_key: CaKeyArgs,
}

/// Where the CA's key is and its passphrase.
#[derive(Args)]
pub(super) struct CaKeyArgs {
    /// The CA's key file [default: DIR/ca.key]: keep it off the
    /// controller's host (only `certs` commands read it).
    #[arg(long, value_name = "FILE", env = "WARD_CA_KEY")]
    ca_key: Option<PathBuf>,
    /// A file holding the passphrase that encrypts the CA's key (with
    /// `init`: encrypt it; `/dev/stdin` reads it from standard input).
    #[arg(long, value_name = "FILE", env = "WARD_CA_PASSPHRASE_FILE")]
    ca_passphrase_file: Option<PathBuf>,
}

impl CaKeyArgs {
    fn ca_key(self) -> anyhow::Result<CaKey> {
        let passphrase = self
            .ca_passphrase_file
            .map(|path| {
                std::fs::read_to_string(&path)
                    .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                    .with_context(|| format!("--ca-passphrase-file {}", path.display()))
            })
            .transpose()?;
        if passphrase.as_deref() == Some("") {
            anyhow::bail!("--ca-passphrase-file: the passphrase is empty");
        }
        Ok(CaKey {
            path: self.ca_key,
            passphrase,
        })
    }
}

/// Runs `command`: the files written on stdout, where they go on stderr.
pub(super) fn run(command: CertsCommand) -> anyhow::Result<()> {
    let (written, placement) = match command {
        CertsCommand::Init(ControllerCertificate { dir, names, ca_key }) => {
            let ca_key = ca_key.ca_key()?;
            let written = crate::certs::init_with(&dir, &names, &ca_key)?;
            let key = ca_key.path(&dir);
            let mut placement = format!(
                "controller.pem, controller.key and ca.pem go to /etc/ward/ on the controller host \
                 (the unit loads them as credentials); {} signs every certificate: it never goes \
                 to the controller's host",
                key.display()
            );
            if !ca_key.encrypted() {
                placement.push_str(&format!(
                    ". WARNING: {} is not encrypted: move it off this host (root's, 0600, or \
                     offline media) and give it back with --ca-key when you issue a certificate, \
                     or make the CA again with --ca-passphrase-file",
                    key.display()
                ));
            }
            (written, placement)
        }
        CertsCommand::Controller(ControllerCertificate { dir, names, ca_key }) => (
            crate::certs::controller(&dir, &names, &ca_key.ca_key()?)?,
            "copy controller.pem and controller.key to /etc/ward/ on the controller host, then \
             `systemctl reload ward-controller` (SIGHUP): agents stay connected"
                .to_owned(),
        ),
        CertsCommand::Agent { id, dir, ca_key } => (
            crate::certs::agent_with(&dir, &id, &ca_key.ca_key()?)?,
            format!(
                "copy agent-{id}.pem, agent-{id}.key and ca.pem to agent {id}'s host as \
                 /etc/ward/agent.pem, agent.key (root, 0600) and ca.pem; they never go anywhere \
                 else"
            ),
        ),
    };
    for path in written {
        println!("{}", path.display());
    }
    eprintln!("{placement}");
    Ok(())
}
