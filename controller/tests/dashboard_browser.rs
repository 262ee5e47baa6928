//! The dashboard in a real headless Chromium: a device turns red within
//! 2 s of its DOWN transition being applied. The screenshot is kept in
//! `target/tmp/dashboard-device-down.png` as the test's artifact.

mod common;

use std::time::{Duration, Instant};

use ward_controller::store::{Status, TransitionReport};
use ward_testkit::browser::Chromium;

/// The dashboard's colour for `down` (`--down: #c62828`).
const RED: &str = "rgb(198, 40, 40)";

fn report(device_id: i64, seq: u64, status: Status) -> TransitionReport {
    common::transition_report(
        "agent-1",
        device_id,
        seq,
        status,
        ward_controller::time::now_ms(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_turns_red_within_two_seconds_of_its_down_transition() {
    // The dashboard has no login yet: it reads anonymously.
    let (_dir, controller, api) =
        common::served_with(|settings| settings.anonymous_read = true).await;
    let (code, router) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "router-1", "address": "198.18.1.1", "site": "branch-12"}),
        )
        .await;
    assert_eq!(code, 201, "{router}");
    let (_, atm) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "atm-1", "address": "198.18.1.20", "site": "branch-12"}),
        )
        .await;
    let id = router["id"].as_i64().expect("id");
    let atm_id = atm["id"].as_i64().expect("id");
    // A few minutes of statistics: without VictoriaMetrics the controller
    // keeps them itself for the chart.
    let now = ward_controller::time::now_ms();
    for minute in (1..=5).rev() {
        let statistics = ward_controller::tsdb::DeviceStatistics {
            device_id: id,
            sent: 60,
            received: 59,
            rtt_min_us: 200,
            rtt_avg_us: 400,
            rtt_max_us: 900,
            jitter_us: 50,
            rtt_quantiles_us: None,
        };
        let taken = controller
            .reports
            .record_statistics(&ward_controller::tsdb::StatisticsReport {
                agent_id: "agent-1".into(),
                period_end_ms: now - minute * 60_000,
                devices: vec![statistics],
            })
            .await
            .expect("statistics");
        assert_eq!(taken, 1);
    }
    controller
        .reports
        .apply_report(&report(id, 1, Status::Up), ward_controller::time::now_ms())
        .await
        .expect("up");
    controller
        .reports
        .apply_report(
            &report(atm_id, 2, Status::Up),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("up");

    let tile = format!("document.getElementById('device-{id}')");
    let mut browser = tokio::task::block_in_place(|| {
        let mut browser = Chromium::start().expect(
            "start headless Chromium (Debian package `chromium`; testkit/run-tests.sh installs it)",
        );
        browser
            .navigate(&format!("{}/", api.base))
            .expect("open the dashboard");
        // Loaded, live (event stream open) and showing the device up.
        browser
            .wait_until(
                &format!(
                    "document.getElementById('link').textContent === 'live' && {tile} !== null \
                 && {tile}.dataset.status === 'up'"
                ),
                Duration::from_secs(20),
            )
            .expect("the dashboard shows the device up, live");
        browser
    });

    let applied = Instant::now();
    controller
        .reports
        .apply_report(
            &report(id, 3, Status::Down),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("down");
    let commit = applied.elapsed();
    let red = tokio::task::block_in_place(|| {
        browser
            .wait_until(
                &format!(
                    "getComputedStyle({tile}.querySelector('.badge')).backgroundColor === '{RED}'"
                ),
                Duration::from_secs(2),
            )
            .expect("the device turns red within 2 s of the DOWN commit")
    });
    eprintln!("dashboard: device red {red:?} after the DOWN commit (commit took {commit:?})");
    tokio::task::block_in_place(|| {
        let shown = browser
            .evaluate(&format!(
                "[{tile}.textContent, document.getElementById('down').textContent, \
                 getComputedStyle(document.querySelector('#device-{atm_id} .badge')).backgroundColor]"
            ))
            .expect("evaluate");
        assert!(
            shown[0].as_str().expect("text").contains("down"),
            "the tile says since when it is down: {shown}"
        );
        assert_ne!(shown[2], RED, "the other device stays as it was: {shown}");
        // The counts follow within the same 2 s.
        browser
            .wait_until(
                "document.getElementById('down').textContent === '1'",
                Duration::from_secs(2),
            )
            .expect("the down count follows within 2 s");
        let artifact =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-device-down.png");
        browser.screenshot(&artifact).expect("screenshot");
        // Clicking a device opens its detail; without VictoriaMetrics its
        // chart comes from the controller's built-in history.
        browser
            .evaluate(&format!("{tile}.querySelector('a').click(); true"))
            .expect("click");
        browser
            .wait_until(
                &format!(
                    "location.search === '?device={id}' && document.getElementById('detail-chart') !== null \
                     && document.querySelector('#detail-chart canvas') !== null \
                     && document.getElementById('detail-chart').textContent.includes('built-in history keeps the last 24 h')"
                ),
                Duration::from_secs(5),
            )
            .expect("the device's chart, from the built-in history");
        eprintln!("dashboard: screenshot saved to {}", artifact.display());
    });
}

/// Every dashboard user's password here.
const PASSWORD: &str = "a long enough password";

/// A controller on SQLite, served, with user `name` of `role` (password
/// [`PASSWORD`]).
async fn with_user(
    name: &str,
    role: ward_controller::auth::Role,
) -> (
    tempfile::TempDir,
    ward_controller::services::App,
    common::Api,
) {
    let (dir, controller) = common::sqlite_controller().await;
    let api = common::Api::serve(controller.clone()).await;
    let hash = ward_controller::auth::hash_password(PASSWORD).expect("hash");
    controller
        .core
        .store
        .add_user(
            name,
            role,
            Some(&hash),
            &ward_controller::store::Actor::console(),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("user");
    (dir, controller, api)
}

/// Chromium logged in at `base` as `user` (password [`PASSWORD`]), live,
/// on device `id`'s detail.
fn logged_in_on_device(base: &str, user: &str, id: i64) -> Chromium {
    let mut browser = Chromium::start().expect(
        "start headless Chromium (Debian package `chromium`; testkit/run-tests.sh installs it)",
    );
    browser.navigate(&format!("{base}/")).expect("open");
    browser
        .wait_until(
            "!document.getElementById('login').hidden",
            Duration::from_secs(10),
        )
        .expect("the login form");
    browser
        .evaluate(&submit_login(user, PASSWORD))
        .expect("log in");
    browser
        .wait_until(
            "document.getElementById('link').textContent === 'live'",
            Duration::from_secs(20),
        )
        .expect("logged in, live");
    browser
        .navigate(&format!("{base}/?device={id}"))
        .expect("open the device");
    browser
}

/// Fills the login form with `user` and `password` and submits it.
fn submit_login(user: &str, password: &str) -> String {
    format!(
        "(() => {{ const form = document.getElementById('login-form'); \
         form.user.value = '{user}'; form.password.value = '{password}'; \
         form.querySelector('button').click(); return true; }})()"
    )
}

/// The page another site serves: a form that posts itself to the
/// controller as soon as it loads (JSON-looking text, the classic CSRF).
fn cross_site_page(controller_base: &str) -> String {
    format!(
        "<!doctype html><form method=\"POST\" enctype=\"text/plain\" \
         action=\"{controller_base}/api/v1/devices\">\
         <input name='{{\"name\":\"evil\",\"address\":\"198.18.9.9\",\"site\":\"x\",\"pad\":\"' \
         value='\"}}'></form><script>document.forms[0].submit()</script>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_sees_devices_safely_and_logs_out_and_another_site_cannot_post() {
    let (_dir, _controller, api) = with_user("alice", ward_controller::auth::Role::Admin).await;
    let hostile = "<img src=x onerror=alert(1)>";
    let (code, device) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": hostile, "address": "198.18.1.1", "site": "branch-12"}),
        )
        .await;
    assert_eq!(code, 201, "{device}");
    let tile = format!("document.getElementById('device-{}')", device["id"]);

    // Another site: same host, another port, a page that posts a form.
    let page = cross_site_page(&api.base);
    let other = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let other_site = format!("http://{}/", other.local_addr().expect("address"));
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        );
        axum::serve(other, app).await
    });

    tokio::task::block_in_place(|| {
        let mut browser = Chromium::start().expect(
            "start headless Chromium (Debian package `chromium`; testkit/run-tests.sh installs it)",
        );
        browser.navigate(&format!("{}/", api.base)).expect("open");
        browser
            .wait_until(
                "!document.getElementById('login').hidden && document.getElementById('board').hidden",
                Duration::from_secs(10),
            )
            .expect("without a session the dashboard asks to log in");
        let header = browser
            .evaluate(
                "[document.getElementById('link').hidden, document.getElementById('counts').hidden]",
            )
            .expect("evaluate");
        assert_eq!(
            header,
            serde_json::json!([true, true]),
            "the login page shows neither `connecting…` nor counts it cannot have"
        );
        browser
            .evaluate(&submit_login("alice", "wrong"))
            .expect("submit");
        browser
            .wait_until(
                "document.getElementById('login-error').textContent.includes('wrong user name or password')",
                Duration::from_secs(10),
            )
            .expect("a wrong password is refused and said so");
        browser
            .evaluate(&submit_login("alice", PASSWORD))
            .expect("submit");
        browser
            .wait_until(
                &format!(
                    "document.getElementById('link').textContent === 'live' && {tile} !== null"
                ),
                Duration::from_secs(20),
            )
            .expect("logged in, the dashboard shows the devices, live");
        let shown = browser
            .evaluate(&format!(
                "[{tile}.querySelector('a').textContent, document.querySelectorAll('#sites img, #problems img').length, \
                 document.getElementById('who-name').textContent]"
            ))
            .expect("evaluate");
        assert_eq!(
            shown,
            serde_json::json!([hostile, 0, "alice (admin)"]),
            "the hostile name is text, not markup"
        );
        // The page's CSP blocks inline script (evaluate itself is exempt).
        let blocked = browser
            .evaluate(
                "const s = document.createElement('script'); s.textContent = 'window.inlineRan = 1'; \
                 document.body.append(s); window.inlineRan === undefined",
            )
            .expect("evaluate");
        assert_eq!(
            blocked,
            serde_json::json!(true),
            "inline script must not run"
        );

        // Another site's form, posted with the session cookie.
        browser.navigate(&other_site).expect("open the other site");
        browser
            .wait_until(
                "location.pathname === '/api/v1/devices' && document.readyState === 'complete'",
                Duration::from_secs(10),
            )
            .expect("the form was posted");
        let answer = browser
            .evaluate("document.body.textContent")
            .expect("answer");
        assert!(
            answer
                .as_str()
                .expect("text")
                .contains("cross-site request refused"),
            "the controller refused the post it got with the cookie: {answer}"
        );

        browser.navigate(&format!("{}/", api.base)).expect("back");
        browser
            .wait_until(
                "!document.getElementById('who').hidden",
                Duration::from_secs(10),
            )
            .expect("still logged in");
        browser
            .evaluate("document.getElementById('logout').click(); true")
            .expect("log out");
        browser
            .wait_until(
                "!document.getElementById('login').hidden",
                Duration::from_secs(10),
            )
            .expect("logged out, the login form is back");
    });
    let (_, devices) = api.get("/api/v1/devices?q=evil").await;
    assert_eq!(
        devices,
        serde_json::json!([]),
        "the cross-site post created nothing"
    );
    let (_, refused) = api.get("/api/v1/audit?principal=dashboard%20session").await;
    let outcomes: Vec<&str> = refused
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["outcome"].as_str())
        .collect();
    assert!(
        outcomes
            .iter()
            .any(|outcome| outcome.contains("cross-site request refused")),
        "the refusal is audited as the session's user: {outcomes:?}"
    );
    let (_, logins) = api.get("/api/v1/audit?object=user%20alice").await;
    let actions: Vec<&str> = logins
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert_eq!(actions, ["logout", "login", "login.failed", "user.add"]);
}

/// Creates device `name` at `address` in site `branch-12`, under
/// `parent`; its id.
async fn branch_device(api: &common::Api, name: &str, address: &str, parent: Option<i64>) -> i64 {
    let (code, device) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": name, "address": address, "site": "branch-12",
                               "parent_id": parent}),
        )
        .await;
    assert_eq!(code, 201, "{device}");
    device["id"].as_i64().expect("id")
}

/// A device's detail open on screen when its device goes down shows the
/// alert that opened with it (and the form to acknowledge it), not "none
/// open" until something else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_opens_while_its_devices_detail_is_shown_appears_there() {
    let (_dir, controller, api) = with_user("olga", ward_controller::auth::Role::Operator).await;
    let atm = branch_device(&api, "atm-1", "198.18.1.20", None).await;
    let apply = |seq, status| {
        let controller = controller.clone();
        async move {
            controller
                .reports
                .apply_report(&report(atm, seq, status), ward_controller::time::now_ms())
                .await
                .expect("report");
        }
    };
    apply(1, Status::Up).await;
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        let mut browser = logged_in_on_device(&api.base, "olga", atm);
        browser
            .wait_until(
                "document.getElementById('detail-facts') !== null \
                 && document.getElementById('detail-facts').textContent.includes('none open')",
                Duration::from_secs(20),
            )
            .expect("the device's detail, no alert open");
        handle.block_on(apply(2, Status::Down));
        browser
            .wait_until(
                "/open since/.test(document.getElementById('detail-facts').textContent) \
                 && document.querySelector('#detail .actions form input[name=comment]') !== null",
                Duration::from_secs(10),
            )
            .expect("the alert that opened, with its acknowledge form");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_acknowledges_and_plans_maintenance_from_a_devices_detail() {
    let (_dir, controller, api) = with_user("olga", ward_controller::auth::Role::Operator).await;
    let router = branch_device(&api, "router-1", "198.18.1.1", None).await;
    let atm = branch_device(&api, "atm-1", "198.18.1.20", Some(router)).await;
    for (seq, (id, status)) in [(router, Status::Up), (atm, Status::Down)]
        .into_iter()
        .enumerate()
    {
        controller
            .reports
            .apply_report(
                &report(id, seq as u64 + 1, status),
                ward_controller::time::now_ms(),
            )
            .await
            .expect("report");
    }

    tokio::task::block_in_place(|| {
        let mut browser = logged_in_on_device(&api.base, "olga", atm);
        browser
            .wait_until(
                "document.getElementById('detail-title') !== null \
                 && document.getElementById('detail-title').textContent.includes('atm-1') \
                 && document.querySelector('#detail .actions form input[name=comment]') !== null",
                Duration::from_secs(20),
            )
            .expect("the device's detail, with an acknowledge form");
        let facts = browser
            .evaluate("document.getElementById('detail-facts').textContent")
            .expect("facts");
        let facts = facts.as_str().expect("text");
        assert!(
            facts.contains("router-1")
                && facts.contains("198.18.1.20")
                && facts.contains("open since"),
            "parent, address and the open alert: {facts}"
        );
        browser
            .evaluate(
                "const form = document.querySelector('#detail .actions form'); \
                 form.comment.value = 'on my way, INC-42'; form.requestSubmit(); true",
            )
            .expect("acknowledge");
        browser
            .wait_until(
                "document.getElementById('detail-said').textContent.startsWith('Acknowledged alert #')",
                Duration::from_secs(10),
            )
            .expect("the page says it acknowledged");
        // Who, as a person reads it; when, in ISO order with its zone.
        let said = browser
            .evaluate("document.getElementById('detail-said').textContent")
            .expect("said");
        assert!(
            said.as_str()
                .is_some_and(|text| text.ends_with(" as olga.")),
            "{said}"
        );
        browser
            .wait_until(
                "/by olga at \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2} UTC/.test(document.getElementById('detail-facts').textContent)",
                Duration::from_secs(10),
            )
            .expect("the acknowledgement's time in ISO order, its zone stated");
        browser
            .evaluate(
                "const forms = document.querySelectorAll('#detail .actions form'); \
                 forms[forms.length - 1].requestSubmit(); true",
            )
            .expect("maintenance");
        browser
            .wait_until(
                "document.getElementById('detail-said').textContent.startsWith('Maintenance window #')",
                Duration::from_secs(10),
            )
            .expect("the page says it opened a window");
        browser
            .wait_until(
                "document.querySelector('#detail .since .maint') !== null \
                 && document.querySelector('#problems .maint') !== null",
                Duration::from_secs(10),
            )
            .expect("in maintenance, in the detail and the problem row");
        let glyphs = browser
            .evaluate("document.body.innerText.includes('\u{23f8}')")
            .expect("evaluate");
        assert_eq!(glyphs, serde_json::json!(false), "no font glyph for pause");
        let artifact =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-device-detail.png");
        browser.screenshot(&artifact).expect("screenshot");
    });
    let (_, alerts) = api.get("/api/v1/alerts?state=open").await;
    let acknowledged = &alerts[0]["acknowledged"];
    assert_eq!(
        (
            acknowledged["by"].as_str(),
            acknowledged["comment"].as_str()
        ),
        (
            Some("user olga (dashboard session)"),
            Some("on my way, INC-42")
        ),
        "{alerts}"
    );
    let (_, windows) = api.get("/api/v1/maintenance?active=true").await;
    assert_eq!(windows[0]["devices"], serde_json::json!([atm]), "{windows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_edits_a_device_in_place_and_a_bad_field_is_named() {
    let (_dir, _controller, api) = with_user("ada", ward_controller::auth::Role::Admin).await;
    let (_, atm) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "atm-1", "address": "198.18.1.20", "site": "branch-12"}),
        )
        .await;
    let atm = atm["id"].as_i64().expect("id");
    tokio::task::block_in_place(|| {
        let mut browser = logged_in_on_device(&api.base, "ada", atm);
        browser
            .wait_until(
                "document.querySelector('#detail form.edit') !== null",
                Duration::from_secs(20),
            )
            .expect("an admin gets the edit form");
        let edit = |changes: &str| {
            format!(
                "(() => {{ const form = document.querySelector('#detail form.edit'); {changes} \
                 form.requestSubmit(); return true; }})()"
            )
        };
        browser
            .evaluate(&edit("form.elements.address.value = '198.18.1.300';"))
            .expect("a bad address");
        browser
            .wait_until(
                "document.getElementById('detail-said').textContent.startsWith('Not saved') \
                 && document.getElementById('detail-said').textContent.includes('address')",
                Duration::from_secs(10),
            )
            .expect("the refusal names the address");
        browser
            .evaluate(&edit(
                "form.elements.address.value = '198.18.1.20'; form.elements.interval_ms.value = '5';",
            ))
            .expect("a bad interval");
        browser
            .wait_until(
                "document.getElementById('detail-said').textContent \
                 === 'Not saved: interval_ms: must be between 10 and 3600000'",
                Duration::from_secs(10),
            )
            .expect("the refusal names the interval");
        browser
            .evaluate(&edit("form.elements.interval_ms.value = '1000';"))
            .expect("the interval back");
        browser
            .wait_until(
                "document.getElementById('detail-said').textContent.startsWith('Saved device atm-1 ')",
                Duration::from_secs(10),
            )
            .expect("the interval back is saved before the next edit");
        let below = browser
            .evaluate(
                "document.getElementById('detail').getBoundingClientRect().top \
                 >= document.getElementById('logout').getBoundingClientRect().bottom",
            )
            .expect("evaluate");
        assert_eq!(
            below,
            serde_json::json!(true),
            "the panel leaves the live indicator and Log out in sight"
        );
        browser
            .evaluate(&edit(
                "form.elements.address.value = '198.18.1.21'; form.elements.name.value = 'atm-lobby'; \
                 form.elements.severity.value = 'critical'; form.elements.tags.value = 'atm, lobby';",
            ))
            .expect("a good edit");
        browser
            .wait_until(
                "document.getElementById('detail-said').textContent.startsWith('Saved device atm-lobby') \
                 && document.getElementById('detail-title').textContent.includes('atm-lobby')",
                Duration::from_secs(10),
            )
            .expect("the page says what it saved");
    });
    let (_, device) = api.get(&format!("/api/v1/devices/{atm}")).await;
    assert_eq!(
        (
            &device["name"],
            &device["address"],
            &device["severity"],
            &device["tags"]
        ),
        (
            &serde_json::json!("atm-lobby"),
            &serde_json::json!("198.18.1.21"),
            &serde_json::json!("critical"),
            &serde_json::json!(["atm", "lobby"])
        ),
        "{device}"
    );
}

/// Problems in the order a NOC reads them: down before unknown, then by
/// severity, newest first; one that began after the operator last left
/// the page is marked new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_are_worst_first_then_newest_and_new_ones_are_marked() {
    let (_dir, controller, api) =
        common::served_with(|settings| settings.anonymous_read = true).await;
    let mut ids = std::collections::HashMap::new();
    // An unknown device added first: older than every outage below.
    for (name, severity) in [
        ("lost-1", "major"),
        ("old-down", "major"),
        ("new-down", "major"),
        ("core", "critical"),
    ] {
        let (code, body) = api
            .post(
                "/api/v1/devices",
                serde_json::json!({"name": name, "address": "198.18.1.30", "site": "branch-7", "severity": severity}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        ids.insert(name, body["id"].as_i64().expect("id"));
    }
    let now = ward_controller::time::now_ms();
    for (seq, (name, down_at)) in [
        ("old-down", now - 60_000),
        ("core", now - 30_000),
        ("new-down", now),
    ]
    .into_iter()
    .enumerate()
    {
        for (offset, status) in [(0, Status::Up), (1, Status::Down)] {
            let report = common::transition_report(
                "agent-1",
                ids[name],
                (2 * seq + offset + 1) as u64,
                status,
                down_at - 1_000 + 1_000 * offset as i64,
            );
            controller
                .reports
                .apply_report(&report, now)
                .await
                .expect("report");
        }
    }
    let order =
        "[...document.querySelectorAll('#problems li .name')].map((a) => a.firstChild.textContent)";
    tokio::task::block_in_place(|| {
        let mut browser = Chromium::start().expect("start headless Chromium");
        browser
            .navigate(&format!("{}/", api.base))
            .expect("open the dashboard");
        browser
            .wait_until(
                "document.getElementById('link').textContent === 'live' \
                 && document.querySelectorAll('#problems li').length === 4",
                Duration::from_secs(20),
            )
            .expect("four problems, live");
        let shown = browser.evaluate(order).expect("order");
        assert_eq!(
            shown,
            serde_json::json!(["core", "new-down", "old-down", "lost-1"]),
            "down before unknown, critical first, then newest first"
        );
        let fresh = browser
            .evaluate("document.querySelectorAll('#problems .fresh').length")
            .expect("new marks");
        assert_eq!(fresh, 0, "nothing is new on a first visit");
        // The operator last looked 45 s ago (set from another page of the
        // origin: leaving the dashboard counts as a look).
        browser
            .navigate(&format!("{}/healthz", api.base))
            .expect("another page");
        browser
            .evaluate(&format!(
                "localStorage.setItem('ward-problems-seen-until', String({})); true",
                now - 45_000
            ))
            .expect("set the last look");
        browser.navigate(&format!("{}/", api.base)).expect("back");
        browser
            .wait_until(
                "document.getElementById('link').textContent === 'live' \
                 && document.querySelectorAll('#problems .fresh').length > 0",
                Duration::from_secs(20),
            )
            .expect("new problems marked");
        let marked = browser
            .evaluate("[...document.querySelectorAll('#problems li.new .name')].map((a) => a.firstChild.textContent)")
            .expect("marked");
        assert_eq!(
            marked,
            serde_json::json!(["core", "new-down", "lost-1"]),
            "began after the last look"
        );
    });
}

/// The wallboard is read from across the room: its problem rows are at
/// the page's large size, and a long site name stays inside its tile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallboard_is_large_and_a_long_site_name_stays_in_its_tile() {
    let (_dir, controller, api) = with_user("wally", ward_controller::auth::Role::Viewer).await;
    let site = "BranchNorthRegionalHeadquartersBuildingAnnex0421";
    let (code, device) = api
        .post(
            "/api/v1/devices",
            serde_json::json!({"name": "atm-1", "address": "198.18.1.30", "site": site}),
        )
        .await;
    assert_eq!(code, 201, "{device}");
    let id = device["id"].as_i64().expect("id");
    controller
        .reports
        .apply_report(
            &report(id, 1, Status::Down),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("down");
    tokio::task::block_in_place(|| {
        let mut browser = logged_in_on_device(&api.base, "wally", id);
        browser.set_viewport(1400, 900).expect("1400×900");
        browser
            .navigate(&format!("{}/?wall=1", api.base))
            .expect("the wallboard");
        browser
            .wait_until(
                "document.getElementById('link').textContent === 'live' \
                 && document.querySelector('#problems .problem') !== null \
                 && document.querySelector('.site') !== null",
                Duration::from_secs(20),
            )
            .expect("the wallboard, live, with the problem");
        let shown = browser
            .evaluate(
                "(() => { const tile = document.querySelector('.site'); \
                 return [parseFloat(getComputedStyle(document.querySelector('.problem')).fontSize), \
                         tile.scrollWidth <= tile.clientWidth]; })()",
            )
            .expect("evaluate");
        assert!(
            shown[0].as_f64().is_some_and(|size| size >= 18.0),
            "problem rows at least 18 px on the wallboard: {shown}"
        );
        assert_eq!(shown[1], true, "the site's name stays in its tile: {shown}");
    });
}

/// A degraded device is a problem of its own: its colour, its loss and
/// RTT in the row, counted and filtered apart, its site tile in that
/// colour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_device_is_a_problem_in_its_own_colour_with_its_loss_and_rtt() {
    use ward_domain::model::{Degradation, DegradedLevel};
    let (_dir, controller, api) =
        common::served_with(|settings| settings.anonymous_read = true).await;
    let mut ids = Vec::new();
    for (name, address) in [("atm-slow", "198.18.1.40"), ("atm-fine", "198.18.1.41")] {
        let (code, body) = api
            .post(
                "/api/v1/devices",
                serde_json::json!({"name": name, "address": address, "site": "branch-24"}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        ids.push(body["id"].as_i64().expect("id"));
    }
    let now = ward_controller::time::now_ms();
    let mut slow = common::transition_report("agent-1", ids[0], 1, Status::Degraded, now);
    slow.transitions[0].degraded = Some(Degradation {
        level: DegradedLevel::Warning,
        loss_permille: 305,
        rtt_us: Some(160_400),
    });
    let fine = common::transition_report("agent-1", ids[1], 2, Status::Up, now);
    for report in [slow, fine] {
        controller
            .reports
            .apply_report(&report, now)
            .await
            .expect("report");
    }
    tokio::task::block_in_place(|| {
        let mut browser = Chromium::start().expect("start headless Chromium");
        browser
            .navigate(&format!("{}/", api.base))
            .expect("open the dashboard");
        browser
            .wait_until(
                "document.getElementById('link').textContent === 'live' \
                 && document.querySelector('#problems li.st-degraded') !== null",
                Duration::from_secs(20),
            )
            .expect("the degraded device among the problems, live");
        let shown = browser
            .evaluate(
                "(() => { const row = document.querySelector('#problems li.st-degraded'); \
                 const tile = document.querySelector('#sites [data-site=\"branch-24\"]'); \
                 return [document.querySelectorAll('#problems li').length, row.textContent, \
                   getComputedStyle(row).borderLeftColor, \
                   document.getElementById('degraded').textContent, \
                   document.getElementById('up').textContent, tile.className]; })()",
            )
            .expect("the row");
        assert_eq!(
            shown[0], 1,
            "only the degraded device is a problem: {shown}"
        );
        let text = shown[1].as_str().unwrap_or_default();
        assert!(text.contains("atm-slow"), "{text}");
        assert!(text.contains("warning: loss 30.5 %, RTT 160 ms"), "{text}");
        // --degraded: #6f5a00.
        assert_eq!(shown[2], "rgb(111, 90, 0)", "{shown}");
        assert_eq!(
            (&shown[3], &shown[4]),
            (&serde_json::json!("1"), &serde_json::json!("1"))
        );
        assert!(
            shown[5]
                .as_str()
                .is_some_and(|class| class.contains("st-degraded")),
            "the site's tile in the degraded colour: {shown}"
        );
        // Filtered by status: only it.
        browser
            .navigate(&format!("{}/?status=degraded", api.base))
            .expect("filtered");
        browser
            .wait_until(
                "document.getElementById('link').textContent === 'live' \
                 && document.querySelectorAll('#device-rows [role=listitem]').length === 1",
                Duration::from_secs(20),
            )
            .expect("one device listed under status=degraded");
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_devices_detail_draws_its_last_trace_with_the_last_hop_named() {
    use ward_domain::trace::{Trace, TraceHop};
    let (_dir, controller, api) =
        common::served_with(|settings| settings.anonymous_read = true).await;
    let mut ids = Vec::new();
    for (name, address) in [("core-router", "198.18.0.2"), ("atm-17", "198.18.40.17")] {
        let (code, body) = api
            .post(
                "/api/v1/devices",
                serde_json::json!({"name": name, "address": address, "site": "branch-40"}),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        ids.push(body["id"].as_i64().expect("id"));
    }
    let now = ward_controller::time::now_ms();
    let down = common::transition_report("agent-1", ids[1], 1, Status::Down, now);
    controller
        .reports
        .apply_report(&down, now)
        .await
        .expect("down");
    let hop = |ttl, address: Option<&str>| TraceHop {
        ttl,
        address: address.map(str::to_owned),
        rtt_us: address.map(|_| 1_250),
    };
    let trace = Trace::new(
        now + 2_000,
        "198.18.40.17".into(),
        false,
        vec![
            hop(1, Some("198.18.0.1")),
            hop(2, None),
            hop(3, Some("198.18.0.2")),
        ],
    );
    controller
        .reports
        .attach_traces(&[(vec![ids[1]], trace)], now + 2_100)
        .await
        .expect("trace");
    tokio::task::block_in_place(|| {
        let mut browser = Chromium::start().expect("start headless Chromium");
        browser
            .navigate(&format!("{}/?device={}", api.base, ids[1]))
            .expect("open the device");
        browser
            .wait_until(
                "document.querySelector('#detail-trace ol.trace') !== null",
                Duration::from_secs(20),
            )
            .expect("the trace drawn");
        let shown = browser
            .evaluate(
                "(() => { const rows = [...document.querySelectorAll('#detail-trace li')]; \
                 return [document.getElementById('detail-trace').textContent, \
                   rows.map((row) => row.textContent), \
                   rows.map((row) => row.className)]; })()",
            )
            .expect("the trace");
        let text = shown[0].as_str().unwrap_or_default();
        assert!(text.contains("ends at 198.18.0.2 (core-router)"), "{text}");
        let rows: Vec<&str> = shown[1]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        assert_eq!(
            rows,
            [
                "1  198.18.0.1  1.3 ms",
                "2  *",
                "3  198.18.0.2 (core-router)  1.3 ms  ← last hop that answered"
            ]
        );
        assert_eq!(shown[2][2], "last-hop", "{shown}");
        // A device never traced says so.
        browser
            .navigate(&format!("{}/?device={}", api.base, ids[0]))
            .expect("open the router");
        browser
            .wait_until(
                "(document.getElementById('detail-trace') || {textContent: ''}).textContent \
                 .includes('never traced')",
                Duration::from_secs(20),
            )
            .expect("the router was never traced");
    });
}
