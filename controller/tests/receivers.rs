//! Receivers and routes: the chat kinds post each service's documented
//! format (checked against the schema written from its docs, cited at each
//! check), routes send each alert where `POST /api/v1/receivers/route`
//! says, a receiver keeps its routing of an alert until its end (the
//! resolution goes where the firing went, whatever changed in between),
//! and each receiver's outcomes are counted.

mod common;

use std::sync::Arc;

use serde_json::{Value, json};
use ward_controller::cache::Cache;
use ward_controller::config::{Receiver, ReceiverKind};
use ward_controller::notify::{Channel, Chat, Webhook, deliver_due};
use ward_controller::services::{App, AppSettings, ListedReceiver};
use ward_controller::store::{Actor, DeviceSpec, Severity, Status};
use ward_domain::routing::{Match, Route};

const PUBLIC_URL: &str = "https://ward.bank.example/";

fn listed(name: &str, kind: ReceiverKind) -> ListedReceiver {
    ListedReceiver {
        name: name.into(),
        kind: kind.as_str(),
        target: "http://127.0.0.1".into(),
    }
}

async fn controller(
    receivers: Vec<ListedReceiver>,
    routes: Vec<Route>,
) -> (tempfile::TempDir, App) {
    let (dir, url) = common::sqlite_url();
    let settings = AppSettings {
        receivers,
        routes,
        ..AppSettings::default()
    };
    (
        dir,
        common::controller_with(&url, Cache::in_process(), settings).await,
    )
}

async fn device(app: &App, name: &str, site: &str, tags: &[&str], severity: Severity) -> i64 {
    let spec = DeviceSpec {
        severity,
        tags: tags.iter().map(|&t| t.to_owned()).collect(),
        ..DeviceSpec::new(
            name.into(),
            "198.18.1.10".parse().expect("address"),
            site.into(),
        )
    };
    common::add_device(app, &spec).await
}

/// One delivery round of every channel.
async fn deliver(app: &App, channels: &[Channel], now_ms: i64) {
    for channel in channels {
        let round = deliver_due(&app.notifications, &app.maintenance, channel, now_ms)
            .await
            .expect("round");
        assert_eq!(round.failed, 0, "{}", channel.name());
    }
}

fn string(body: &Value, pointer: &str) -> String {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {body}"))
        .to_owned()
}

/// Slack incoming webhook: `text` (the notification's fallback) and
/// `blocks`, each a block of a known `type`; a `section`'s `text` is a text
/// object `{type: "mrkdwn" | "plain_text", text}` of at most 3,000
/// characters (<https://api.slack.com/messaging/webhooks>,
/// <https://api.slack.com/reference/block-kit/blocks#section>,
/// <https://api.slack.com/reference/block-kit/composition-objects#text>).
fn check_slack(body: &Value) -> String {
    let fallback = string(body, "/text");
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50, "{body}");
    let mut shown = String::new();
    for block in blocks {
        assert_eq!(block["type"], "section", "{block}");
        let kind = string(block, "/text/type");
        assert!(kind == "mrkdwn" || kind == "plain_text", "{block}");
        let text = string(block, "/text/text");
        assert!(!text.is_empty() && text.chars().count() <= 3_000, "{block}");
        shown.push_str(&text);
    }
    assert!(shown.contains(&fallback.replace('&', "&amp;")), "{body}");
    shown
}

/// Teams Workflows webhook: `{type: "message", attachments: [{contentType:
/// "application/vnd.microsoft.card.adaptive", content: AdaptiveCard}]}`; the
/// card has `type: "AdaptiveCard"`, a `version` and a `body` of elements
/// (`TextBlock` with `text`, `FactSet` with `facts: [{title, value}]`),
/// `actions` of `Action.OpenUrl` with `title` and `url`
/// (<https://learn.microsoft.com/en-us/connectors/teams/?tabs=text1#microsoft-teams-webhook>,
/// <https://adaptivecards.io/explorer/AdaptiveCard.html>,
/// <https://adaptivecards.io/explorer/FactSet.html>).
fn check_teams(body: &Value) -> String {
    assert_eq!(body["type"], "message", "{body}");
    let attachments = body["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{body}");
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard", "{card}");
    assert!(string(card, "/version").starts_with("1."), "{card}");
    let mut shown = String::new();
    for element in card["body"].as_array().expect("card body") {
        match element["type"].as_str() {
            Some("TextBlock") => shown.push_str(&string(element, "/text")),
            Some("FactSet") => {
                for fact in element["facts"].as_array().expect("facts") {
                    shown.push_str(&format!(
                        "\n{}: {}",
                        string(fact, "/title"),
                        string(fact, "/value")
                    ));
                }
            }
            other => panic!("unexpected card element {other:?}"),
        }
    }
    for action in card["actions"].as_array().into_iter().flatten() {
        assert_eq!(action["type"], "Action.OpenUrl", "{action}");
        string(action, "/title");
        shown.push_str(&format!("\n{}", string(action, "/url")));
    }
    shown
}

/// Telegram `sendMessage`: `chat_id` (integer or string), `text` of 1 to
/// 4,096 characters (<https://core.telegram.org/bots/api#sendmessage>).
fn check_telegram(body: &Value, chat_id: &str) -> String {
    assert_eq!(body["chat_id"], chat_id, "{body}");
    let text = string(body, "/text");
    assert!((1..=4_096).contains(&text.chars().count()), "{body}");
    let known = ["chat_id", "text", "parse_mode", "disable_notification"];
    for key in body.as_object().expect("object").keys() {
        assert!(known.contains(&key.as_str()), "sendMessage has no `{key}`");
    }
    text
}

/// ntfy JSON publishing: `topic` (required), `message`, `title`,
/// `priority` 1–5, `tags` (strings), `click` (a URL)
/// (<https://docs.ntfy.sh/publish/#publish-as-json>).
fn check_ntfy(body: &Value, topic: &str) -> String {
    assert_eq!(body["topic"], topic, "{body}");
    let priority = body["priority"].as_u64().expect("priority");
    assert!((1..=5).contains(&priority), "{body}");
    for tag in body["tags"].as_array().expect("tags") {
        assert!(tag.is_string(), "{body}");
    }
    let known = [
        "topic", "message", "title", "tags", "priority", "click", "actions", "attach", "markdown",
        "icon", "filename", "delay", "email", "call",
    ];
    for key in body.as_object().expect("object").keys() {
        assert!(known.contains(&key.as_str()), "ntfy has no `{key}`");
    }
    format!(
        "{}\n{}\n{}",
        string(body, "/title"),
        string(body, "/message"),
        string(body, "/click")
    )
}

#[tokio::test]
async fn chat_receivers_post_each_services_documented_format() {
    let kinds = [
        ReceiverKind::Slack,
        ReceiverKind::Teams,
        ReceiverKind::Telegram,
        ReceiverKind::Ntfy,
    ];
    let mut servers = Vec::new();
    let mut channels = Vec::new();
    for kind in kinds {
        let (server, url) = common::start_receiver().await;
        servers.push(server);
        let receiver = Receiver {
            name: kind.as_str().into(),
            kind,
            url,
            chat_id: (kind == ReceiverKind::Telegram).then(|| "-100123".into()),
            topic: (kind == ReceiverKind::Ntfy).then(|| "ward-noc".into()),
            email: None,
        };
        channels.push(Channel::Chat(Chat::new(receiver, Some(PUBLIC_URL))));
    }
    let listed_receivers = kinds.iter().map(|&k| listed(k.as_str(), k)).collect();
    let (_dir, app) = controller(listed_receivers, Vec::new()).await;
    let id = device(&app, "atm-17", "branch-0421", &["atm"], Severity::Critical).await;

    common::report_status(&app, id, 1, Status::Down, 10_000).await;
    deliver(&app, &channels, 10_000).await;
    common::report_status(&app, id, 2, Status::Up, 70_000).await;
    deliver(&app, &channels, 70_000).await;

    for (kind, server) in kinds.iter().zip(&servers) {
        let bodies = server.bodies();
        assert_eq!(bodies.len(), 2, "{kind:?}: firing and resolved");
        for (body, headline) in bodies.iter().zip([
            "[ward] DOWN atm-17 (branch-0421) since 00:00 UTC",
            "[ward] RESOLVED DOWN atm-17 (branch-0421) at 00:01 UTC",
        ]) {
            let shown = match kind {
                ReceiverKind::Slack => check_slack(body),
                ReceiverKind::Teams => check_teams(body),
                ReceiverKind::Telegram => check_telegram(body, "-100123"),
                _ => check_ntfy(body, "ward-noc"),
            };
            assert!(shown.contains(headline), "{kind:?}: {shown}");
            for fact in [
                "Site: branch-0421",
                "Severity: critical",
                "Acknowledged: no",
            ] {
                assert!(shown.contains(fact), "{kind:?} lacks {fact}: {shown}");
            }
            let link = format!("{PUBLIC_URL}?device={id}");
            assert!(shown.contains(&link), "{kind:?} lacks the link: {shown}");
        }
    }
}

/// A bank's routes: the ATM vendor gets its ATMs (and matching goes on),
/// the north's sites their team, the rest the NOC.
fn bank_routes() -> Vec<Route> {
    vec![
        Route::new(Match::tag("atm"), ["vendor"], true),
        Route::new(Match::site("north-*"), ["north"], false),
        Route::new(Match::default(), ["noc"], false),
    ]
}

#[tokio::test]
async fn each_alert_goes_where_the_route_test_says_and_its_resolution_where_its_firing_went() {
    let names = ["north", "vendor", "noc"];
    let mut servers = Vec::new();
    let mut channels = Vec::new();
    for name in names {
        let (server, url) = common::start_receiver().await;
        servers.push(server);
        channels.push(Channel::Webhook(Webhook::new(&url).named(name)));
    }
    let receivers = names
        .iter()
        .map(|&n| listed(n, ReceiverKind::Webhook))
        .collect();
    let (_dir, app) = controller(receivers, bank_routes()).await;
    let api = common::Api::serve(app.clone()).await;
    let atm = device(&app, "atm-1", "north-0421", &["atm"], Severity::Critical).await;
    let router = device(&app, "rtr-1", "south-7", &[], Severity::Critical).await;
    let camera = device(&app, "cam-1", "north-0421", &[], Severity::Minor).await;

    // What the route test says, for each device's DeviceDown.
    let mut expected = Vec::new();
    for (site, tags, severity) in [
        ("north-0421", vec!["atm"], "critical"),
        ("south-7", vec![], "critical"),
        ("north-0421", vec![], "minor"),
    ] {
        let (status, said) = api
            .post(
                "/api/v1/receivers/route",
                json!({"alertname": "DeviceDown", "site": site, "tags": tags, "severity": severity}),
            )
            .await;
        assert_eq!(status, 200, "{said}");
        let receivers: Vec<String> =
            serde_json::from_value(said["receivers"].clone()).expect("list");
        expected.push(receivers);
    }
    assert_eq!(expected[0], ["vendor", "north"]);
    assert_eq!(expected[1], ["noc"]);
    assert_eq!(expected[2], ["north"]);

    for (seq, id) in [atm, router, camera].into_iter().enumerate() {
        common::report_status(&app, id, seq as u64 + 1, Status::Down, 10_000).await;
    }
    deliver(&app, &channels, 10_000).await;
    let told = |servers: &[Arc<common::Receiver>], kind: &str| -> Vec<Vec<String>> {
        [("atm-1"), ("rtr-1"), ("cam-1")]
            .iter()
            .map(|device| {
                names
                    .iter()
                    .zip(servers)
                    .filter(|(_, server)| {
                        server
                            .bodies()
                            .iter()
                            .any(|b| b["kind"] == kind && b["device"]["name"] == *device)
                    })
                    .map(|(&name, _)| name.to_owned())
                    .collect()
            })
            .collect()
    };
    let mut sorted = expected.clone();
    for receivers in &mut sorted {
        receivers.sort();
    }
    assert_eq!(
        told(&servers, "firing"),
        sorted,
        "delivered as the route test said"
    );

    // The ATM loses its tag while down: the routes would no longer send
    // its alert to the vendor, but the vendor was told it fired, so it is
    // told it ended.
    let spec = DeviceSpec {
        severity: Severity::Critical,
        ..DeviceSpec::new(
            "atm-1".into(),
            "198.18.1.10".parse().expect("address"),
            "north-0421".into(),
        )
    };
    app.inventory
        .update_device(atm, &spec, &Actor::console(), 20_000)
        .await
        .expect("untag");
    let (_, said) = api
        .post(
            "/api/v1/receivers/route",
            json!({"alertname": "DeviceDown", "site": "north-0421", "severity": "critical"}),
        )
        .await;
    assert_eq!(said["receivers"], json!(["north"]));
    assert_eq!(said["matched"], json!([2]));
    for (seq, id) in [atm, router, camera].into_iter().enumerate() {
        common::report_status(&app, id, seq as u64 + 10, Status::Up, 30_000).await;
    }
    deliver(&app, &channels, 30_000).await;
    assert_eq!(
        told(&servers, "resolved"),
        sorted,
        "resolutions follow firings"
    );

    // Counted per receiver: the NOC was given the ATM's and the camera's
    // notifications and sent neither.
    for (receiver, outcome, count) in [
        ("noc", "sent", 2),
        ("noc", "not_routed", 4),
        ("vendor", "sent", 2),
        ("vendor", "not_routed", 4),
        ("north", "sent", 4),
        ("north", "not_routed", 2),
    ] {
        let series =
            format!("ward_notifications_total{{receiver=\"{receiver}\",outcome=\"{outcome}\"}}");
        assert_eq!(api.metric(&series).await, count, "{series}");
    }

    // Listed without secrets; a bad label is a 400 naming it.
    let (status, listing) = api.get("/api/v1/receivers").await;
    assert_eq!(status, 200);
    assert_eq!(listing["receivers"].as_array().expect("receivers").len(), 3);
    assert_eq!(listing["routes"][0]["match"], json!({"tag": "atm"}));
    assert_eq!(listing["routes"][0]["continue"], true);
    for (body, field) in [
        (
            json!({"alertname": "DeviceUp", "site": "s", "severity": "major"}),
            "alertname",
        ),
        (
            json!({"alertname": "DeviceDown", "site": "s", "severity": "urgent"}),
            "severity",
        ),
    ] {
        let (status, error) = api.post("/api/v1/receivers/route", body).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{error}"
        );
    }
}

/// A receiver down for a while: the others get everything meanwhile;
/// `/readyz` names it once it has failed for `receiver_failing_after`
/// (not before); when it is back it gets its queue in order, and
/// `/readyz` is ok again.
#[tokio::test]
async fn a_receiver_down_for_a_while_holds_back_no_other_is_named_in_readyz_and_catches_up_in_order()
 {
    let (pager, pager_url) = common::start_receiver().await;
    let (noc, noc_url) = common::start_receiver().await;
    let channels = [
        Channel::Webhook(Webhook::new(&pager_url).named("pager")),
        Channel::Webhook(Webhook::new(&noc_url).named("noc")),
    ];
    let (dir, url) = common::sqlite_url();
    let settings = AppSettings {
        receivers: common::webhook_receivers(&["pager", "noc"]),
        receiver_failing_after: std::time::Duration::from_secs(1),
        ..AppSettings::default()
    };
    let app = common::controller_with(&url, Cache::in_process(), settings).await;
    let api = common::Api::serve(app.clone()).await;
    let id = device(&app, "atm-1", "branch-7", &[], Severity::Critical).await;
    let deliver_all = async |now_ms: i64| {
        for channel in &channels {
            deliver_due(&app.notifications, &app.maintenance, channel, now_ms)
                .await
                .expect("round");
        }
    };
    let notifier = async || {
        let (_, ready) = api.get("/readyz").await;
        ready["components"]["notifier"].clone()
    };
    pager
        .failing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let start = ward_controller::time::now_ms();
    common::report_status(&app, id, 1, Status::Down, start).await;
    deliver_all(start).await;
    assert_eq!(
        notifier().await["status"],
        "ok",
        "failing, not for long yet"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let later = ward_controller::time::now_ms();
    common::report_status(&app, id, 2, Status::Up, later).await;
    common::report_status(&app, id, 3, Status::Down, later).await;
    deliver_all(later).await;
    let said = notifier().await;
    assert_eq!(said["status"], "failing", "{said}");
    let detail = said["detail"].as_str().expect("detail");
    assert!(
        detail.contains("pager (since") && !detail.contains("noc"),
        "{detail}"
    );
    let kinds = |receiver: &common::Receiver| -> Vec<String> {
        receiver
            .bodies()
            .iter()
            .map(|body| body["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(&noc),
        ["firing", "resolved", "firing"],
        "the NOC is not held back"
    );
    assert!(pager.bodies().is_empty());

    pager
        .failing
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // Past every backoff; a round delivers one notification per alert, so
    // a few rounds bring the queue through.
    for round in 0..5 {
        deliver_all(later + 120_000 + round).await;
    }
    // In order per alert (the outage that ended, then the one still open).
    let per_alert = |receiver: &common::Receiver| -> Vec<(i64, String)> {
        let mut sent: Vec<(i64, String)> = receiver
            .bodies()
            .iter()
            .map(|body| {
                let kind = body["kind"].as_str().unwrap_or_default().to_owned();
                (body["alert_id"].as_i64().expect("alert id"), kind)
            })
            .collect();
        sent.sort_by_key(|(alert, _)| *alert);
        sent
    };
    assert_eq!(
        per_alert(&pager),
        per_alert(&noc),
        "everything, in order per alert"
    );
    assert_eq!(pager.bodies().len(), 3);
    assert_eq!(notifier().await["status"], "ok");
    drop(dir);
}

/// A reload that adds a receiver and a route keeps what waits for the
/// receivers still configured; one taken out has its queue discarded.
#[tokio::test]
async fn a_reload_keeps_the_queue_of_every_receiver_still_configured() {
    let (pager, pager_url) = common::start_receiver().await;
    let (_dir, app) = controller(common::webhook_receivers(&["pager", "gone"]), Vec::new()).await;
    let id = device(&app, "atm-1", "branch-7", &[], Severity::Critical).await;
    pager
        .failing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let channel = Channel::Webhook(Webhook::new(&pager_url).named("pager"));
    common::report_status(&app, id, 1, Status::Down, 10_000).await;
    deliver_due(&app.notifications, &app.maintenance, &channel, 10_000)
        .await
        .expect("round");
    let waiting = |channel: &'static str| {
        let app = app.clone();
        async move {
            app.core
                .store
                .pending_notifications()
                .await
                .expect("outbox")
                .iter()
                .filter(|n| n.channel == channel)
                .count()
        }
    };
    assert_eq!((waiting("pager").await, waiting("gone").await), (1, 1));

    app.notifications
        .reconfigure(
            common::webhook_receivers(&["pager", "noc"]),
            vec![Route::new(Match::site("north-*"), ["noc"], false)],
        )
        .await
        .expect("reload");
    assert_eq!(waiting("pager").await, 1, "still queued after the reload");
    assert_eq!(waiting("gone").await, 0, "a receiver taken out: discarded");
    assert_eq!(app.notifications.routes().len(), 1);
    pager
        .failing
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let round = deliver_due(&app.notifications, &app.maintenance, &channel, 120_000)
        .await
        .expect("round");
    assert_eq!(round.delivered, 1);
    assert_eq!(pager.bodies()[0]["kind"], "firing");
}

/// A route on the parent: the devices behind the core routers go to the
/// core team, as the route test says.
#[tokio::test]
async fn a_route_on_the_parent_sends_the_devices_behind_a_router_to_its_team() {
    let (core, core_url) = common::start_receiver().await;
    let (noc, noc_url) = common::start_receiver().await;
    let routes = vec![
        Route::new(
            Match {
                parent: Some("core-rtr-*".into()),
                ..Match::default()
            },
            ["core"],
            false,
        ),
        Route::new(Match::default(), ["noc"], false),
    ];
    let (_dir, app) = controller(common::webhook_receivers(&["core", "noc"]), routes).await;
    let api = common::Api::serve(app.clone()).await;
    let router = device(&app, "core-rtr-1", "dc-1", &[], Severity::Critical).await;
    let spec = DeviceSpec {
        parent_id: Some(router),
        ..DeviceSpec::new(
            "switch-1".into(),
            "198.18.1.11".parse().expect("address"),
            "dc-1".into(),
        )
    };
    let switch = common::add_device(&app, &spec).await;
    let (_, said) = api
        .post(
            "/api/v1/receivers/route",
            json!({"alertname": "DeviceDown", "site": "dc-1", "parent": "core-rtr-1", "severity": "major"}),
        )
        .await;
    assert_eq!(said["receivers"], json!(["core"]));
    common::report_status(&app, router, 1, Status::Up, 10_000).await;
    common::report_status(&app, switch, 2, Status::Down, 10_000).await;
    let channels = [
        Channel::Webhook(Webhook::new(&core_url).named("core")),
        Channel::Webhook(Webhook::new(&noc_url).named("noc")),
    ];
    deliver(&app, &channels, 10_000).await;
    let names = |receiver: &common::Receiver| -> Vec<String> {
        receiver
            .bodies()
            .iter()
            .map(|body| {
                body["device"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(names(&core), ["switch-1"]);
    assert!(names(&noc).is_empty());
}
