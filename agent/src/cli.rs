//! `ward-agent` command line (the binary's `main` is [`main`]).

use std::io::Read as _;
use std::process::ExitCode;

use std::path::PathBuf;

use crate::engine::{Check, TargetSpec};
use crate::probe_command::{self, Outcome, ProbeOptions};
use crate::prober::SendPath;
use crate::run::RunSettings;
use crate::run::config;
use crate::run::systemd::MaybeSystemd;
use crate::targets::{self, Origin};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "ward site agent: ICMP probes over raw sockets, reported to the controller"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Probe targets like fping and print per-target results.
    ///
    /// Exit status: 0 all targets up, 1 some not up, 2 bad input or no
    /// permission (bad targets are named and the good ones still probed).
    Probe(ProbeArgs),
    /// Run as the site's agent: probe what the controller assigns and
    /// report to it, until SIGINT or SIGTERM.
    Run(Box<RunArgs>),
}

/// Each flag overrides the same key of the configuration file.
#[derive(Args)]
struct RunArgs {
    /// TOML configuration file; flags and WARD_AGENT_* variables override it.
    #[arg(long, env = "WARD_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Controller gRPC URL [default: http://127.0.0.1:50051]; repeat the
    /// flag (or separate with commas) for the controllers of a cluster,
    /// tried in turn.
    #[arg(long, env = "WARD_AGENT_CONTROLLER", value_delimiter = ',')]
    controller: Vec<String>,
    /// This agent's id, as registered [default: the host name].
    #[arg(long, env = "WARD_AGENT_ID")]
    agent_id: Option<String>,
    /// The site this agent probes (checked against the registration).
    #[arg(long, env = "WARD_AGENT_SITE")]
    site: Option<String>,
    /// Spool directory [default: $STATE_DIRECTORY, else ./ward-agent-spool].
    #[arg(long, env = "WARD_AGENT_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// CA certificate (PEM) that signed the controller's certificate.
    #[arg(long, env = "WARD_AGENT_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This agent's certificate (PEM).
    #[arg(long, env = "WARD_AGENT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// This agent's private key (PEM).
    #[arg(long, env = "WARD_AGENT_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// How often statistics are reported [default: 10s].
    #[arg(long, env = "WARD_AGENT_REPORT_PERIOD", value_parser = humantime::parse_duration)]
    report_period: Option<std::time::Duration>,
    /// Global cap on probes per second [default: unlimited].
    #[arg(long, env = "WARD_AGENT_RATE", value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// How IPv4 probes leave the host: `ip` (the IP stack) or `packet`
    /// (a packet socket; bypasses nftables output rules and IPsec) [default: ip].
    #[arg(long, env = "WARD_AGENT_SEND_PATH", value_enum)]
    send_path: Option<SendPath>,
}

#[derive(Args)]
struct ProbeArgs {
    /// IPv4/IPv6 addresses, CIDR ranges (e.g. 127.1.0.0/16) or host names.
    targets: Vec<String>,
    /// Read targets from FILE, one per line, `#` starts a comment; `-` is
    /// standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// Probes per target.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    count: u32,
    /// Time between probes of one target, ms.
    #[arg(short, long, default_value_t = TargetSpec::DEFAULT_INTERVAL_MS, value_parser = clap::value_parser!(u32).range(1..=3_600_000))]
    interval: u32,
    /// How long to wait for a reply, ms.
    #[arg(short, long, default_value_t = TargetSpec::DEFAULT_TIMEOUT_MS, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    timeout: u32,
    /// Global cap on probes per second (default: unlimited).
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Consecutive misses before a target counts as down (capped at --count).
    #[arg(long, default_value_t = TargetSpec::DEFAULT_DOWN_AFTER, value_parser = clap::value_parser!(u8).range(1..))]
    down_after: u8,
    /// Consecutive replies before a down target counts as up (capped at --count).
    #[arg(long, default_value_t = TargetSpec::DEFAULT_UP_AFTER, value_parser = clap::value_parser!(u8).range(1..))]
    up_after: u8,
    /// One JSON object per target: target, sent, received, loss, rtt_*_ms, state.
    #[arg(long)]
    json: bool,
    /// Receive buffer per socket, bytes (raised past rmem_max when permitted).
    #[arg(long, default_value_t = 32 << 20)]
    receive_buffer: usize,
    /// How IPv4 probes leave the host: `ip` (the IP stack) or `packet` (a
    /// packet socket where the routing allows; bypasses nftables output
    /// rules and IPsec).
    #[arg(long, value_enum, default_value_t = SendPath::Ip)]
    send_path: SendPath,
    /// Probe with a TCP SYN to PORT instead of an ICMP echo request: a
    /// SYN/ACK (listening) or an RST (closed, the host there) answers;
    /// never a connection.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    tcp: Option<u16>,
    /// With --tcp: an ICMP echo request too, and either answer counts.
    #[arg(long, requires = "tcp")]
    icmp_too: bool,
    /// With --tcp: an RST (a closed port) does not count as an answer.
    #[arg(long, requires = "tcp")]
    no_rst_alive: bool,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Probe(args) => probe(args),
        Command::Run(args) => run(*args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    ward_settings::init_logging();
    let overrides = config::FileConfig {
        controllers: (!args.controller.is_empty()).then_some(args.controller),
        agent_id: args.agent_id,
        site: args.site,
        spool_dir: args.spool_dir,
        report_period: args.report_period,
        rate: args.rate,
        send_path: args.send_path,
        tls_ca: args.tls_ca,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        ..config::FileConfig::default()
    };
    let file = match args
        .config
        .as_deref()
        .map(config::FileConfig::load)
        .transpose()
    {
        Ok(file) => file.unwrap_or_default(),
        Err(error) => {
            eprintln!("ward-agent run: {error}");
            return ExitCode::from(2);
        }
    };
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    let state_directory = std::env::var_os("STATE_DIRECTORY").and_then(|dirs| {
        dirs.to_str()
            .and_then(|d| d.split(':').next())
            .map(PathBuf::from)
    });
    let settings = match RunSettings::resolve(overrides, file, &host_name, state_directory) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("ward-agent run: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ward-agent run: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(agent = %settings.agent_id, controllers = ?settings.controllers, "ward-agent starting");
    let shutdown = {
        let _inside = runtime.enter();
        shutdown_signal()
    };
    let result = runtime.block_on(crate::run::run(
        settings,
        std::sync::Arc::default(),
        MaybeSystemd::detect(),
        shutdown,
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The same words and status as `ward-agent probe`: what to grant.
        Err(crate::run::RunError::Prober(crate::prober::ProberError::Open(error))) => {
            tracing::error!(%error, "ward-agent cannot probe");
            eprintln!("ward-agent run: {error}");
            exit(Outcome::Refused)
        }
        Err(error) => {
            tracing::error!(%error, "ward-agent stopped");
            ExitCode::from(1)
        }
    }
}

/// Watches SIGINT and SIGTERM from now on (a signal that arrives while the
/// agent starts is not left to the default action, which would kill it
/// without `STOPPING=1`); the future completes on the first. Call inside
/// the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let watched = [SignalKind::terminate(), SignalKind::interrupt()].map(|kind| {
        signal(kind)
            .inspect_err(|error| tracing::error!(%error, ?kind, "cannot watch a stop signal"))
            .ok()
    });
    async move {
        let [terminate, interrupt] = watched;
        tokio::select! {
            () = next_signal(terminate) => {}
            () = next_signal(interrupt) => {}
        }
    }
}

/// The next signal on `stream`; never, without a stream.
async fn next_signal(stream: Option<tokio::signal::unix::Signal>) {
    match stream {
        Some(mut stream) => {
            stream.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn probe(args: ProbeArgs) -> ExitCode {
    let file_text = match args.file.as_deref().map(read_target_file).transpose() {
        Ok(text) => text,
        Err(error) => {
            eprintln!("ward-agent probe: {error}");
            return exit(Outcome::Refused);
        }
    };
    let arguments = args
        .targets
        .iter()
        .enumerate()
        .map(|(i, target)| (Origin::Argument(i + 1), target.as_str()));
    let from_file = args
        .file
        .as_deref()
        .zip(file_text.as_deref())
        .into_iter()
        .flat_map(|(file, text)| targets::lines(file, text));
    let expanded = targets::expand(arguments.chain(from_file));
    for error in &expanded.errors {
        eprintln!("ward-agent probe: {error}");
    }
    if expanded.addresses.is_empty() {
        if expanded.errors.is_empty() {
            eprintln!("ward-agent probe: no targets given (arguments, or -f FILE)");
        } else {
            eprintln!(
                "ward-agent probe: {} bad target(s) and no good one; nothing was probed",
                expanded.errors.len()
            );
        }
        return exit(Outcome::Refused);
    }
    let options = ProbeOptions {
        count: args.count,
        interval_ms: args.interval,
        timeout_ms: args.timeout,
        rate: args.rate,
        down_after: args.down_after,
        up_after: args.up_after,
        json: args.json,
        receive_buffer: args.receive_buffer,
        send_path: args.send_path,
        check: match (args.tcp, args.icmp_too) {
            (None, _) => Check::Icmp,
            (Some(port), false) => Check::Tcp {
                port,
                rst_alive: !args.no_rst_alive,
            },
            (Some(port), true) => Check::IcmpOrTcp {
                port,
                rst_alive: !args.no_rst_alive,
            },
        },
    };
    let mut out = std::io::stdout().lock();
    // Standard error is unbuffered: one write per line, not per field.
    let mut err = std::io::LineWriter::new(std::io::stderr().lock());
    match probe_command::run(&expanded.addresses, &options, &mut out, &mut err) {
        // As fping: the good targets probed, exit 2 for the bad ones.
        Ok(_) if !expanded.errors.is_empty() => {
            eprintln!(
                "ward-agent probe: {} bad target(s) named above were not probed",
                expanded.errors.len()
            );
            exit(Outcome::Refused)
        }
        Ok(outcome) => exit(outcome),
        Err(error) => {
            eprintln!("ward-agent probe: writing results: {error}");
            exit(Outcome::Refused)
        }
    }
}

/// The text of `-f FILE` (`-`: standard input).
fn read_target_file(file: &str) -> Result<String, String> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    };
    text.map_err(|error| format!("cannot read target file {file}: {error}"))
}

fn exit(outcome: Outcome) -> ExitCode {
    ExitCode::from(outcome as u8)
}
