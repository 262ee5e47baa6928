//! Linearizable reads across a cluster: three controllers on one
//! PostgreSQL (A with its own cache, B and C sharing Redis). Writers
//! commit through A, as an agent's reports (devices alternating
//! `up`/`unreachable`, each change with its own time; devices going down
//! one after another) and as an operator's REST updates (a device's tags);
//! readers on A, B and C read continuously (REST device, list, filtered
//! list, summary; gRPC device and filtered list). The checker finds every
//! read that started after a commit was acknowledged and shows something
//! older: there must be none.

#![allow(
    clippy::disallowed_types,
    reason = "the writers' acknowledgements are recorded under a mutex: a test, no probe path"
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Api;
use serde_json::{Value, json};
use ward_controller::cache::Cache;
use ward_controller::services::App;
use ward_controller::store::Status;
use ward_proto::v1::inventory_client::InventoryClient;
use ward_proto::v1::{DeviceState, GetDeviceRequest, ListDevicesRequest};
use ward_testkit::services::{Postgres, Redis};

const FLIPS: usize = 4;
const FLIP_WRITES: usize = 60;
const FALLS: usize = 40;
const TAG_WRITES: usize = 40;

/// What a write changed, and the index a read of it must reach.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Object {
    /// Flip device `i`: its write number (from its `last_change`).
    Flip(usize),
    /// How many of the falling devices are down.
    Falls,
    /// The tagged device: its write number (from its tag).
    Tag,
}

/// Acknowledged writes per object, in order (one writer each).
type Acks = Arc<Mutex<HashMap<Object, Vec<(Instant, usize)>>>>;

/// What one read saw, and when it started.
struct Read {
    started: Instant,
    what: &'static str,
    seen: Vec<(Object, usize)>,
}

struct Ids {
    flips: Vec<i64>,
    falls: Vec<i64>,
    tagged: i64,
    base_ms: i64,
}

impl Ids {
    /// The flip index and write number a device JSON shows, if a flip.
    fn flip_seen(&self, device: &Value) -> Option<(Object, usize)> {
        let id = device["id"].as_i64()?;
        let i = self.flips.iter().position(|&flip| flip == id)?;
        let shown = device["last_change"].as_str()?;
        let k = (0..=FLIP_WRITES)
            .find(|&k| ward_controller::time::rfc3339(self.flip_at(k)) == shown)
            .unwrap_or(0);
        Some((Object::Flip(i), k))
    }

    /// When flip write `k` was probed (0: the device's creation, before).
    fn flip_at(&self, k: usize) -> i64 {
        self.base_ms + i64::try_from(k).unwrap_or(0) * 1_000
    }

    /// What a device list shows of every object.
    fn list_seen(&self, devices: &Value) -> Vec<(Object, usize)> {
        let devices = devices.as_array().cloned().unwrap_or_default();
        let mut seen: Vec<(Object, usize)> =
            devices.iter().filter_map(|d| self.flip_seen(d)).collect();
        let falls = devices
            .iter()
            .filter(|d| {
                d["status"] == "down" && self.falls.contains(&d["id"].as_i64().unwrap_or(0))
            })
            .count();
        seen.push((Object::Falls, falls));
        if let Some(tagged) = devices.iter().find(|d| d["id"] == self.tagged) {
            seen.push((Object::Tag, tag_number(tagged)));
        }
        seen
    }
}

fn tag_number(device: &Value) -> usize {
    device["tags"][0]
        .as_str()
        .and_then(|tag| tag.strip_prefix('v'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn acked(acks: &Acks, object: Object, k: usize) {
    acks.lock()
        .expect("acks")
        .entry(object)
        .or_default()
        .push((Instant::now(), k));
}

async fn serve_grpc_client(
    controller: &App,
    token: String,
) -> (
    InventoryClient<tonic::transport::Channel>,
    tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
) {
    let url = common::serve_grpc(controller.clone()).await;
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let bearer = format!("Bearer {token}").parse().expect("ASCII");
    (InventoryClient::new(channel), bearer)
}

/// One reader: cycles through the read kinds until `stop`.
async fn reader(
    controller: App,
    ids: Arc<Ids>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Read> {
    let api = Api::serve(controller.clone()).await;
    let token = common::token_for(
        &controller,
        &format!("reader-{}", controller.cluster.instance),
        ward_controller::auth::Role::Viewer,
        None,
    )
    .await;
    let (mut grpc, bearer) = serve_grpc_client(&controller, token).await;
    let mut reads = Vec::new();
    let mut turn = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        turn += 1;
        let started = Instant::now();
        let (what, seen) = match turn % 6 {
            0 => {
                let flip = ids.flips[turn / 6 % FLIPS];
                let (_, device) = api.get(&format!("/api/v1/devices/{flip}")).await;
                ("REST device", ids.flip_seen(&device).into_iter().collect())
            }
            1 => {
                let (_, devices) = api.get("/api/v1/devices").await;
                ("REST list", ids.list_seen(&devices))
            }
            2 => {
                let (_, devices) = api.get("/api/v1/devices?status=down").await;
                let falls = ids.list_seen(&devices);
                (
                    "REST ?status=down",
                    falls
                        .into_iter()
                        .filter(|(o, _)| *o == Object::Falls)
                        .collect(),
                )
            }
            3 => {
                let (_, summary) = api.get("/api/v1/summary").await;
                let down = usize::try_from(summary["down"].as_u64().unwrap_or(0)).unwrap_or(0);
                ("REST summary", vec![(Object::Falls, down)])
            }
            4 => {
                let flip = ids.flips[turn / 6 % FLIPS];
                let mut request = tonic::Request::new(GetDeviceRequest {
                    id: u64::try_from(flip).expect("id"),
                });
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
                let device = grpc
                    .get_device(request)
                    .await
                    .expect("GetDevice")
                    .into_inner();
                let shown = json!({
                    "id": flip,
                    "last_change": ward_controller::time::rfc3339(device.last_change_unix_ms),
                });
                ("gRPC device", ids.flip_seen(&shown).into_iter().collect())
            }
            _ => {
                let mut request = tonic::Request::new(ListDevicesRequest {
                    status: DeviceState::Down.into(),
                    ..ListDevicesRequest::default()
                });
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
                let listed = grpc
                    .list_devices(request)
                    .await
                    .expect("ListDevices")
                    .into_inner();
                let falls = listed
                    .devices
                    .iter()
                    .filter(|d| ids.falls.contains(&i64::try_from(d.id).unwrap_or(0)))
                    .count();
                ("gRPC ?status=down", vec![(Object::Falls, falls)])
            }
        };
        reads.push(Read {
            started,
            what,
            seen,
        });
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_read_on_any_controller_misses_a_commit_acknowledged_before_it_started() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let redis = Redis::start().expect("start Redis");
    let a = common::controller(&postgres.url(), Cache::in_process()).await;
    let b = common::controller(
        &postgres.url(),
        Cache::redis(&redis.url()).await.expect("redis"),
    )
    .await;
    let c = common::controller(
        &postgres.url(),
        Cache::redis(&redis.url()).await.expect("redis"),
    )
    .await;
    let writer_api = Api::serve(a.clone()).await;
    let create = async |name: String, site: &str, address: String| -> i64 {
        let (code, device) = writer_api
            .post(
                "/api/v1/devices",
                json!({"name": name, "address": address, "site": site}),
            )
            .await;
        assert_eq!(code, 201, "{device}");
        device["id"].as_i64().expect("id")
    };
    let mut flips = Vec::new();
    for i in 0..FLIPS {
        flips.push(create(format!("flip-{i}"), "flips", format!("198.18.10.{}", i + 1)).await);
    }
    let mut falls = Vec::new();
    for i in 0..FALLS {
        falls.push(create(format!("fall-{i}"), "falls", format!("198.18.11.{}", i + 1)).await);
    }
    let tagged = create("tagged".into(), "tags", "198.18.12.1".into()).await;
    let base_ms = ward_controller::time::now_ms();
    let ids = Arc::new(Ids {
        flips,
        falls,
        tagged,
        base_ms,
    });
    // Every fall device up first (not part of the check).
    let mut seq = 0u64;
    let mut report = |device_id: i64, status: Status, probed_at_ms: i64| {
        seq += 1;
        common::transition_report("agent-1", device_id, seq, status, probed_at_ms)
    };
    for &fall in &ids.falls {
        a.reports
            .apply_report(&report(fall, Status::Up, base_ms - 1), base_ms)
            .await
            .expect("up");
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = [&a, &b, &c]
        .into_iter()
        .map(|controller| {
            tokio::spawn(reader(
                controller.clone(),
                Arc::clone(&ids),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let acks: Acks = Arc::default();
    // Readers get going before the first commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tag_writer = {
        let acks = Arc::clone(&acks);
        let tagged = ids.tagged;
        async move {
            for k in 1..=TAG_WRITES {
                let (code, body) = writer_api
                    .send(
                        reqwest::Method::PUT,
                        &format!("/api/v1/devices/{tagged}"),
                        Some(
                            json!({"name": "tagged", "address": "198.18.12.1", "site": "tags",
                            "tags": [format!("v{k}")]}),
                        ),
                        None,
                    )
                    .await;
                assert_eq!(code, 200, "{body}");
                acked(&acks, Object::Tag, k);
            }
        }
    };
    let report_writer = async {
        let mut fallen = 0;
        for k in 1..=FLIP_WRITES {
            for (i, &flip) in ids.flips.iter().enumerate() {
                let status = if k % 2 == 1 {
                    Status::Unreachable
                } else {
                    Status::Up
                };
                a.reports
                    .apply_report(&report(flip, status, ids.flip_at(k)), base_ms)
                    .await
                    .expect("apply");
                acked(&acks, Object::Flip(i), k);
            }
            if k % (FLIP_WRITES / FALLS).max(1) == 0 && fallen < FALLS {
                let at = ids.flip_at(k);
                a.reports
                    .apply_report(&report(ids.falls[fallen], Status::Down, at), base_ms)
                    .await
                    .expect("apply");
                fallen += 1;
                acked(&acks, Object::Falls, fallen);
            }
        }
        while fallen < FALLS {
            let at = ids.flip_at(FLIP_WRITES) + 1;
            a.reports
                .apply_report(&report(ids.falls[fallen], Status::Down, at), base_ms)
                .await
                .expect("apply");
            fallen += 1;
            acked(&acks, Object::Falls, fallen);
        }
    };
    tokio::join!(tag_writer, report_writer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let acks = acks.lock().expect("acks").clone();
    let mut checked = 0usize;
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let mut violations = Vec::new();
    for (controller, reader) in ["A", "B", "C"].into_iter().zip(readers) {
        for read in reader.await.expect("reader") {
            *kinds.entry(read.what).or_default() += 1;
            for (object, seen) in read.seen {
                checked += 1;
                let required = acks
                    .get(&object)
                    .map(|writes| {
                        writes
                            .iter()
                            .take_while(|(at, _)| *at < read.started)
                            .map(|&(_, k)| k)
                            .last()
                            .unwrap_or(0)
                    })
                    .unwrap_or(0);
                if seen < required {
                    violations.push(format!(
                        "{controller} {}: {object:?} showed write {seen}, {required} was acknowledged before the read",
                        read.what
                    ));
                }
            }
        }
    }
    eprintln!(
        "linearizable reads: {checked} observations checked in {} reads ({kinds:?}) on 3 \
         controllers; {} violations",
        kinds.values().sum::<usize>(),
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(checked > 1_000, "too few reads to mean anything: {checked}");
}
