//! `ward-agent` command line.

use std::io::Read as _;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ward_agent::engine::TargetSpec;
use ward_agent::probe_command::{self, Outcome, ProbeOptions};
use ward_agent::targets::{self, Origin};

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
    /// permission.
    Probe(ProbeArgs),
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Probe(args) => probe(args),
    }
}

fn probe(args: ProbeArgs) -> ExitCode {
    let mut entries: Vec<(Origin, String)> = args
        .targets
        .iter()
        .enumerate()
        .map(|(i, target)| (Origin::Argument(i + 1), target.clone()))
        .collect();
    if let Some(file) = &args.file {
        let text = if file == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(file)
        };
        match text {
            Ok(text) => entries.extend(targets::lines(file, &text)),
            Err(error) => {
                eprintln!("ward-agent probe: cannot read target file {file}: {error}");
                return exit(Outcome::Refused);
            }
        }
    }
    let addresses = match targets::expand(&entries) {
        Ok(addresses) if addresses.is_empty() => {
            eprintln!("ward-agent probe: no targets given (arguments, or -f FILE)");
            return exit(Outcome::Refused);
        }
        Ok(addresses) => addresses,
        Err(errors) => {
            for error in &errors {
                eprintln!("ward-agent probe: {error}");
            }
            eprintln!(
                "ward-agent probe: {} bad target(s); nothing was probed",
                errors.len()
            );
            return exit(Outcome::Refused);
        }
    };
    let options = ProbeOptions {
        count: args.count,
        interval_ms: args.interval,
        timeout_ms: args.timeout,
        rate: args.rate,
        down_after: args.down_after,
        up_after: args.up_after,
        json: args.json,
        receive_buffer: args.receive_buffer,
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    match probe_command::run(&addresses, &options, &mut out, &mut err) {
        Ok(outcome) => exit(outcome),
        Err(error) => {
            eprintln!("ward-agent probe: writing results: {error}");
            exit(Outcome::Refused)
        }
    }
}

fn exit(outcome: Outcome) -> ExitCode {
    ExitCode::from(outcome as u8)
}
