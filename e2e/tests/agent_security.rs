//! Who may report what: an agent's client certificate names it; another
//! agent, even with a valid certificate, cannot report on its devices,
//! cannot pose as it, an unregistered agent is refused, and a client
//! without a certificate cannot link; the inventory takes API tokens, and
//! refuses agents' certificates.

use std::net::Ipv4Addr;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use ward_e2e::{Deployment, wait_until};
use ward_proto::v1::{self as pb, agent_message, controller_message};
use ward_testkit::lab::SiteConfig;

/// Opens a link with `certificate` (or none) saying `hello_as`; returns
/// the first controller message, or the error.
async fn first_answer(
    deployment: &Deployment,
    certificate: Option<&str>,
    hello_as: &str,
    then: Vec<pb::AgentMessage>,
) -> Result<Vec<pb::ControllerMessage>, String> {
    let dir = deployment.dir.path();
    let read = |name: &str| std::fs::read(dir.join(name)).expect("certificate file");
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem")));
    if let Some(agent) = certificate {
        tls = tls.identity(Identity::from_pem(
            read(&format!("agent-{agent}.pem")),
            read(&format!("agent-{agent}.key")),
        ));
    }
    let channel = Endpoint::from_shared(deployment.grpc_url.clone())
        .expect("url")
        .tls_config(tls)
        .expect("tls")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|error| format!("connect: {error:?}"))?;
    let mut client = pb::agent_link_client::AgentLinkClient::new(channel);
    let mut messages = vec![pb::AgentMessage {
        kind: Some(agent_message::Kind::Hello(pb::Hello {
            agent_id: hello_as.into(),
            boot_id: "test-boot".into(),
            version: "test".into(),
            ..pb::Hello::default()
        })),
    }];
    let expected = 1 + then.len();
    messages.extend(then);
    let response = client
        .connect(tokio_stream::iter(messages).chain(tokio_stream::pending()))
        .await
        .map_err(|status| format!("call: {status}"))?;
    let mut inbound = response.into_inner();
    let mut answers = Vec::new();
    while answers.len() < expected {
        match tokio::time::timeout(Duration::from_secs(5), inbound.message()).await {
            Ok(Ok(Some(message))) => {
                let refused = matches!(message.kind, Some(controller_message::Kind::Refusal(_)));
                answers.push(message);
                if refused {
                    break;
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(status)) => return Err(format!("stream: {status}")),
            Err(_) => break,
        }
    }
    Ok(answers)
}

use tokio_stream::StreamExt as _;

/// The refusal a link with `certificate`'s identity saying `hello_as` gets.
async fn refusal_for(deployment: &Deployment, certificate: &str, hello_as: &str) -> pb::Refusal {
    let answers = first_answer(deployment, Some(certificate), hello_as, vec![])
        .await
        .expect("TLS works");
    match answers.into_iter().next().and_then(|answer| answer.kind) {
        Some(controller_message::Kind::Refusal(refusal)) => refusal,
        other => panic!("refused: {other:?}"),
    }
}

#[test]
fn agents_report_only_on_their_own_devices_and_must_prove_who_they_are() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let site = SiteConfig {
        answering: vec!["198.18.4.0/24".parse().expect("cidr")],
        unreachable: vec![],
        ..SiteConfig::default()
    };
    let deployment = Deployment::start(site).expect("deployment");
    deployment.register_agent("site-agent", "branch-1");
    deployment.register_agent("other-agent", "branch-2");
    ward_controller::certs::agent(deployment.dir.path(), "stranger")
        .expect("stranger's certificate");
    let ids = deployment.import_devices("branch-1", Ipv4Addr::new(198, 18, 4, 1), 3, 500, 300);
    let _agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    wait_until("the site's devices up", Duration::from_secs(20), || {
        deployment.rest.get("/api/v1/summary").1["up"] == 3
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // The other site's agent, valid certificate, reports one of ours down.
    let forged = pb::AgentMessage {
        kind: Some(agent_message::Kind::Transitions(pb::TransitionBatch {
            traces: Vec::new(),
            seq: 1,
            transitions: vec![pb::Transition {
                device_id: u64::try_from(ids[0]).expect("id"),
                state: pb::DeviceState::Down.into(),
                probed_at_unix_us: i64::MAX / 2,
                reason: pb::TransitionReason::Timeouts.into(),
                ..pb::Transition::default()
            }],
        })),
    };
    let answers = runtime
        .block_on(first_answer(
            &deployment,
            Some("other-agent"),
            "other-agent",
            vec![forged],
        ))
        .expect("the other agent links");
    let Some(controller_message::Kind::Snapshot(snapshot)) = &answers[0].kind else {
        panic!("a snapshot first: {answers:?}");
    };
    assert!(
        snapshot.targets.is_empty(),
        "branch-2 has no devices: {snapshot:?}"
    );
    let Some(controller_message::Kind::Ack(ack)) = &answers[1].kind else {
        panic!("an ack: {answers:?}");
    };
    assert_eq!(ack.acked_seq, 1);
    assert_eq!(ack.rejected.len(), 1, "{ack:?}");
    assert_eq!(
        ack.rejected[0].reason,
        i32::from(pb::RejectionReason::NotAssigned)
    );
    let (_, device) = deployment.rest.get(&format!("/api/v1/devices/{}", ids[0]));
    assert_eq!(device["status"], "up", "nothing changed: {device}");

    // Its certificate, but claiming to be the site's agent.
    let refusal = runtime.block_on(refusal_for(&deployment, "other-agent", "site-agent"));
    assert_eq!(
        refusal.code,
        i32::from(pb::RefusalCode::IdentityMismatch),
        "{refusal:?}"
    );

    // A valid certificate of an agent nobody registered.
    let refusal = runtime.block_on(refusal_for(&deployment, "stranger", "stranger"));
    assert_eq!(
        refusal.code,
        i32::from(pb::RefusalCode::UnknownAgent),
        "{refusal:?}"
    );
    assert!(
        refusal.message.contains("agents add stranger"),
        "{refusal:?}"
    );

    // No certificate at all: TLS works (tools use tokens), the link does
    // not.
    let refusal = runtime.block_on(async {
        let answers = first_answer(&deployment, None, "site-agent", vec![])
            .await
            .expect("TLS without a client certificate");
        match answers.into_iter().next().and_then(|answer| answer.kind) {
            Some(controller_message::Kind::Refusal(refusal)) => refusal,
            other => panic!("a client without a certificate must not link: {other:?}"),
        }
    });
    assert_eq!(refusal.code(), pb::RefusalCode::IdentityMismatch);
    assert!(
        refusal.message.contains("no client certificate"),
        "{}",
        refusal.message
    );
    let (_, device) = deployment.rest.get(&format!("/api/v1/devices/{}", ids[0]));
    assert_eq!(device["status"], "up");
}

#[test]
fn a_certificate_name_mismatch_is_named_on_both_sides() {
    ward_testkit::require_root("the lab");
    let mut deployment = Deployment::start(SiteConfig::default()).expect("deployment");
    deployment.register_agent("site-agent", "branch-1");
    // The deployment's certificates re-issued (same files, a new CA) for a
    // name the agent does not connect by: it connects by address. (REST
    // goes on over loopback.)
    let reissued = ward_e2e::work_dir().expect("dir");
    ward_controller::certs::init(
        reissued.path(),
        &["controller.example".to_owned(), "127.0.0.1".to_owned()],
    )
    .expect("certificates");
    ward_controller::certs::agent(reissued.path(), "site-agent").expect("agent certificate");
    deployment.controller = None;
    let d = deployment.dir.path();
    for file in [
        "ca.pem",
        "ca.key",
        "controller.pem",
        "controller.key",
        "agent-site-agent.pem",
        "agent-site-agent.key",
    ] {
        std::fs::copy(reissued.path().join(file), d.join(file)).expect("copy");
    }
    let token = deployment.rest.token().expect("token").to_owned();
    deployment.rest = ward_e2e::Rest::with_ca(deployment.rest.base().to_owned(), &d.join("ca.pem"))
        .expect("REST client")
        .with_token(token);
    deployment.start_controller().expect("controller");
    let address = deployment
        .lab
        .host_address()
        .expect("host link")
        .to_string();
    let agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");

    // The agent names the address it asked for and the certificate's names.
    wait_until("the agent says why", Duration::from_secs(20), || {
        agent.log().contains("not valid for name")
    });
    let said = agent.log();
    let line = said
        .lines()
        .find(|line| line.contains("not valid for name"))
        .expect("the line");
    for name in [address.as_str(), "controller.example"] {
        assert!(line.contains(name), "the agent names `{name}`: {line}");
    }
    // The controller says a client refused its certificate, with the names
    // it holds, and counts it.
    wait_until("the controller says why", Duration::from_secs(10), || {
        deployment
            .controller_log()
            .contains("refused this controller's certificate")
    });
    let log = deployment.controller_log();
    let line = log
        .lines()
        .find(|line| line.contains("refused this controller's certificate"))
        .expect("the line");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("controller.example"), "{line}");
    assert!(
        deployment
            .rest
            .metric("ward_grpc_handshake_failures_total")
            .is_some_and(|failures| failures >= 1.0),
        "counted"
    );
}

#[test]
fn an_agent_certificate_cannot_change_the_inventory_and_the_attempt_is_audited() {
    ward_testkit::require_root("the lab");
    let deployment = Deployment::start(SiteConfig::default()).expect("deployment");
    deployment.register_agent("site-agent", "branch-1");
    deployment.register_agent("other-agent", "branch-2");
    let ours = deployment.import_devices("branch-1", Ipv4Addr::new(198, 18, 1, 9), 1, 1000, 500);
    let theirs = deployment.import_devices("branch-2", Ipv4Addr::new(198, 18, 1, 10), 1, 1000, 500);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = deployment.dir.path();
    let read = |name: &str| std::fs::read(dir.join(name)).expect("certificate file");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(
            read("agent-site-agent.pem"),
            read("agent-site-agent.key"),
        ));
    for id in [ours[0], theirs[0]] {
        let refused = runtime.block_on(async {
            let channel = Endpoint::from_shared(deployment.grpc_url.clone())
                .expect("url")
                .tls_config(tls.clone())
                .expect("tls")
                .connect()
                .await
                .expect("TLS works for an agent certificate");
            pb::inventory_client::InventoryClient::new(channel)
                .delete_device(pb::DeleteDeviceRequest {
                    id: u64::try_from(id).expect("id"),
                })
                .await
                .expect_err("an agent may not delete devices")
        });
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(
            refused.message().contains("AgentLink only"),
            "{}",
            refused.message()
        );
        let (code, _) = deployment.rest.get(&format!("/api/v1/devices/{id}"));
        assert_eq!(code, 200, "device {id} is still there");
        let audited = deployment.sql(&format!(
            "SELECT principal || '|' || action || '|' || outcome FROM audit_log \
             WHERE object = 'device {id}'"
        ));
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert!(
            audited[0].starts_with(
                "agent site-agent (certificate)|grpc Inventory/DeleteDevice|refused: "
            ),
            "{audited:?}"
        );
    }
    assert_eq!(
        deployment.rest.metric("ward_access_refused_total"),
        Some(2.0)
    );

    // A tool with an API token and no client certificate gets in.
    let token = deployment
        .rest
        .token()
        .expect("the admin's token")
        .to_owned();
    let listed = runtime.block_on(async {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem")));
        let channel = Endpoint::from_shared(deployment.grpc_url.clone())
            .expect("url")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("TLS without a client certificate");
        let mut request = tonic::Request::new(pb::ListDevicesRequest::default());
        let bearer = format!("Bearer {token}").parse().expect("ASCII");
        request.metadata_mut().insert("authorization", bearer);
        pb::inventory_client::InventoryClient::new(channel)
            .list_devices(request)
            .await
            .expect("a token is enough")
            .into_inner()
    });
    assert_eq!(listed.devices.len(), 2);
}

#[test]
fn certificates_in_use_are_counted_down_and_readyz_warns_before_they_expire() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let mut deployment = Deployment::start(SiteConfig::default()).expect("deployment");
    deployment.register_agent("site-agent", "branch-1");
    let agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    let rest = &deployment.rest;
    wait_until("the agent online", Duration::from_secs(20), || {
        rest.get("/api/v1/agents").1[0]["state"] == "online"
    });
    // `certs init` and `certs agent` issue for 825 days.
    let day = 86_400.0;
    for certificate in ["controller", "agent site-agent"] {
        let left = rest
            .metric(&format!(
                "ward_certificate_expiry_seconds{{certificate=\"{certificate}\"}}"
            ))
            .unwrap_or_else(|| panic!("{certificate}'s expiry in /metrics"));
        assert!(
            (823.0 * day..=825.0 * day).contains(&left),
            "{certificate}: {left}"
        );
    }
    let (_, ready) = rest.get("/readyz");
    assert_eq!(
        ready["components"]["certificates"]["status"], "ok",
        "{ready}"
    );
    drop(agent);

    // Warned 900 days ahead, both certificates are "about to expire".
    deployment
        .restart_controller_with("certificate_warning_days = 900\n")
        .expect("controller");
    let _agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    let rest = &deployment.rest;
    wait_until("the agent online again", Duration::from_secs(20), || {
        rest.get("/api/v1/agents").1[0]["state"] == "online"
    });
    let (_, ready) = rest.get("/readyz");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let expiring: Vec<&str> = ready["components"]["certificates"]["expiring"]
        .as_array()
        .expect("expiring")
        .iter()
        .map(|entry| entry["certificate"].as_str().expect("name"))
        .collect();
    assert_eq!(expiring, ["agent site-agent", "controller"], "{ready}");
}

#[test]
fn a_revoked_agent_is_cut_off_at_once_and_refused_until_it_has_a_new_certificate() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let deployment = Deployment::start(SiteConfig::default()).expect("deployment");
    deployment.register_agent("site-agent", "branch-1");
    deployment.import_devices("branch-1", Ipv4Addr::new(198, 18, 1, 20), 1, 500, 300);
    let agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    let rest = &deployment.rest;
    let connected = || rest.get("/api/v1/agents").1[0]["connected"] == true;
    wait_until("the agent connected", Duration::from_secs(20), connected);

    let config = deployment.dir.path().join("controller.toml");
    let started = std::time::Instant::now();
    let output = std::process::Command::new(ward_e2e::controller_binary())
        .args(["agents", "revoke", "site-agent", "--config"])
        .arg(&config)
        .output()
        .expect("revoke");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("1 certificate(s) revoked"),
        "{output:?}"
    );
    wait_until("the link cut", Duration::from_secs(5), || !connected());
    eprintln!("revoked agent cut off after {:?}", started.elapsed());
    wait_until("the agent told why", Duration::from_secs(20), || {
        agent.log().contains("was revoked")
    });
    // Started again with the same certificate, it is refused at once.
    drop(agent);
    let agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    wait_until("the reconnect refused", Duration::from_secs(20), || {
        agent.log().contains("was revoked")
    });
    assert!(!connected(), "a revoked certificate does not link again");
    let audited = deployment.sql(
        "SELECT principal || '|' || action FROM audit_log WHERE object = 'agent site-agent' \
         AND action = 'agent.revoke'",
    );
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0].starts_with("console"), "{audited:?}");
    drop(agent);

    // A new certificate for the same agent links again.
    ward_controller::certs::agent(deployment.dir.path(), "site-agent").expect("re-issue");
    let _agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    wait_until(
        "the agent back with its new certificate",
        Duration::from_secs(20),
        connected,
    );
}

/// The certificate the controller's HTTPS endpoint at `address` presents
/// now (DER), checked against the deployment's CA.
fn served_certificate(address: &str, ca: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("CA"))
        .expect("CA");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut connection =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut tcp = std::net::TcpStream::connect(address).expect("connect");
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).expect("handshake");
    }
    connection.peer_certificates().expect("certificates")[0].to_vec()
}

fn certificate_file(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("certificate")
        .to_vec()
}

#[test]
fn rest_is_https_and_a_new_certificate_is_taken_on_sighup_keeping_connected_agents() {
    ward_testkit::require_root("the lab and raw ICMP sockets");
    let deployment = Deployment::start(SiteConfig::default()).expect("deployment");
    deployment.register_agent("site-agent", "branch-1");
    let _agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    let rest = &deployment.rest;
    wait_until("the agent connected", Duration::from_secs(20), || {
        rest.get("/api/v1/agents").1[0]["connected"] == true
    });
    let (_, agents) = rest.get("/api/v1/agents");
    let since = agents[0]["since"].clone();
    let dir = deployment.dir.path();

    // REST answers HTTPS only.
    let plain = ward_e2e::Rest::new(format!("http://{}", deployment.rest_address()));
    assert_eq!(plain.get("/healthz").0, 0, "plain HTTP gets no answer");
    let served = served_certificate(deployment.rest_address(), &dir.join("ca.pem"));
    assert_eq!(served, certificate_file(&dir.join("controller.pem")));

    // A new certificate from the same CA, then SIGHUP.
    let host = deployment.lab.host_address().expect("host").to_string();
    let output = std::process::Command::new(ward_e2e::controller_binary())
        .args(["certs", "controller", "--dir"])
        .arg(dir)
        .args(["--name", &host, "--name", "127.0.0.1"])
        .output()
        .expect("certs controller");
    assert!(output.status.success(), "{output:?}");
    let renewed = certificate_file(&dir.join("controller.pem"));
    assert_ne!(renewed, served, "a new certificate was issued");
    deployment
        .controller
        .as_ref()
        .expect("controller")
        .signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(
        "HTTPS presents the new certificate",
        Duration::from_secs(10),
        || served_certificate(deployment.rest_address(), &dir.join("ca.pem")) == renewed,
    );
    // The log line follows the swap, so it may land just after the first new handshake.
    wait_until("the reload is logged", Duration::from_secs(5), || {
        deployment
            .controller_log()
            .contains("SIGHUP: TLS certificate and key read again")
    });
    // The agent's stream was never dropped: the same presence, connected.
    let (_, agents) = rest.get("/api/v1/agents");
    assert_eq!(agents[0]["connected"], true, "{agents}");
    assert_eq!(
        agents[0]["since"], since,
        "the agent did not reconnect: {agents}"
    );
    // A new agent connection gets the new certificate and links.
    drop(_agent);
    let _agent = deployment
        .start_agent("site-agent", "branch-1", "site-agent")
        .expect("agent");
    wait_until("the agent linked again", Duration::from_secs(20), || {
        let (_, agents) = rest.get("/api/v1/agents");
        agents[0]["connected"] == true && agents[0]["since"] != since
    });
}
