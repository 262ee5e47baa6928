//! Running `ward-agent probe` and reading its output; starting a prober
//! in a lab and following its transitions.

#![allow(dead_code)]

use std::net::IpAddr;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ward_agent::engine::{EngineConfig, Start, TargetSpec, Transition};
use ward_agent::prober::{Prober, ProberConfig, SendPath};
use ward_testkit::lab::Lab;

/// The built `ward-agent` binary.
pub const AGENT: &str = env!("CARGO_BIN_EXE_ward-agent");

/// Per-target results of `--json`, and the summary line.
pub struct Run {
    pub code: Option<i32>,
    pub targets: Vec<serde_json::Value>,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: &Output) -> Self {
        let stdout = String::from_utf8_lossy(&output.stdout);
        Self {
            code: output.status.code(),
            targets: stdout
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// A number from the summary, e.g. `summary("duplicates")`.
    pub fn summary(&self, name: &str) -> u64 {
        let line = self
            .stderr
            .lines()
            .find(|line| line.contains(" targets, sent "))
            .unwrap_or_else(|| panic!("no summary in: {}", self.stderr));
        line.split(", ")
            .find_map(|part| part.trim().strip_prefix(&format!("{name} ")))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in: {line}"))
    }

    pub fn only_target(&self) -> &serde_json::Value {
        assert_eq!(self.targets.len(), 1, "{}", self.stderr);
        &self.targets[0]
    }
}

/// Runs `command` (already holding the agent and its arguments).
pub fn run(command: &mut Command) -> Run {
    let output = command.output().expect("run ward-agent");
    Run::from_output(&output)
}

/// `ward-agent probe ARGS --json` on this host.
pub fn probe(args: &[&str]) -> Run {
    run(Command::new(AGENT).arg("probe").arg("--json").args(args))
}

/// A continuous prober as the agent runs one (replies taken in at the
/// engine's next wake-up): immediate start, a 1 MiB receive buffer.
pub fn continuous(send_path: SendPath, all_families: bool) -> ProberConfig {
    ProberConfig {
        wake_for_each_reply: false,
        engine: EngineConfig {
            start: Start::Immediately,
            ..EngineConfig::default()
        },
        receive_buffer: 1 << 20,
        linger: Duration::ZERO,
        all_families,
        send_path,
    }
}

/// Starts a continuous prober on `targets` in the lab's client namespace;
/// its transitions arrive on the receiver.
pub fn start_in_client(
    lab: &Lab,
    send_path: SendPath,
    targets: Vec<(TargetSpec, u64)>,
) -> (Prober, mpsc::Receiver<Transition>) {
    let config = continuous(send_path, false);
    let (sender, events) = mpsc::channel();
    let prober = lab
        .run_in_client(move || {
            Prober::start(config, &targets, move |_, transition| {
                let _ = sender.send(transition);
            })
        })
        .expect("enter the client namespace")
        .expect("start the prober");
    (prober, events)
}

/// Waits for the next transition of `address`.
pub fn next_transition(
    events: &mpsc::Receiver<Transition>,
    address: IpAddr,
    within: Duration,
) -> Transition {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let transition = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no transition of {address} within {within:?}"));
        if transition.address == address {
            return transition;
        }
    }
}
