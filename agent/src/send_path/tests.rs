use super::*;

const WAN: u32 = 2;
const LAN: u32 = 3;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const GATEWAY_MAC: [u8; 6] = [2, 0, 0xc6, 0x12, 0, 2];

fn address(text: &str) -> Ipv4Addr {
    text.parse().expect("address")
}

fn route(table: u32, kind: u8, cidr: &str) -> Route {
    let (prefix, len) = cidr.split_once('/').expect("cidr");
    Route {
        table,
        kind,
        destination: address(prefix),
        prefix_len: len.parse().expect("length"),
        tos: 0,
        output_interface: Some(WAN),
        gateway: None,
        preferred_source: None,
        priority: 0,
        complex_next_hop: false,
    }
}

fn via(cidr: &str, interface: u32, gateway: Option<Ipv4Addr>) -> Route {
    Route {
        output_interface: Some(interface),
        gateway,
        ..route(TABLE_MAIN, ROUTE_UNICAST, cidr)
    }
}

fn links() -> Vec<Link> {
    [WAN, LAN]
        .map(|index| Link {
            index,
            hardware: HARDWARE_ETHERNET,
            up: true,
        })
        .to_vec()
}

fn default_rules() -> Vec<Rule> {
    [
        (0, TABLE_LOCAL),
        (32766, TABLE_MAIN),
        (32767, TABLE_DEFAULT),
    ]
    .map(|(priority, table)| Rule {
        priority,
        table,
        plain: true,
    })
    .to_vec()
}

/// What the kernel answers for `destination` when it agrees with the
/// model: the FIB entry, and the route with a source.
fn kernel_answers(routes: &PacketRoutes, destination: Ipv4Addr) -> (Route, Route) {
    let (_, entry) = routes.entry(destination).expect("a route");
    let used = Route {
        destination,
        prefix_len: 32,
        preferred_source: Some(SOURCE),
        ..*entry
    };
    (*entry, used)
}

/// Checks every group of `targets` as an agreeing kernel would and
/// assigns slot i to target i.
fn checked(routes: &mut PacketRoutes, targets: &[Ipv4Addr]) {
    for representative in routes.unchecked(targets.iter().copied()) {
        let (fib_match, used) = kernel_answers(routes, representative);
        routes.check_group(representative, &fib_match, &used);
    }
    for (slot, target) in targets.iter().enumerate() {
        routes.assign(u32::try_from(slot).expect("slot"), *target);
    }
}

fn neighbour(interface: u32, address: Ipv4Addr, mac: [u8; 6], state: u16) -> Neighbour {
    Neighbour {
        interface,
        address,
        mac: Some(mac),
        state,
    }
}

const REACHABLE: u16 = 0x02;
const STALE: u16 = 0x04;

#[test]
fn a_policy_rule_turns_the_packet_path_off() {
    let mut rules = default_rules();
    rules.push(Rule {
        priority: 100,
        table: 10,
        plain: true,
    });
    let refused = PacketRoutes::new(&rules, &[], &links()).expect_err("refused");
    assert_eq!(
        refused,
        Unsupported::PolicyRules {
            priority: 100,
            table: 10
        }
    );
    assert!(refused.to_string().contains("IP stack"));
}

#[test]
fn the_longest_prefix_wins_and_the_local_table_comes_first() {
    let routes = [
        via("0.0.0.0/0", WAN, Some(GATEWAY)),
        via("198.18.0.0/15", WAN, Some(GATEWAY)),
        via("198.18.1.0/24", LAN, None),
        route(TABLE_LOCAL, 2, "198.18.1.5/32"),
    ];
    let model = PacketRoutes::new(&default_rules(), &routes, &links()).expect("model");
    let prefix_of = |text: &str| {
        let (key, _) = model.entry(address(text)).expect("a route");
        (Ipv4Addr::from(key.prefix), key.len)
    };
    assert_eq!(prefix_of("203.0.113.9"), (address("0.0.0.0"), 0));
    assert_eq!(prefix_of("198.19.7.7"), (address("198.18.0.0"), 15));
    assert_eq!(prefix_of("198.18.1.7"), (address("198.18.1.0"), 24));
    assert_eq!(prefix_of("198.18.1.5"), (address("198.18.1.5"), 32));
    let groups = model.unchecked(["198.18.1.7", "198.18.1.8", "198.19.0.1"].map(address));
    assert_eq!(groups.len(), 2, "one question per FIB entry: {groups:?}");
}

#[test]
fn a_confirmed_gateway_is_used_with_its_mac_and_a_stale_one_is_not() {
    let routes = [via("198.18.0.0/15", WAN, Some(GATEWAY))];
    let mut model = PacketRoutes::new(&default_rules(), &routes, &links()).expect("model");
    checked(&mut model, &[address("198.18.1.1"), address("198.18.1.2")]);
    assert_eq!(model.hop(0), None, "no neighbour entry read yet");

    model.update_neighbours(&[neighbour(WAN, GATEWAY, GATEWAY_MAC, REACHABLE)]);
    let hop = model.hop(0).expect("usable");
    assert_eq!(
        hop.link,
        LinkAddress {
            interface: WAN,
            mac: GATEWAY_MAC
        }
    );
    assert_eq!(hop.source, SOURCE);
    assert_eq!(model.hop(1), Some(hop), "one next hop for the group");
    assert_eq!(model.hop_counts(), (1, 1));

    model.update_neighbours(&[neighbour(WAN, GATEWAY, GATEWAY_MAC, STALE)]);
    assert_eq!(model.hop(0), None, "stale: through the IP stack");
    model.update_neighbours(&[]);
    assert_eq!(model.hop(0), None, "entry gone");
}

#[test]
fn on_link_destinations_are_their_own_next_hops() {
    let routes = [via("198.18.1.0/24", LAN, None)];
    let mut model = PacketRoutes::new(&default_rules(), &routes, &links()).expect("model");
    let (first, second) = (address("198.18.1.1"), address("198.18.1.2"));
    checked(&mut model, &[first, second]);
    model.update_neighbours(&[neighbour(LAN, first, [2, 0, 0, 0, 0, 1], REACHABLE)]);
    assert_eq!(
        model.hop(0).map(|hop| hop.link.mac),
        Some([2, 0, 0, 0, 0, 1])
    );
    assert_eq!(model.hop(1), None, "the second host's MAC is not known");
    assert_eq!(model.hop_counts(), (2, 1));
}

#[test]
fn a_group_the_kernel_disagrees_on_stays_on_the_ip_stack() {
    let routes = [via("198.18.0.0/15", WAN, Some(GATEWAY))];
    let mut model = PacketRoutes::new(&default_rules(), &routes, &links()).expect("model");
    let target = address("198.18.1.1");
    let (mut fib_match, used) = kernel_answers(&model, target);
    // The kernel matched a /24 the model does not have (e.g. added since).
    fib_match.destination = address("198.18.1.0");
    fib_match.prefix_len = 24;
    model.check_group(target, &fib_match, &used);
    model.assign(0, target);
    model.update_neighbours(&[neighbour(WAN, GATEWAY, GATEWAY_MAC, REACHABLE)]);
    assert_eq!(model.hop(0), None);
    assert!(model.unchecked([target]).is_empty(), "asked once");
}

#[test]
fn only_single_hop_unicast_routes_on_ethernet_qualify() {
    let mut multipath = via("198.18.2.0/24", WAN, Some(GATEWAY));
    multipath.complex_next_hop = true;
    let mut tunnel = via("198.18.3.0/24", 9, None);
    tunnel.output_interface = Some(9);
    let blackhole = route(TABLE_MAIN, 6, "198.18.4.0/24");
    let own = route(TABLE_LOCAL, 2, "198.18.5.1/32");
    let mut all_links = links();
    all_links.push(Link {
        index: 9,
        hardware: 65534,
        up: true,
    });
    let mut model = PacketRoutes::new(
        &default_rules(),
        &[multipath, tunnel, blackhole, own],
        &all_links,
    )
    .expect("model");
    let targets = ["198.18.2.1", "198.18.3.1", "198.18.4.1", "198.18.5.1"].map(address);
    checked(&mut model, &targets);
    model.update_neighbours(&[neighbour(WAN, GATEWAY, GATEWAY_MAC, REACHABLE)]);
    for slot in 0..4 {
        assert_eq!(model.hop(slot), None, "{}", targets[slot as usize]);
    }
}

#[test]
fn the_lower_metric_wins_and_tos_routes_never_match() {
    let mut backup = via("198.18.0.0/15", LAN, Some(address("198.18.9.9")));
    backup.priority = 200;
    let mut primary = via("198.18.0.0/15", WAN, Some(GATEWAY));
    primary.priority = 100;
    let mut tos = via("198.18.1.0/24", LAN, None);
    tos.tos = 0x10;
    let model =
        PacketRoutes::new(&default_rules(), &[backup, primary, tos], &links()).expect("model");
    let (key, chosen) = model.entry(address("198.18.1.1")).expect("a route");
    assert_eq!((chosen.output_interface, key.len), (Some(WAN), 15));
}

#[test]
fn removed_and_unknown_slots_use_the_ip_stack() {
    let routes = [via("198.18.0.0/15", WAN, Some(GATEWAY))];
    let mut model = PacketRoutes::new(&default_rules(), &routes, &links()).expect("model");
    checked(&mut model, &[address("198.18.1.1")]);
    model.update_neighbours(&[neighbour(WAN, GATEWAY, GATEWAY_MAC, REACHABLE)]);
    assert!(model.hop(0).is_some());
    model.unassign(0);
    assert_eq!(model.hop(0), None);
    assert_eq!(model.hop(57), None);
}
