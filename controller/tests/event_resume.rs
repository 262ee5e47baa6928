//! The live event stream resumes: on two controllers sharing PostgreSQL,
//! a client of B's `/api/v1/events` sees the `id:` of each committed
//! version, drops off while A commits more, and reconnecting with
//! `Last-Event-ID` gets exactly what it missed, in commit order, then the
//! live changes; an id the log cannot answer gets a `resync`.

mod common;

use std::time::Duration;

use common::Api;
use serde_json::Value;
use ward_controller::store::Status;
use ward_testkit::services::Postgres;

/// One server-sent event: its type, `id:` (if any) and data.
#[derive(Debug, Default)]
struct SseEvent {
    kind: String,
    id: Option<String>,
    data: String,
}

struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    async fn open(api: &Api, last_event_id: Option<&str>) -> Self {
        Self::open_at(api, "/api/v1/events", last_event_id).await
    }

    async fn open_at(api: &Api, path: &str, last_event_id: Option<&str>) -> Self {
        let mut request = api.authorized(api.http.get(format!("{}{path}", api.base)));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("events");
        assert_eq!(response.status(), 200);
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event or id-only block within 5 s.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                for line in block.lines() {
                    if let Some(kind) = line.strip_prefix("event: ") {
                        event.kind = kind.to_owned();
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = data.to_owned();
                    }
                }
                if event.id.is_some() || !event.kind.is_empty() {
                    return event;
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("an event within 5 s")
                .expect("stream")
                .expect("open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `status` event as (device id, status, id).
    async fn next_status(&mut self) -> (i64, String, Option<String>) {
        loop {
            let event = self.next().await;
            if event.kind == "status" {
                let data: Value = serde_json::from_str(&event.data).expect("json");
                return (
                    data["id"].as_i64().expect("id"),
                    data["status"].as_str().expect("status").to_owned(),
                    event.id,
                );
            }
            assert!(event.kind.is_empty(), "unexpected {event:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_from_its_last_event_id_on_any_controller() {
    let postgres = Postgres::start().expect("start PostgreSQL");
    let (a, b) = common::two_controllers_the_second_following(&postgres.url()).await;
    let (api_a, api_b) = (Api::serve(a.clone()).await, Api::serve(b.clone()).await);
    let mut ids = Vec::new();
    for (name, address) in [("atm-1", "198.18.1.10"), ("atm-2", "198.18.1.11")] {
        let (code, device) = api_a
            .post(
                "/api/v1/devices",
                serde_json::json!({"name": name, "address": address, "site": "branch-7"}),
            )
            .await;
        assert_eq!(code, 201, "{device}");
        ids.push(device["id"].as_i64().expect("id"));
    }
    let mut client = SseClient::open(&api_b, None).await;
    let opening = client.next().await;
    let start: i64 = opening
        .id
        .expect("the stream opens with an id")
        .parse()
        .expect("a version");
    // Listening is set up on B before A commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = ward_controller::time::now_ms();
    let mut seq = 0;
    let mut commit = async |id: i64, status: Status| {
        seq += 1;
        let report = common::transition_report("agent-1", id, seq, status, now + seq as i64);
        a.reports.apply_report(&report, now).await.expect("apply");
    };
    commit(ids[0], Status::Up).await;
    let (device, status, seen) = client.next_status().await;
    assert_eq!((device, status.as_str()), (ids[0], "up"));
    let seen = seen.expect("the change closes its version");
    assert!(seen.parse::<i64>().expect("a version") > start);
    drop(client);

    // Missed while away, in commit order.
    commit(ids[0], Status::Down).await;
    commit(ids[1], Status::Up).await;
    commit(ids[0], Status::Up).await;
    let mut client = SseClient::open(&api_b, Some(&seen)).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let (device, status, id) = client.next_status().await;
        replayed.push((device, status, id.is_some()));
    }
    assert_eq!(
        replayed,
        [
            (ids[0], "down".to_owned(), true),
            (ids[1], "up".to_owned(), true),
            (ids[0], "up".to_owned(), true)
        ]
    );
    // Then live, once each.
    commit(ids[1], Status::Down).await;
    let (device, status, _) = client.next_status().await;
    assert_eq!((device, status.as_str()), (ids[1], "down"));

    // Ids the log cannot answer: a resync, then the stream goes on.
    for bad in ["yesterday", "999999999"] {
        let mut client = SseClient::open(&api_b, Some(bad)).await;
        let first = client.next().await;
        assert_eq!(first.kind, "resync", "{bad}: {first:?}");
        assert!(first.data.contains("Last-Event-ID"), "{}", first.data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_asked_for_heartbeats_gets_one_every_second_and_others_get_none() {
    let (_dir, controller) = common::sqlite_controller().await;
    let api = Api::serve(controller).await;
    let mut beating = SseClient::open_at(&api, "/api/v1/events?heartbeat=1", None).await;
    let mut beats = Vec::new();
    while beats.len() < 3 {
        let event = beating.next().await;
        if event.kind == "heartbeat" {
            beats.push(event.data.parse::<i64>().expect("the controller's clock"));
        }
    }
    assert!(
        beats.windows(2).all(|pair| pair[1] >= pair[0] + 900),
        "about a second apart: {beats:?}"
    );
    let mut quiet = SseClient::open(&api, None).await;
    let opening = quiet.next().await;
    assert!(opening.kind.is_empty(), "{opening:?}");
    let (code, _) = api.get("/api/v1/events?heartbeat=yes").await;
    assert_eq!(code, 400, "a bad option is refused");
}

/// A status event shows the device as its own commit left it, even when a
/// later commit changed the device again before the event was sent (a
/// fleet's outage restored within the publishing delay showed its `up` as
/// `down`, and the `up` was never seen).
#[tokio::test]
async fn an_event_shows_the_device_as_its_commit_left_it_not_as_a_later_one() {
    let (_dir, controller) = common::sqlite_controller().await;
    let device = controller
        .inventory
        .create_device(
            &ward_controller::store::DeviceSpec::new(
                "atm-1".into(),
                "198.18.1.10".parse().expect("address"),
                "branch-7".into(),
            ),
            &ward_controller::store::Actor::console(),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("create");
    let now = ward_controller::time::now_ms();
    let mut applied = Vec::new();
    for (seq, status) in [(1, Status::Up), (2, Status::Down)] {
        let report = common::transition_report("agent-1", device.id, seq, status, now + seq as i64);
        match controller
            .core
            .store
            .apply(&report, &ward_controller::store::FlapPolicy::default(), now)
            .await
            .expect("apply")
        {
            ward_controller::store::ApplyOutcome::Applied { changes, .. } => applied.push(changes),
            other => panic!("{other:?}"),
        }
    }
    let mut events = controller.core.live.subscribe();
    for changes in &applied {
        controller.core.publish(changes).await;
    }
    let mut shown = Vec::new();
    for _ in 0..2 {
        match events.recv().await.expect("an event") {
            ward_controller::services::LiveEvent::Status(event) => {
                shown.push((event.device.status, event.previous, event.version));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        shown,
        [
            (Status::Up, Status::Unknown, applied[0].version),
            (Status::Down, Status::Up, applied[1].version),
        ]
    );
}
