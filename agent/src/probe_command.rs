//! `ward-agent probe`: fping-like probing for people and capacity tests.
//! Per-target results on stdout (text or JSON lines), a summary on stderr,
//! exit status 0 (all up), 1 (some not up) or 2 (bad input, no
//! permission).

use std::io::{IsTerminal as _, Write as _};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::engine::{Check, Engine, EngineConfig, PeriodStats, Start, Status, TargetSpec};
use crate::prober::{Prober, ProberConfig, SendPath};
use crate::sys::SocketKind;

/// The longest a run keeps listening after its last probe concluded, to
/// count duplicates still on their way (it waits twice the longest round
/// trip it saw, so a loopback sweep lingers about a millisecond).
const MAX_LINGER: Duration = Duration::from_millis(100);

/// Options of one run (already validated by the command line parser).
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Probes per target.
    pub count: u32,
    /// Time between probes of one target, ms.
    pub interval_ms: u32,
    /// Wait for a reply this long, ms.
    pub timeout_ms: u32,
    /// Global rate cap, probes/s.
    pub rate: Option<u32>,
    /// Consecutive misses before DOWN (capped at `count`).
    pub down_after: u8,
    /// Consecutive replies before UP again (capped at `count`).
    pub up_after: u8,
    /// One JSON object per target instead of text.
    pub json: bool,
    /// Receive buffer per socket, bytes.
    pub receive_buffer: usize,
    /// How IPv4 probes leave the host.
    pub send_path: SendPath,
    /// What answers (ICMP, or a TCP port).
    pub check: Check,
}

/// Exit status of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every target answered.
    AllUp = 0,
    /// At least one target did not.
    SomeNotUp = 1,
    /// Bad input or no permission: nothing (more) was probed, or some
    /// targets were bad (the good ones were probed, as fping does).
    Refused = 2,
}

/// Probes `addresses` and writes results to `out`, the summary and any
/// problem to `err`.
pub fn run(
    addresses: &[IpAddr],
    options: &ProbeOptions,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> std::io::Result<Outcome> {
    let targets = targets(addresses, options);
    let config = prober_config(options);
    let started = Instant::now();
    let prober = match Prober::start(config, &targets, |_, _| {}) {
        Ok(prober) => prober,
        Err(error) => {
            writeln!(err, "ward-agent probe: {error}")?;
            return Ok(Outcome::Refused);
        }
    };
    report_degraded(&prober, err)?;
    let expected = targets.len() as u64 * u64::from(options.count);
    let progress = std::io::stderr().is_terminal();
    while !prober.wait(Duration::from_millis(200)) {
        if progress && started.elapsed() > Duration::from_secs(2) {
            let sent = prober.counters().sent.load(Ordering::Relaxed);
            write!(err, "\r{}", progress_bar(sent, expected))?;
            err.flush()?;
        }
    }
    if progress && started.elapsed() > Duration::from_secs(2) {
        writeln!(err)?;
    }
    let elapsed = started.elapsed();
    let summary = Summary::from_prober(&prober);
    let engine = prober.finish();
    let all_up = write_results(&engine, &targets, options.json, out)?;
    summary.write(&engine, elapsed, err)?;
    Ok(if all_up {
        Outcome::AllUp
    } else {
        Outcome::SomeNotUp
    })
}

/// One target per address, its id its position; thresholds capped at the
/// probe count so every target reaches a verdict.
fn targets(addresses: &[IpAddr], options: &ProbeOptions) -> Vec<(TargetSpec, u64)> {
    let cap = |threshold: u8| {
        threshold
            .min(u8::try_from(options.count).unwrap_or(u8::MAX))
            .max(1)
    };
    addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let spec = TargetSpec {
                source: None,
                check: options.check,
                address: *address,
                interval_ms: options.interval_ms,
                timeout_ms: options.timeout_ms,
                down_after: cap(options.down_after),
                up_after: cap(options.up_after),
            };
            (spec, i as u64)
        })
        .collect()
}

/// A one-shot run: `count` probes per target, all started at once.
fn prober_config(options: &ProbeOptions) -> ProberConfig {
    ProberConfig {
        wake_for_each_reply: true,
        engine: EngineConfig {
            rate: options.rate,
            probes_per_target: Some(options.count),
            start: Start::Immediately,
            ..EngineConfig::default()
        },
        receive_buffer: options.receive_buffer,
        linger: MAX_LINGER,
        all_families: false,
        send_path: options.send_path,
    }
}

/// Writes one result line per target (JSON or text); true if every
/// target is up.
fn write_results(
    engine: &Engine,
    targets: &[(TargetSpec, u64)],
    json: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<bool> {
    // One write per 64 KiB, not per line (standard output is line buffered).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut all_up = true;
    for index in 0..u32::try_from(targets.len()).unwrap_or(u32::MAX) {
        let (status, stats) = (
            engine.status(index).unwrap_or(Status::Unknown),
            engine.period_stats(index).unwrap_or_default(),
        );
        let state = final_state(status, &stats);
        all_up &= state == "up";
        let line = ResultLine {
            address: targets[index as usize].0.address,
            state,
            stats: &stats,
        };
        if json {
            line.write_json(&mut out)?;
        } else {
            line.write_text(&mut out)?;
        }
    }
    out.flush()?;
    Ok(all_up)
}

/// The state to report: the engine's verdict (thresholds are capped at the
/// probe count, so every target has one).
fn final_state(status: Status, stats: &PeriodStats) -> &'static str {
    match status {
        Status::Up => "up",
        Status::Down => "down",
        Status::Unreachable => "unreachable",
        Status::Unknown if stats.received > 0 => "up",
        Status::Unknown => "down",
    }
}

fn loss(stats: &PeriodStats) -> f64 {
    if stats.sent == 0 {
        return 1.0;
    }
    1.0 - f64::from(stats.received) / f64::from(stats.sent)
}

/// Microseconds as milliseconds with three decimals, exactly (integer
/// formatting: no float rounding per line).
struct Ms(u32);

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// One target's result, as printed.
struct ResultLine<'a> {
    address: IpAddr,
    state: &'a str,
    stats: &'a PeriodStats,
}

impl ResultLine<'_> {
    /// `127.0.0.1 : up, 1/1 received, 0% loss, rtt min/avg/max 0.012/0.012/0.012 ms`
    fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let stats = self.stats;
        write!(
            out,
            "{} : {}, {}/{} received, {:.0}% loss",
            self.address,
            self.state,
            stats.received,
            stats.sent,
            loss(stats) * 100.0
        )?;
        if stats.received > 0 {
            write!(
                out,
                ", rtt min/avg/max {}/{}/{} ms",
                Ms(stats.rtt_min_us),
                Ms(stats.rtt_avg_us()),
                Ms(stats.rtt_max_us)
            )?;
        }
        out.write_all(b"\n")
    }

    /// One JSON object: target, sent, received, loss, rtt_{min,avg,max}_ms
    /// (null without replies), state. Written field by field: nothing is
    /// allocated per target.
    fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let stats = self.stats;
        write!(
            out,
            "{{\"target\":\"{}\",\"sent\":{},\"received\":{},\"loss\":{}",
            self.address,
            stats.sent,
            stats.received,
            loss(stats)
        )?;
        for (name, us) in [
            ("rtt_min_ms", stats.rtt_min_us),
            ("rtt_avg_ms", stats.rtt_avg_us()),
            ("rtt_max_ms", stats.rtt_max_us),
        ] {
            if stats.received > 0 {
                write!(out, ",\"{name}\":{}", Ms(us))?;
            } else {
                write!(out, ",\"{name}\":null")?;
            }
        }
        writeln!(out, ",\"state\":\"{}\"}}", self.state)
    }
}

fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    format!(
        "[{}{}] {done}/{total} probes sent",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize)
    )
}

/// Says once, on stderr, which kernel features are missing.
fn report_degraded(prober: &Prober, err: &mut impl std::io::Write) -> std::io::Result<()> {
    if let Some(note) = prober.send_path_note() {
        writeln!(err, "ward-agent probe: {note}")?;
    }
    for (family, features) in prober.features() {
        if features.kind == SocketKind::Datagram {
            writeln!(
                err,
                "ward-agent probe: {family:?}: no CAP_NET_RAW, using unprivileged ICMP datagram \
                 sockets (ICMP unreachable errors are not seen; unreachable hosts time out)"
            )?;
        }
        if !features.kernel_timestamps {
            writeln!(
                err,
                "ward-agent probe: {family:?}: no kernel receive timestamps; RTTs include scheduling delay"
            )?;
        }
        if !features.kernel_filter {
            writeln!(
                err,
                "ward-agent probe: {family:?}: no kernel packet filter; all ICMP reaches the agent"
            )?;
        }
        if !features.drop_counter {
            writeln!(
                err,
                "ward-agent probe: {family:?}: kernel drop counter unavailable; rx drops are not counted"
            )?;
        }
    }
    Ok(())
}

/// Receiver and sender counters at the end of a run.
struct Summary {
    bad_tag: u64,
    malformed: u64,
    queue_overflow: u64,
    kernel_drops: u64,
    send_errors: u64,
    /// Probes sent through the packet socket (`--send-path packet`).
    sent_packet_socket: u64,
    /// From the first to the last probe handed to the kernel.
    send_phase: Duration,
}

impl Summary {
    fn from_prober(prober: &Prober) -> Self {
        let counters = prober.counters();
        Self {
            bad_tag: counters.bad_tag.load(Ordering::Relaxed),
            malformed: counters.malformed.load(Ordering::Relaxed),
            queue_overflow: counters.queue_overflow.load(Ordering::Relaxed),
            kernel_drops: counters.kernel_drops.load(Ordering::Relaxed),
            send_errors: counters.send_errors.load(Ordering::Relaxed),
            sent_packet_socket: counters.sent_packet_socket.load(Ordering::Relaxed),
            send_phase: Duration::from_nanos(
                counters
                    .last_send_ns
                    .load(Ordering::Relaxed)
                    .saturating_sub(counters.first_send_ns.load(Ordering::Relaxed)),
            ),
        }
    }

    /// `elapsed`: from the start of the prober to its end.
    fn write(
        &self,
        engine: &Engine,
        elapsed: Duration,
        err: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let counters = engine.counters();
        let invalid =
            counters.replies_invalid + counters.tcp_unmatched + self.bad_tag + self.malformed;
        let rate = counters.probes_sent as f64 / elapsed.as_secs_f64().max(1e-9);
        // One probe has no send phase: its rate is the run's.
        let send_rate = if self.send_phase.is_zero() {
            rate
        } else {
            counters.probes_sent as f64 / self.send_phase.as_secs_f64()
        };
        // RSTs of a closed port where that is not an answer (--no-rst-alive).
        let closed = match counters.tcp_refused {
            0 => String::new(),
            refused => format!(", closed ports {refused}"),
        };
        writeln!(
            err,
            "ward-agent probe: {} targets, sent {}, received {}, invalid {invalid}, late {}, \
             duplicates {}, icmp errors {}, rx drops {}, queue drops {}, send errors {}, \
             via packet socket {}, elapsed {:.3} s, {rate:.0} probes/s, send rate {send_rate:.0} probes/s\
             {closed}",
            engine.target_count(),
            counters.probes_sent,
            counters.replies_matched,
            counters.replies_late,
            counters.replies_duplicate,
            counters.icmp_errors,
            self.kernel_drops,
            self.queue_overflow,
            self.send_errors,
            self.sent_packet_socket,
            elapsed.as_secs_f64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(sent: u32, rtts_us: &[u32]) -> PeriodStats {
        PeriodStats {
            sent,
            received: u32::try_from(rtts_us.len()).expect("few"),
            rtt_min_us: rtts_us.iter().copied().min().unwrap_or(0),
            rtt_max_us: rtts_us.iter().copied().max().unwrap_or(0),
            rtt_sum_us: rtts_us.iter().copied().map(u64::from).sum(),
            jitter_sum_us: 0,
        }
    }

    fn written(json: bool, stats: &PeriodStats, state: &str) -> String {
        let line = ResultLine {
            address: "127.0.0.1".parse().expect("address"),
            state,
            stats,
        };
        let mut out = Vec::new();
        if json {
            line.write_json(&mut out).expect("write");
        } else {
            line.write_text(&mut out).expect("write");
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn json_lines_are_valid_json_with_exact_milliseconds() {
        let line = written(true, &stats(2, &[12, 1_234_567]), "up");
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["target"], "127.0.0.1");
        assert_eq!(value["rtt_min_ms"].as_f64(), Some(0.012));
        assert_eq!(value["rtt_max_ms"].as_f64(), Some(1234.567));
        assert_eq!(value["rtt_avg_ms"].as_f64(), Some(617.289));
        assert_eq!(value["loss"].as_f64(), Some(0.0));
        assert!(line.ends_with("\"state\":\"up\"}\n"), "{line}");
        let silent: serde_json::Value =
            serde_json::from_str(&written(true, &stats(3, &[]), "down")).expect("JSON");
        assert!(silent["rtt_avg_ms"].is_null());
        assert_eq!(silent["loss"].as_f64(), Some(1.0));
    }

    #[test]
    fn text_lines_read_like_fping() {
        assert_eq!(
            written(false, &stats(2, &[40, 60]), "up"),
            "127.0.0.1 : up, 2/2 received, 0% loss, rtt min/avg/max 0.040/0.050/0.060 ms\n"
        );
        assert_eq!(
            written(false, &stats(4, &[]), "down"),
            "127.0.0.1 : down, 0/4 received, 100% loss\n"
        );
    }
}
