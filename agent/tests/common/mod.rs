//! Running `ward-agent probe` and reading its output.

#![allow(dead_code)]

use std::process::{Command, Output};

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
