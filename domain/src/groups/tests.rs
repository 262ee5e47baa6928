use std::collections::HashMap;

use super::*;

const DELAY: i64 = 3_000;

/// Heard `ago` ms ago, online for `online` ms.
fn member(id: &str, ago: Option<i64>, online: i64) -> Member {
    Member {
        id: id.into(),
        site: "branch".into(),
        heard_ago_ms: ago,
        online_for_ms: ago.map(|_| online),
    }
}

fn devices(owners: &[Option<&str>]) -> Vec<Owned> {
    owners
        .iter()
        .enumerate()
        .map(|(i, agent)| Owned {
            device_id: i64::try_from(i).expect("small") + 1,
            site: "branch".into(),
            agent: agent.map(str::to_owned),
        })
        .collect()
}

/// Owners after applying `moves`, counted per agent.
fn counts(devices: &[Owned], moves: &[Move]) -> HashMap<String, usize> {
    let mut owners: HashMap<i64, Option<String>> = devices
        .iter()
        .map(|d| (d.device_id, d.agent.clone()))
        .collect();
    for m in moves {
        assert_eq!(owners[&m.device_id], m.from, "moves from the stored owner");
        owners.insert(m.device_id, Some(m.to.clone()));
    }
    let mut counts = HashMap::new();
    for owner in owners.into_values().flatten() {
        *counts.entry(owner).or_default() += 1;
    }
    counts
}

fn apply(devices: &mut [Owned], moves: &[Move]) {
    for m in moves {
        let device = devices
            .iter_mut()
            .find(|d| d.device_id == m.device_id)
            .expect("a known device");
        device.agent = Some(m.to.clone());
    }
}

#[test]
fn new_devices_are_balanced_over_the_live_agents() {
    let members = [
        member("a1", Some(100), 60_000),
        member("a2", Some(100), 60_000),
    ];
    let devices = devices(&[None; 9]);
    let moves = settle(&members, &devices, DELAY, Scope::Everything);
    let counts = counts(&devices, &moves);
    assert_eq!(counts["a1"], 5);
    assert_eq!(counts["a2"], 4);
}

#[test]
fn a_site_with_no_live_agent_still_gets_owners_for_new_devices() {
    let members = [member("a1", None, 0)];
    let moves = settle(&members, &devices(&[None, None]), DELAY, Scope::Everything);
    assert_eq!(moves.len(), 2);
    assert!(moves.iter().all(|m| m.to == "a1"));
}

#[test]
fn a_lost_owner_hands_every_device_to_the_live_ones_and_nothing_moves_without_them() {
    let members = [
        member("a1", Some(DELAY), 60_000),
        member("a2", Some(200), 60_000),
    ];
    let mut owners = vec![Some("a1"); 6];
    owners.extend([Some("a2"); 6]);
    let devices = devices(&owners);
    let moves = settle(&members, &devices, DELAY, Scope::Everything);
    assert_eq!(moves.len(), 6);
    assert!(
        moves
            .iter()
            .all(|m| m.from.as_deref() == Some("a1") && m.to == "a2")
    );
    // Heard just within the delay: it keeps them.
    let members = [
        member("a1", Some(DELAY - 1), 60_000),
        member("a2", Some(200), 60_000),
    ];
    assert!(settle(&members, &devices, DELAY, Scope::Everything).is_empty());
    // Both lost: nothing moves, the offline rule speaks.
    let members = [
        member("a1", Some(DELAY), 60_000),
        member("a2", Some(DELAY * 9), 60_000),
    ];
    assert!(settle(&members, &devices, DELAY, Scope::Everything).is_empty());
}

#[test]
fn a_returning_agent_gets_its_share_only_once_it_stayed_and_then_nothing_ping_pongs() {
    let mut devices = devices(&[Some("a2"); 1_000]);
    let back = |online| {
        [
            member("a1", Some(100), online),
            member("a2", Some(100), 60_000),
        ]
    };
    assert!(
        settle(&back(DELAY - 1), &devices, DELAY, Scope::Everything).is_empty(),
        "not yet stayed for the failover delay"
    );
    let moves = settle(&back(DELAY), &devices, DELAY, Scope::Everything);
    assert_eq!(moves.len(), 500);
    let counts = counts(&devices, &moves);
    assert_eq!((counts["a1"], counts["a2"]), (500, 500));
    apply(&mut devices, &moves);
    assert!(
        settle(&back(60_000), &devices, DELAY, Scope::Everything).is_empty(),
        "stable"
    );
}

#[test]
fn an_imbalance_of_one_is_left_alone_and_owners_leaving_the_site_are_replaced() {
    let members = [
        member("a1", Some(100), 60_000),
        member("a2", Some(100), 60_000),
    ];
    let devices = devices(&[Some("a1"), Some("a1"), Some("a2")]);
    assert!(settle(&members, &devices, DELAY, Scope::Everything).is_empty());
    let devices = self::devices(&[Some("gone"), Some("a1")]);
    let moves = settle(&members, &devices, DELAY, Scope::Everything);
    assert_eq!(
        moves,
        [Move {
            device_id: 1,
            from: Some("gone".into()),
            to: "a2".into()
        }]
    );
}

#[test]
fn sites_settle_independently() {
    let mut members = vec![member("a1", Some(100), 60_000)];
    members.push(Member {
        site: "other".into(),
        ..member("b1", Some(100), 60_000)
    });
    let mut devices = devices(&[None, None]);
    devices[1].site = "other".into();
    let moves = settle(&members, &devices, DELAY, Scope::Everything);
    let to: HashMap<i64, &str> = moves.iter().map(|m| (m.device_id, m.to.as_str())).collect();
    assert_eq!(to, HashMap::from([(1, "a1"), (2, "b1")]));
}

#[test]
fn an_inventory_write_only_places_devices_without_an_owner_of_their_site() {
    let members = [
        member("a1", Some(DELAY * 2), 60_000),
        member("a2", Some(100), 60_000),
    ];
    let devices = devices(&[Some("a1"), Some("a1"), Some("a1"), None, Some("gone")]);
    let moves = settle(&members, &devices, DELAY, Scope::Orphans);
    let moved: Vec<(i64, &str)> = moves.iter().map(|m| (m.device_id, m.to.as_str())).collect();
    assert_eq!(moved, [(4, "a2"), (5, "a2")], "to the live agent only");
}
