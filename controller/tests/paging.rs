//! The device list in pages (`GET /api/v1/devices?limit=&cursor=`): every
//! device exactly once across the pages while devices are created and
//! deleted between them; filters and cursors combine; a bad cursor or
//! limit is refused naming it. gRPC `ListDevices` pages the same way.

mod common;

use std::collections::{HashMap, HashSet};

use reqwest::Method;
use serde_json::{Value, json};

async fn create(api: &common::Api, site: &str, index: usize) -> i64 {
    let (code, device) = api
        .post(
            "/api/v1/devices",
            json!({"name": format!("atm-{index}"), "site": site,
                   "address": format!("198.18.{}.{}", index / 250, index % 250 + 1),
                   "tags": if index.is_multiple_of(3) { vec!["atm"] } else { vec![] }}),
        )
        .await;
    assert_eq!(code, 201, "{device}");
    device["id"].as_i64().expect("id")
}

/// Every page of `query` (`limit` and the rest), with each page's size.
async fn all_pages(api: &common::Api, query: &str) -> (Vec<i64>, Vec<usize>) {
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/devices?{query}&cursor={cursor}"),
            None => format!("/api/v1/devices?{query}"),
        };
        let (code, page) = api.get(&path).await;
        assert_eq!(code, 200, "{path}: {page}");
        let devices = page["devices"].as_array().expect("a page's devices");
        sizes.push(devices.len());
        ids.extend(
            devices
                .iter()
                .map(|device| device["id"].as_i64().expect("id")),
        );
        match &page["next_cursor"] {
            Value::String(next) => cursor = Some(next.clone()),
            Value::Null => return (ids, sizes),
            other => panic!("next_cursor {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_is_on_exactly_one_page_while_the_inventory_changes() {
    let (_dir, _controller, api) = common::served_with(|_| {}).await;
    let mut ids = Vec::new();
    for index in 0..120_usize {
        let site = if index.is_multiple_of(2) {
            "branch-2"
        } else {
            "branch-10"
        };
        ids.push(create(&api, site, index).await);
    }
    let doomed: HashSet<i64> = ids.iter().copied().step_by(4).collect();

    // Page through while another client creates and deletes devices.
    let writer = {
        let api = api.clone();
        let doomed: Vec<i64> = doomed.iter().copied().collect();
        tokio::spawn(async move {
            for (step, id) in doomed.into_iter().enumerate() {
                let (code, _) = api
                    .send(Method::DELETE, &format!("/api/v1/devices/{id}"), None, None)
                    .await;
                assert_eq!(code, 204);
                create(&api, "branch-3", 1_000 + step).await;
            }
        })
    };
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/devices?limit=7&cursor={cursor}"),
            None => "/api/v1/devices?limit=7".to_owned(),
        };
        let (code, page) = api.get(&path).await;
        assert_eq!(code, 200, "{page}");
        for device in page["devices"].as_array().expect("devices") {
            *seen.entry(device["id"].as_i64().expect("id")).or_default() += 1;
        }
        tokio::task::yield_now().await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    writer.await.expect("writer");
    let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "on two pages: {twice:?}");
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !doomed.contains(id) && !seen.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "never on a page: {missing:?}");

    // Settled: the pages are the unpaged list, in its order.
    let (_, everything) = api.get("/api/v1/devices").await;
    let listed: Vec<i64> = everything
        .as_array()
        .expect("the unpaged list is an array")
        .iter()
        .map(|device| device["id"].as_i64().expect("id"))
        .collect();
    let (paged, sizes) = all_pages(&api, "limit=50").await;
    assert_eq!(paged, listed);
    assert_eq!(sizes, [50, 50, 20]);
}

#[tokio::test]
async fn filters_combine_with_cursors_and_bad_ones_are_named() {
    let (_dir, _controller, api) = common::served_with(|_| {}).await;
    for index in 0..30 {
        create(&api, "branch-7", index).await;
    }
    let (_, tagged) = api.get("/api/v1/devices?tag=atm").await;
    let tagged: Vec<i64> = tagged
        .as_array()
        .expect("array")
        .iter()
        .map(|device| device["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(tagged.len(), 10);
    let (paged, sizes) = all_pages(&api, "tag=atm&limit=4").await;
    assert_eq!((paged, sizes), (tagged, vec![4, 4, 2]));
    // A cursor alone pages at the default size.
    let (code, first) = api.get("/api/v1/devices?limit=1").await;
    assert_eq!(code, 200);
    let cursor = first["next_cursor"].as_str().expect("more");
    let (_, rest) = api.get(&format!("/api/v1/devices?cursor={cursor}")).await;
    assert_eq!(rest["devices"].as_array().map(Vec::len), Some(29));

    for (query, field) in [
        ("cursor=not-a-cursor", "cursor"),
        ("limit=0", "limit"),
        ("limit=5001", "limit"),
        ("limit=ten", "limit"),
    ] {
        let (code, refused) = api.get(&format!("/api/v1/devices?{query}")).await;
        assert_eq!(code, 400, "{query}: {refused}");
        assert_eq!(refused["field"], field, "{query}: {refused}");
    }
}
