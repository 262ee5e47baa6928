use super::*;

/// A netlink message of `kind` around `body`.
fn frame(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    message(kind, 0, seq, body)
}

/// A route attribute.
fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align(out.len()), 0);
    out
}

fn route_body(prefix_len: u8, kind: u8, attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![AF_INET, prefix_len, 0, 0, 254, 3, 0, kind, 0, 0, 0, 0];
    for attribute in attributes {
        body.extend_from_slice(attribute);
    }
    body
}

fn rule_body(header: [u8; 12], attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut body = header.to_vec();
    for attribute in attributes {
        body.extend_from_slice(attribute);
    }
    body
}

fn only(buffer: &[u8]) -> Result<Message, NetlinkError> {
    let answers = parse(buffer).expect("parse");
    assert_eq!(answers.len(), 1);
    answers[0].message.clone()
}

#[test]
fn a_route_query_names_the_destination_and_asks_for_the_fib_entry() {
    let request = route_query(Ipv4Addr::new(198, 18, 1, 7), true, 42);
    assert_eq!(read_u32(&request, 0) as usize, request.len());
    assert_eq!(read_u16(&request, 4), RTM_GETROUTE);
    assert_eq!(read_u16(&request, 6), NLM_F_REQUEST);
    assert_eq!(read_u32(&request, 8), 42);
    let body = &request[HEADER..];
    assert_eq!((body[0], body[1]), (AF_INET, 32));
    assert_eq!(read_u32(body, 8), RTM_F_FIB_MATCH);
    let attributes: Vec<_> = super::attributes(&body[12..]).collect();
    assert_eq!(attributes, vec![(RTA_DST, &[198, 18, 1, 7][..])]);
    let plain = route_query(Ipv4Addr::new(198, 18, 1, 7), false, 43);
    assert_eq!(read_u32(&plain[HEADER..], 8), 0);
}

#[test]
fn dump_requests_are_dumps_of_the_right_kind() {
    for (what, kind) in [
        (Dump::Routes, RTM_GETROUTE),
        (Dump::Rules, RTM_GETRULE),
        (Dump::Neighbours, RTM_GETNEIGH),
        (Dump::Links, RTM_GETLINK),
    ] {
        let request = dump_request(what, 7);
        assert_eq!(read_u16(&request, 4), kind, "{what:?}");
        assert_eq!(read_u16(&request, 6), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(read_u32(&request, 0) as usize, request.len());
    }
}

#[test]
fn a_route_answer_gives_table_interface_gateway_source_and_metric() {
    let body = route_body(
        24,
        ROUTE_UNICAST,
        &[
            attribute(RTA_TABLE, &1000u32.to_ne_bytes()),
            attribute(RTA_DST, &[198, 18, 1, 0]),
            attribute(RTA_OIF, &3u32.to_ne_bytes()),
            attribute(RTA_GATEWAY, &[198, 18, 0, 2]),
            attribute(RTA_PREFSRC, &[198, 18, 0, 1]),
            attribute(RTA_PRIORITY, &100u32.to_ne_bytes()),
        ],
    );
    let Ok(Message::Route(route)) = only(&frame(RTM_NEWROUTE, 5, &body)) else {
        panic!("not a route");
    };
    assert_eq!(route.table, 1000, "RTA_TABLE beats the 8-bit field");
    assert_eq!(route.kind, ROUTE_UNICAST);
    assert_eq!(
        (route.destination, route.prefix_len),
        (Ipv4Addr::new(198, 18, 1, 0), 24)
    );
    assert_eq!(route.output_interface, Some(3));
    assert_eq!(route.gateway, Some(Ipv4Addr::new(198, 18, 0, 2)));
    assert_eq!(route.preferred_source, Some(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(route.priority, 100);
    assert!(!route.complex_next_hop);
}

#[test]
fn multipath_and_nexthop_object_routes_are_marked_complex() {
    for kind in [RTA_MULTIPATH, RTA_NH_ID, RTA_VIA] {
        let body = route_body(0, ROUTE_UNICAST, &[attribute(kind, &[0; 8])]);
        let Ok(Message::Route(route)) = only(&frame(RTM_NEWROUTE, 1, &body)) else {
            panic!("not a route");
        };
        assert!(route.complex_next_hop, "attribute {kind}");
    }
}

#[test]
fn errors_carry_the_errno_and_acks_are_not_errors() {
    let unreachable = frame(NLMSG_ERROR, 9, &(-101i32).to_ne_bytes());
    assert_eq!(only(&unreachable), Err(NetlinkError::Kernel(-101)));
    let ack = frame(NLMSG_ERROR, 9, &0i32.to_ne_bytes());
    assert_eq!(only(&ack), Ok(Message::Other));
}

#[test]
fn several_messages_in_one_read_are_all_parsed_in_order() {
    let mut buffer = frame(
        RTM_NEWROUTE,
        1,
        &route_body(8, ROUTE_UNICAST, &[attribute(RTA_DST, &[10, 0, 0, 0])]),
    );
    buffer.extend(frame(NLMSG_DONE, 1, &0u32.to_ne_bytes()));
    let answers = parse(&buffer).expect("parse");
    assert_eq!(answers.len(), 2);
    assert!(matches!(answers[0].message, Ok(Message::Route(_))));
    assert_eq!(answers[1].message, Ok(Message::Done));
}

#[test]
fn a_message_longer_than_the_buffer_is_refused() {
    let mut buffer = frame(RTM_NEWROUTE, 1, &route_body(8, ROUTE_UNICAST, &[]));
    buffer.truncate(20);
    assert_eq!(parse(&buffer), Err(NetlinkError::Truncated(20)));
    let short_body = frame(RTM_NEWROUTE, 1, &[0; 4]);
    assert_eq!(only(&short_body), Err(NetlinkError::Truncated(4)));
}

#[test]
fn only_the_kernels_three_default_rules_count_as_default() {
    let rule = |header: [u8; 12], attributes: &[Vec<u8>]| {
        let Ok(Message::Rule(rule)) = only(&frame(RTM_NEWRULE, 1, &rule_body(header, attributes)))
        else {
            panic!("not a rule");
        };
        rule
    };
    let plain_header = [AF_INET, 0, 0, 0, 254, 0, 0, FR_ACT_TO_TBL, 0, 0, 0, 0];
    let defaults = [
        attribute(FRA_TABLE, &254u32.to_ne_bytes()),
        attribute(FRA_SUPPRESS_PREFIXLEN, &u32::MAX.to_ne_bytes()),
        attribute(FRA_PRIORITY, &32766u32.to_ne_bytes()),
        attribute(FRA_PROTOCOL, &[2]),
    ];
    assert!(rule(plain_header, &defaults).is_default());

    let elsewhere = [
        attribute(FRA_TABLE, &254u32.to_ne_bytes()),
        attribute(FRA_PRIORITY, &100u32.to_ne_bytes()),
    ];
    assert!(!rule(plain_header, &elsewhere).is_default(), "priority 100");

    let mut to_a_prefix = plain_header;
    to_a_prefix[1] = 24;
    assert!(
        !rule(to_a_prefix, &defaults).is_default(),
        "destination selector"
    );

    let mut marked = defaults.to_vec();
    marked.push(attribute(10, &7u32.to_ne_bytes()));
    assert!(!rule(plain_header, &marked).is_default(), "fwmark selector");

    let mut suppressing = defaults.to_vec();
    suppressing[1] = attribute(FRA_SUPPRESS_PREFIXLEN, &0u32.to_ne_bytes());
    assert!(!rule(plain_header, &suppressing).is_default());
}

#[test]
fn neighbours_are_trusted_only_when_the_kernel_confirmed_them() {
    let neighbour = |state: u16| {
        let mut body = vec![AF_INET, 0, 0, 0];
        body.extend_from_slice(&3u32.to_ne_bytes());
        body.extend_from_slice(&state.to_ne_bytes());
        body.extend_from_slice(&[0, 1]);
        body.extend(attribute(NDA_DST, &[198, 18, 0, 2]));
        body.extend(attribute(NDA_LLADDR, &[2, 0, 0xc6, 0x12, 0, 2]));
        let Ok(Message::Neighbour(neighbour)) = only(&frame(RTM_NEWNEIGH, 1, &body)) else {
            panic!("not a neighbour");
        };
        neighbour
    };
    let reachable = neighbour(0x02);
    assert_eq!(reachable.interface, 3);
    assert_eq!(reachable.address, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(reachable.mac, Some([2, 0, 0xc6, 0x12, 0, 2]));
    for confirmed in [0x02, 0x40, 0x80] {
        assert!(neighbour(confirmed).is_confirmed(), "state {confirmed:#x}");
    }
    // incomplete, stale, delay, probe, failed
    for unconfirmed in [0x01, 0x04, 0x08, 0x10, 0x20] {
        assert!(
            !neighbour(unconfirmed).is_confirmed(),
            "state {unconfirmed:#x}"
        );
    }
}

#[test]
fn links_give_index_hardware_type_and_state() {
    let mut body = vec![0, 0];
    body.extend_from_slice(&HARDWARE_ETHERNET.to_ne_bytes());
    body.extend_from_slice(&4u32.to_ne_bytes());
    body.extend_from_slice(&1u32.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    assert_eq!(
        only(&frame(RTM_NEWLINK, 1, &body)),
        Ok(Message::Link(Link {
            index: 4,
            hardware: HARDWARE_ETHERNET,
            up: true
        }))
    );
}
