//! `ward-agent` command line. The probe engine and its subcommands
//! (`probe`, `run`) arrive with their issues; today it only identifies
//! itself.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "ward site agent: ICMP probes over raw sockets, reported to the controller"
)]
struct Cli {}

fn main() {
    let Cli {} = Cli::parse();
}
