//! `ward-agent probe` on real raw sockets against the kernel's loopback
//! echo (all of 127.0.0.0/8 answers, and ::1).

mod common;

use common::{AGENT, probe};

#[test]
fn all_of_127_1_0_0_20_is_up_with_a_real_rtt() {
    ward_testkit::require_root("raw ICMP sockets");
    let run = probe(&["127.1.0.0/20", "-c", "2", "-i", "200"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.targets.len(), 4094);
    for target in &run.targets {
        assert_eq!(target["state"], "up", "{target}");
        assert_eq!(target["received"], 2, "{target}");
        let rtt = target["rtt_avg_ms"].as_f64().expect("an RTT");
        assert!(rtt > 0.0 && rtt < 100.0, "{target}");
    }
    assert_eq!(run.summary("sent"), 8188);
    assert_eq!(run.summary("received"), 8188);
    assert_eq!(run.summary("invalid"), 0);
}

#[test]
fn one_loopback_target_exits_zero_with_its_result() {
    ward_testkit::require_root("raw ICMP sockets");
    let started = std::time::Instant::now();
    let run = probe(&["-c", "1", "127.0.0.1"]);
    // Reported, not asserted (docs/BENCHMARKS.md has the measured figure).
    eprintln!("one loopback target: whole process {:?}", started.elapsed());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let target = run.only_target();
    assert_eq!(target["target"], "127.0.0.1");
    assert_eq!(target["state"], "up");
    assert_eq!(
        (target["sent"].as_u64(), target["received"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        target["rtt_max_ms"].as_f64().expect("rtt") > 0.0,
        "{target}"
    );
    assert_eq!(run.summary("received"), 1);
}

#[test]
fn text_results_name_each_target_with_its_rtt() {
    ward_testkit::require_root("raw ICMP sockets");
    let output = std::process::Command::new(AGENT)
        .args(["probe", "-c", "2", "-i", "10", "127.0.0.7", "127.0.0.8"])
        .output()
        .expect("run ward-agent");
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, target) in lines.iter().zip(["127.0.0.7", "127.0.0.8"]) {
        assert!(
            line.starts_with(&format!(
                "{target} : up, 2/2 received, 0% loss, rtt min/avg/max "
            )),
            "{line}"
        );
        assert!(line.ends_with(" ms"), "{line}");
    }
}

#[test]
fn ipv6_loopback_is_up() {
    ward_testkit::require_root("raw ICMPv6 sockets");
    let run = probe(&["::1", "-c", "3", "-i", "50"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let target = run.only_target();
    assert_eq!(target["target"], "::1");
    assert_eq!(target["state"], "up");
    assert_eq!(target["loss"], 0.0);
    assert!(target["rtt_min_ms"].as_f64().expect("rtt") > 0.0);
}

#[test]
fn a_bad_target_is_named_by_line_and_the_good_ones_are_probed() {
    ward_testkit::require_root("raw ICMP sockets");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), "127.0.0.1\n# comment\n127.0.0.300\n::1\n").expect("write");
    let path = file.path().to_str().expect("utf-8 path");
    let run = probe(&["-f", path]);
    // As fping: the good ones probed, the bad one named, exit 2.
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let probed: Vec<&str> = run
        .targets
        .iter()
        .map(|target| target["target"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(probed, ["127.0.0.1", "::1"], "{}", run.stderr);
    assert!(run.targets.iter().all(|target| target["state"] == "up"));
    assert!(
        run.stderr
            .contains(&format!("line 3 of {path}: `127.0.0.300`")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("1 bad target(s) named above were not probed"),
        "{}",
        run.stderr
    );
}

#[test]
fn only_bad_targets_probe_nothing() {
    let run = probe(&["127.0.0.300", "::ffff:127.0.0.1"]);
    assert_eq!(run.code, Some(2));
    assert!(run.targets.is_empty(), "nothing may be probed");
    assert!(
        run.stderr
            .contains("2 bad target(s) and no good one; nothing was probed"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(" targets, sent "),
        "no run summary: {}",
        run.stderr
    );
}

#[test]
fn targets_can_come_from_stdin() {
    ward_testkit::require_root("raw ICMP sockets");
    use std::io::Write as _;
    let mut child = std::process::Command::new(AGENT)
        .args(["probe", "--json", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"127.0.0.5\n127.0.0.6 # second\n")
        .expect("write targets");
    let run = common::Run::from_output(&child.wait_with_output().expect("wait"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let names: Vec<&str> = run
        .targets
        .iter()
        .map(|t| t["target"].as_str().expect("target"))
        .collect();
    assert_eq!(names, ["127.0.0.5", "127.0.0.6"]);
}
