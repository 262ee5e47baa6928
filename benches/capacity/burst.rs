//! Burst: the 65,534 addresses of 127.1.0.0/16 probed once from the lab's
//! client namespace over its veth (so zmap can take part), at rising rates
//! and unlimited, by ward (both send paths), zmap, fping and the blaster,
//! interleaved, each measured as a whole process.

use ward_testkit::lab::Lab;

use crate::table::Trials;
use crate::tools::{self, Setup};

const TRIALS: usize = 5;
const RATES: [Option<u32>; 4] = [Some(50_000), Some(100_000), Some(200_000), None];

fn label(tool: &str, rate: Option<u32>) -> String {
    match rate {
        Some(rate) => format!("{tool} @ {rate}/s"),
        None => format!("{tool}, unlimited"),
    }
}

pub fn run(lab: &Lab) -> anyhow::Result<()> {
    let setup = Setup::new()?;
    let (agent, file) = (setup.agent.as_str(), setup.file());
    let blocklist = tempfile::NamedTempFile::new()?;
    let mut trials = Trials::default();
    for trial in 1..=TRIALS {
        for rate in RATES {
            let rate_text = rate.map(|rate| rate.to_string());
            let rate_args: Vec<&str> = rate_text
                .as_deref()
                .map(|rate| vec!["-r", rate])
                .unwrap_or_default();
            for send_path in ["ip", "packet"] {
                let mut args = vec!["--send-path", send_path, "-f", file];
                args.extend(&rate_args);
                let run = tools::ward(lab.client_command(agent), &args)?;
                trials.record(&label(&format!("ward {send_path}"), rate), run);
            }
            let run = tools::zmap(
                lab.client_command("zmap"),
                rate.unwrap_or(0),
                blocklist.path(),
            )?;
            trials.record(&label("zmap", rate), run);
            if rate.is_none() {
                let run = tools::fping(lab.client_command("fping"), &["-f", file])?;
                trials.record(&label("fping", rate), run);
                let run = tools::blast(lab.client_command(&setup.harness), setup.targets.path())?;
                trials.record(&label("blaster", rate), run);
            }
        }
        eprintln!("burst: trial {trial}/{TRIALS} done");
    }
    print!("{}", trials.render());
    println!();
    println!("| unlimited, wall clock | ratio of medians | per-trial range |");
    println!("|---|---|---|");
    let unlimited = |tool| label(tool, None);
    for (slower, faster) in [
        ("fping", "ward ip"),
        ("fping", "ward packet"),
        ("zmap", "ward ip"),
        ("zmap", "ward packet"),
        ("ward ip", "blaster"),
        ("ward packet", "blaster"),
        ("zmap", "blaster"),
        ("fping", "blaster"),
    ] {
        if let Some((ratio, spread)) = trials.wall_ratio(&unlimited(slower), &unlimited(faster)) {
            println!(
                "| {slower} / {faster} | {ratio:.2}× | {:.2}–{:.2}× |",
                spread.min, spread.max
            );
        }
    }
    Ok(())
}
