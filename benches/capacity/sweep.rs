//! Sweep: the one-shot run a network engineer tries first, measured the
//! way they meet it. Inside a namespace of its own (the lab's site, whose
//! `lo` answers all of 127.0.0.0/8), the same 65,534 targets from a file:
//! `ward-agent probe --json -c 1 -f FILE`, `fping -c 1 -q -i 0 -f FILE`
//! and the blaster; then one target (`127.0.0.1`) for ward and fping, and
//! `true` for what `ip netns exec` itself costs. Interleaved, whole
//! processes, medians with their spread.

use ward_testkit::lab::Lab;

use crate::table::Trials;
use crate::tools::{self, Setup};

const TRIALS: usize = 7;

const WARD: &str = "ward-agent probe --json -c 1 -f FILE";
const FPING: &str = "fping -c 1 -q -i 0 -f FILE";
const BLASTER: &str = "blaster (ward-capacity blast FILE)";
const WARD_ONE: &str = "ward-agent probe --json -c 1 127.0.0.1";
const FPING_ONE: &str = "fping -c 1 -q -i 0 127.0.0.1";
const NOTHING: &str = "ip netns exec … true";

pub fn run(lab: &Lab) -> anyhow::Result<()> {
    let setup = Setup::new()?;
    let (agent, file) = (setup.agent.as_str(), setup.file());
    let mut trials = Trials::default();
    for trial in 1..=TRIALS {
        trials.record(WARD, tools::ward(lab.site_command(agent), &["-f", file])?);
        trials.record(
            FPING,
            tools::fping(lab.site_command("fping"), &["-f", file])?,
        );
        trials.record(
            BLASTER,
            tools::blast(lab.site_command(&setup.harness), setup.targets.path())?,
        );
        trials.record(
            WARD_ONE,
            tools::ward(lab.site_command(agent), &["127.0.0.1"])?,
        );
        trials.record(
            FPING_ONE,
            tools::fping(lab.site_command("fping"), &["127.0.0.1"])?,
        );
        let measured = crate::measure::run(
            &mut lab.site_command("true"),
            std::time::Duration::from_secs(5),
        )?;
        trials.record(
            NOTHING,
            crate::table::Trial {
                wall: measured.wall,
                cpu: measured.cpu,
                reported_rate: None,
                matched_percent: 0.0,
                rx_drops: None,
            },
        );
        eprintln!("sweep: trial {trial}/{TRIALS} done");
    }
    print!("{}", trials.render());
    println!();
    println!("| goal (wall clock, whole process) | ratio of medians | per-trial range | goal |");
    println!("|---|---|---|---|");
    for (slower, faster, goal) in [
        (FPING, WARD, "fping / ward ≥ 1.5×"),
        (WARD, BLASTER, "ward / blaster ≤ 1.3×"),
        (FPING_ONE, WARD_ONE, "(one target, for reference)"),
    ] {
        if let Some((ratio, spread)) = trials.wall_ratio(slower, faster) {
            println!(
                "| {slower} / {faster} | {ratio:.2}× | {:.2}–{:.2}× | {goal} |",
                spread.min, spread.max
            );
        }
    }
    if let Some(one) = trials.wall(WARD_ONE) {
        println!(
            "| one target, ward, whole process | {:.1} ms | {:.1}–{:.1} ms | ≤ 20 ms |",
            one.median * 1e3,
            one.min * 1e3,
            one.max * 1e3
        );
    }
    Ok(())
}

const WARD_TCP: &str = "ward-agent probe --tcp 443 --json -c 1 -f FILE";
const NMAP: &str = "nmap -sS -p 443 -n -Pn --max-retries 0 -T5 --min-rate 100000 -iL FILE";
const TCP_TRIALS: usize = 5;

/// The same sweep by TCP SYN to port 443 (closed on loopback: every host
/// answers with an RST): `ward-agent probe --tcp 443` against nmap's raw
/// SYN scan at its fastest, interleaved.
pub fn run_tcp(lab: &Lab) -> anyhow::Result<()> {
    let setup = Setup::new()?;
    let (agent, file) = (setup.agent.as_str(), setup.file());
    let mut trials = Trials::default();
    for trial in 1..=TCP_TRIALS {
        trials.record(
            WARD_TCP,
            tools::ward(lab.site_command(agent), &["--tcp", "443", "-f", file])?,
        );
        trials.record(NMAP, tools::nmap(lab.site_command("nmap"), 443, file)?);
        eprintln!("tcp-sweep: trial {trial}/{TCP_TRIALS} done");
    }
    print!("{}", trials.render());
    println!();
    println!("| ratio (wall clock, whole process) | ratio of medians | per-trial range |");
    println!("|---|---|---|");
    if let Some((ratio, spread)) = trials.wall_ratio(NMAP, WARD_TCP) {
        println!(
            "| {NMAP} / {WARD_TCP} | {ratio:.2}× | {:.2}–{:.2}× |",
            spread.min, spread.max
        );
    }
    Ok(())
}
