//! `deploy/prometheus/ward-rules.yml` passes `promtool check rules`, and
//! its unit tests (`ward-rules.test.yml`: each rule fires on the series
//! that should fire it, with its labels and annotations) pass under
//! `promtool test rules`, which evaluates every expression. Needs
//! `promtool` (Debian package `prometheus`; testkit/run-tests.sh installs
//! it).

use std::path::Path;
use std::process::Command;

fn promtool(arguments: &[&str]) -> String {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let output = Command::new("promtool")
        .args(arguments)
        .current_dir(&directory)
        .output()
        .expect("run promtool (Debian package `prometheus`; testkit/run-tests.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {arguments:?}: {said}");
    said
}

#[test]
fn the_rules_file_checks_and_every_rule_fires_as_its_unit_tests_say() {
    let checked = promtool(&["check", "rules", "ward-rules.yml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "ward-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}
