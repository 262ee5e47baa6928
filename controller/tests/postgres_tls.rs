//! The status database over TLS, under a bank's policy: a real PostgreSQL
//! with `ssl = on` that admits TCP connections only over TLS with a client
//! certificate (`hostssl … cert`), its certificates issued by the bank's
//! own PKI outside ward (a root CA, an intermediate that signs the server
//! and the client; no CA key anywhere near the controller). The store
//! connects with `sslmode=verify-full`; a wrong CA, a name the server's
//! certificate does not carry, a missing client certificate and a
//! plaintext connection are each refused, saying why.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use ward_controller::store::Store;
use ward_testkit::services::{Postgres, PostgresTls};

/// A CA's certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str, parent: Option<&Ca>) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let certificate = match parent {
        Some(parent) => params.signed_by(&key, &parent.issuer),
        None => params.self_signed(&key),
    }
    .expect("CA certificate");
    Ca {
        pem: certificate.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf signed by `ca`: (certificate PEM, key PEM).
fn leaf(
    ca: &Ca,
    names: &[&str],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
    .expect("names");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let certificate = params.signed_by(&key, &ca.issuer).expect("leaf");
    (certificate.pem(), key.serialize_pem())
}

/// The bank's PKI and a server using it; the client's files in `dir`.
struct Bank {
    postgres: Postgres,
    dir: tempfile::TempDir,
}

impl Bank {
    fn start() -> Self {
        let root = ca("Bank Root CA", None);
        let intermediate = ca("Bank Infrastructure CA", Some(&root));
        let (server, server_key) = leaf(
            &intermediate,
            &["127.0.0.1"],
            "db.bank.example",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            &intermediate,
            &["ward"],
            "ward",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let postgres = Postgres::start_requiring_tls(&PostgresTls {
            chain: format!("{server}{}", intermediate.pem),
            key: server_key,
            client_ca: root.pem.clone(),
        })
        .expect("start PostgreSQL with ssl = on");
        let dir = tempfile::Builder::new()
            .prefix("ward-test-pg-tls-")
            .tempdir()
            .expect("dir");
        let other = ca("Someone Else's CA", None);
        for (name, contents) in [
            ("root.pem", root.pem.as_str()),
            ("other-ca.pem", other.pem.as_str()),
            ("client.pem", &format!("{client}{}", intermediate.pem)),
            ("client.key", client_key.as_str()),
        ] {
            std::fs::write(dir.path().join(name), contents).expect("write");
        }
        Self { postgres, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's URL with `host` and `parameters` after it.
    fn url(&self, host: &str, parameters: &str) -> String {
        format!(
            "postgres://ward@{host}:{}/postgres?connect_timeout=5&{parameters}",
            self.postgres.port()
        )
    }

    /// `verify-full` (or `mode`) with the client certificate and `ca`.
    fn with_client(&self, host: &str, mode: &str, ca: &Path) -> String {
        self.url(
            host,
            &format!(
                "sslmode={mode}&sslrootcert={}&sslcert={}&sslkey={}",
                ca.display(),
                self.file("client.pem").display(),
                self.file("client.key").display()
            ),
        )
    }
}

/// What opening and pinging the store at `url` says when it fails.
async fn refusal(url: &str) -> String {
    match Store::open(url).await {
        Err(error) => error.to_string(),
        Ok(store) => match store.ping().await {
            Err(error) => error.to_string(),
            Ok(()) => panic!("{url}: connected"),
        },
    }
}

#[tokio::test]
async fn the_store_connects_over_verified_tls_with_a_client_certificate_and_nothing_less() {
    let bank = Bank::start();

    let url = bank.with_client("127.0.0.1", "verify-full", &bank.file("root.pem"));
    let store = Store::open(&url).await.expect("open");
    store
        .ping()
        .await
        .expect("verify-full with the bank's root");
    store.migrate().await.expect("migrate over TLS");
    store.data_version().await.expect("read over TLS");

    // Someone else's CA: the server is not trusted.
    let refused =
        refusal(&bank.with_client("127.0.0.1", "verify-full", &bank.file("other-ca.pem"))).await;
    assert!(
        refused.contains("invalid peer certificate") && refused.contains("UnknownIssuer"),
        "{refused}"
    );
    // A name the certificate does not carry: verify-full refuses,
    // verify-ca (the chain only) connects.
    let refused =
        refusal(&bank.with_client("localhost", "verify-full", &bank.file("root.pem"))).await;
    assert!(
        refused.contains("certificate not valid for name \"localhost\""),
        "{refused}"
    );
    let chain_only = bank.with_client("localhost", "verify-ca", &bank.file("root.pem"));
    Store::open(&chain_only)
        .await
        .expect("open")
        .ping()
        .await
        .expect("verify-ca checks the chain, not the name");
    // No client certificate: PostgreSQL refuses.
    let refused = refusal(&bank.url(
        "127.0.0.1",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            bank.file("root.pem").display()
        ),
    ))
    .await;
    assert!(refused.contains("certificate"), "{refused}");
    // Plaintext: no pg_hba.conf entry admits it.
    let refused = refusal(&bank.url("127.0.0.1", "sslmode=disable")).await;
    assert!(refused.contains("pg_hba.conf"), "{refused}");
}
