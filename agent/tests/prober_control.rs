//! A continuous prober takes targets while it runs (added, changed,
//! removed) and hands out per-period statistics: what `ward-agent run`
//! does with the controller's assignment. Real raw sockets on loopback.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use ward_agent::engine::{Status, TargetSpec};
use ward_agent::prober::{Control, Prober, SendPath};

fn spec(address: &str) -> TargetSpec {
    TargetSpec {
        interval_ms: 50,
        timeout_ms: 40,
        up_after: 1,
        ..TargetSpec::with_defaults(address.parse().expect("address"))
    }
}

fn statistics(prober: &Prober) -> Vec<(u64, ward_agent::engine::PeriodStats)> {
    let (reply, answer) = mpsc::sync_channel(1);
    prober
        .control(Control::TakeStatistics(reply))
        .expect("control queue");
    let mut statistics: Vec<_> = answer
        .recv_timeout(Duration::from_secs(5))
        .expect("statistics")
        .into_iter()
        .map(|(id, stats, _)| (id, stats))
        .collect();
    statistics.sort_by_key(|(id, _)| *id);
    statistics
}

#[test]
fn targets_come_and_go_while_the_prober_runs() {
    ward_testkit::require_root("raw ICMP sockets");
    let config = common::continuous(SendPath::Ip, true);
    let (sender, transitions) = mpsc::channel();
    let prober = Prober::start(config, &[], move |_, transition| {
        let _ = sender.send(transition);
    })
    .expect("start with no targets");
    assert!(
        prober.families().len() == 2,
        "both families open on loopback"
    );
    for (id, address) in [(1, "127.0.0.1"), (2, "127.0.0.2"), (3, "::1")] {
        prober
            .control(Control::Upsert {
                id,
                spec: spec(address),
                known: Status::Unknown,
                quality: None,
                known_level: None,
            })
            .expect("control queue");
    }
    let mut up = Vec::new();
    while up.len() < 3 {
        let transition = transitions
            .recv_timeout(Duration::from_secs(5))
            .expect("each new target turns up");
        assert_eq!(transition.status, Status::Up);
        up.push(transition.id);
    }
    up.sort_unstable();
    assert_eq!(up, [1, 2, 3]);
    let first = statistics(&prober);
    assert_eq!(
        first.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        first.iter().all(|(_, s)| s.sent > 0 && s.received > 0),
        "{first:?}"
    );

    prober
        .control(Control::Remove { id: 2 })
        .expect("control queue");
    // Controls are applied in order: the removal before the request.
    let later = statistics(&prober);
    assert_eq!(later.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 3]);
    // The counters are published at the end of the engine thread's turn,
    // after it answered (a request that arrives while it is still taking
    // controls is answered in the same turn): wait for the next turn.
    let targets = || {
        prober
            .counters()
            .targets
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while targets() != 2 && std::time::Instant::now() < deadline {
        // No transition is due: this only paces the check.
        let _ = transitions.recv_timeout(Duration::from_millis(10));
    }
    assert_eq!(targets(), 2);
    let engine = prober.stop();
    assert_eq!(engine.target_count(), 2);
}
