//! `ward-controller healthcheck`: asks a running controller whether it is
//! ready, for a container's health check (an image without curl). By
//! default it asks the controller the environment configures: its
//! `WARD_LISTEN_HTTP` on loopback, over HTTPS when `WARD_TLS_CERT` is set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

/// What to ask.
#[derive(Args)]
pub(super) struct HealthcheckArgs {
    /// The URL that must answer 2xx [default: this environment's
    /// controller's /readyz].
    #[arg(long)]
    url: Option<String>,
    /// CA (PEM) that an https:// URL's certificate chains to [default: none
    /// checked for a loopback address, which is sent nothing secret].
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The controller's REST address, as `run` reads it.
    #[arg(long, env = "WARD_LISTEN_HTTP", hide = true)]
    listen_http: Option<SocketAddr>,
    /// Its certificate, as `run` reads it: HTTPS when set.
    #[arg(long, env = "WARD_TLS_CERT", hide = true)]
    tls_cert: Option<PathBuf>,
}

impl HealthcheckArgs {
    /// The readiness URL of the controller this environment configures.
    fn url(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let mut address = self
            .listen_http
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{address}/readyz")
    }
}

/// Exits non-zero (an error naming the answer) unless the URL answers 2xx.
pub(super) async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = args.url();
    let mut client = reqwest::Client::builder().timeout(args.timeout);
    match &args.ca {
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("--ca {}", ca.display()))?;
            client =
                client
                    .add_root_certificate(reqwest::Certificate::from_pem(&pem).with_context(
                        || format!("--ca {}: not a PEM certificate", ca.display()),
                    )?);
        }
        None => {
            let loopback = reqwest::Url::parse(&url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
                .and_then(|host| {
                    host.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .ok()
                })
                .is_some_and(|ip| ip.is_loopback());
            client = client.danger_accept_invalid_certs(loopback);
        }
    }
    let answer = client
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        anyhow::bail!("{url} answered {status}: {}", body.trim());
    }
    println!("{url} answered {status}");
    Ok(())
}
