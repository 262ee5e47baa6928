//! The bank's own PKI instead of `certs init`: a root CA and an issuing
//! (intermediate) CA made with openssl on another "host" (a directory the
//! deployment never sees), the controller's and the agent's certificates
//! issued by the intermediate and installed with their chain; no CA key
//! is ever in the deployment's directory. The agent links over mTLS and
//! its devices come up; an agent certificate from another issuing CA is
//! refused. And `certs init` with its key kept elsewhere, encrypted.
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and a real network: the test waits in wall-clock time"
)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ward_e2e::{Deployment, controller_binary, wait_until};
use ward_testkit::lab::SiteConfig;

const SITE: &str = "branch-3";

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A key and a request for `subject` as `name.key`, `name.csr`.
fn request(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ],
    );
}

/// Signs `name.csr` with CA `ca` (`ca.pem`, `ca.key`) and `extensions`
/// into `name.pem`.
fn sign(dir: &Path, name: &str, ca: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "365",
            "-sha256",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

const ISSUING_CA: &str = "basicConstraints=critical,CA:TRUE,pathlen:0\n\
                          keyUsage=critical,keyCertSign,cRLSign\n\
                          subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

/// The bank's PKI in `pki`: a root, an issuing CA under it, and one more
/// issuing CA (`other`) the controller is not told about.
fn bank_pki(pki: &Path) {
    openssl(
        pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "3650",
            "-subj",
            "/O=Example Bank/CN=Example Bank Root CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    for (name, subject) in [
        (
            "issuing",
            "/O=Example Bank/CN=Example Bank Network Devices CA",
        ),
        ("other", "/O=Somebody Else/CN=Another Issuing CA"),
    ] {
        request(pki, name, subject);
        sign(
            pki,
            name,
            if name == "issuing" { "root" } else { "issuing" },
            ISSUING_CA,
        );
    }
    // "other" is signed by the issuing CA, whose path length is 0: what
    // "other" issues does not chain to the root the controller trusts.
}

/// A leaf `name` issued by `ca`, installed as `to` (with its chain) and
/// `to`'s key in `dir`.
fn leaf(pki: &Path, name: &str, ca: &str, extensions: &str, dir: &Path, to: &str) {
    request(pki, name, &format!("/O=Example Bank/CN={name}"));
    sign(pki, name, ca, extensions);
    let chain = [
        std::fs::read_to_string(pki.join(format!("{name}.pem"))).expect("leaf"),
        std::fs::read_to_string(pki.join(format!("{ca}.pem"))).expect("issuer"),
    ]
    .concat();
    std::fs::write(dir.join(format!("{to}.pem")), chain).expect("certificate");
    std::fs::copy(
        pki.join(format!("{name}.key")),
        dir.join(format!("{to}.key")),
    )
    .expect("key");
}

#[test]
fn certificates_from_the_banks_own_pki_with_an_intermediate_link_agents_and_refuse_others() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let site = SiteConfig {
        answering: vec!["198.18.3.0/24".parse().expect("cidr")],
        unreachable: vec![],
        ..SiteConfig::default()
    };
    let mut deployment = Deployment::start(site).expect("deployment");
    deployment.register_agent("site-agent", SITE);
    deployment.register_agent("other-agent", SITE);
    let ids = deployment.import_devices(SITE, Ipv4Addr::new(198, 18, 3, 1), 4, 500, 300);

    let pki_host = ward_e2e::work_dir().expect("pki");
    let pki = pki_host.path();
    bank_pki(pki);
    let d = &deployment.dir.path().to_owned();
    let host = deployment
        .lab
        .host_address()
        .expect("host link")
        .to_string();
    leaf(
        pki,
        "ward-controller",
        "issuing",
        &format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:{host},IP:127.0.0.1\n"
        ),
        d,
        "controller",
    );
    for (agent, ca) in [("site-agent", "issuing"), ("other-agent", "other")] {
        leaf(
            pki,
            agent,
            ca,
            &format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=clientAuth\nsubjectAltName=DNS:{agent}\n"
            ),
            d,
            &format!("agent-{agent}"),
        );
    }
    std::fs::copy(pki.join("root.pem"), d.join("ca.pem")).expect("root");
    std::fs::remove_file(d.join("ca.key")).expect("ward's own CA key goes");

    deployment.controller = None;
    let token = deployment.rest.token().expect("token").to_owned();
    deployment.rest = ward_e2e::Rest::with_ca(deployment.rest.base().to_owned(), &d.join("ca.pem"))
        .expect("REST client")
        .with_token(token);
    deployment
        .start_controller()
        .expect("controller on the bank's certificate");
    let agent = deployment
        .start_agent("site-agent", SITE, "site-agent")
        .expect("agent");
    wait_until("every device up", Duration::from_secs(30), || {
        deployment.rest.get("/api/v1/summary").1["up"] == ids.len()
    });

    let stranger = deployment
        .start_agent("other-agent", SITE, "other-agent")
        .expect("agent");
    wait_until(
        "the stranger's handshake refused",
        Duration::from_secs(20),
        || {
            deployment
                .rest
                .metric("ward_grpc_handshake_failures_total")
                .is_some_and(|failures| failures >= 1.0)
        },
    );
    let (_, agents) = deployment.rest.get("/api/v1/agents");
    let linked: Vec<&str> = agents
        .as_array()
        .expect("agents")
        .iter()
        .filter(|agent| agent["connected"] == true)
        .filter_map(|agent| agent["id"].as_str())
        .collect();
    assert_eq!(linked, ["site-agent"], "{agents}");

    // No CA's key on the controller's host.
    for entry in std::fs::read_dir(d).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "key") {
            let text = std::fs::read_to_string(&path).expect("key");
            for ca in ["root", "issuing", "other"] {
                let ca_key =
                    std::fs::read_to_string(pki.join(format!("{ca}.key"))).expect("ca key");
                assert_ne!(text, ca_key, "{} is {ca}'s key", path.display());
            }
        }
    }
    drop((agent, stranger));
}

/// `certs init --ca-key --ca-passphrase-file`: the CA's key written
/// elsewhere, encrypted; `certs agent` needs both to sign.
#[test]
fn certs_init_keeps_the_ca_key_elsewhere_and_encrypted() {
    let controller_host = ward_e2e::work_dir().expect("dir");
    let pki_host = ward_e2e::work_dir().expect("dir");
    let (etc, pki) = (controller_host.path(), pki_host.path());
    std::fs::write(pki.join("passphrase"), "a long bank passphrase\n").expect("passphrase");
    let certs = |args: &[&str]| {
        Command::new(controller_binary())
            .arg("certs")
            .args(args)
            .output()
            .expect("ward-controller runs")
    };
    let key = pki.join("ward-ca.key").to_string_lossy().into_owned();
    let passphrase = pki.join("passphrase").to_string_lossy().into_owned();
    let dir = etc.to_string_lossy().into_owned();
    let made = certs(&[
        "init",
        "--dir",
        &dir,
        "--name",
        "127.0.0.1",
        "--ca-key",
        &key,
        "--ca-passphrase-file",
        &passphrase,
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let placement = String::from_utf8_lossy(&made.stderr).into_owned();
    assert!(!placement.contains("WARNING"), "{placement}");
    assert!(
        !etc.join("ca.key").exists(),
        "no CA key beside the controller's"
    );
    let sealed = std::fs::read_to_string(&key).expect("CA key");
    assert!(sealed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));

    let refused = certs(&["agent", "branch-3", "--dir", &dir, "--ca-key", &key]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is encrypted: give its passphrase"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let issued = certs(&[
        "agent",
        "branch-3",
        "--dir",
        &dir,
        "--ca-key",
        &key,
        "--ca-passphrase-file",
        &passphrase,
    ]);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    assert!(etc.join("agent-branch-3.pem").exists());

    // Without either flag, the CA key lands beside the controller's, and
    // the command says so.
    let plain_host = ward_e2e::work_dir().expect("dir");
    let plain = plain_host.path().to_string_lossy().into_owned();
    let made = certs(&["init", "--dir", &plain, "--name", "127.0.0.1"]);
    assert!(made.status.success());
    assert!(
        String::from_utf8_lossy(&made.stderr).contains("WARNING: ")
            && String::from_utf8_lossy(&made.stderr).contains("is not encrypted"),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}
