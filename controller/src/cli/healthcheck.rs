//! `ward-controller healthcheck`: asks a running controller whether it is
//! ready, for a container's health check (an image without curl).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

/// What to ask.
#[derive(Args)]
pub(super) struct HealthcheckArgs {
    /// The URL that must answer 2xx.
    #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
    url: String,
    /// CA (PEM) that an https:// URL's certificate chains to.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Exits non-zero (an error naming the answer) unless `url` answers 2xx.
pub(super) async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let mut client = reqwest::Client::builder().timeout(args.timeout);
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("--ca {}", ca.display()))?;
        client = client.add_root_certificate(
            reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("--ca {}: not a PEM certificate", ca.display()))?,
        );
    }
    let answer = client
        .build()?
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("{} did not answer", args.url))?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        anyhow::bail!("{} answered {status}: {}", args.url, body.trim());
    }
    println!("{} answered {status}", args.url);
    Ok(())
}
