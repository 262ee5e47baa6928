//! The NOC dashboard in a real headless Chromium over a real controller
//! (its REST API and event stream on loopback): 10,000 devices over 100
//! sites, 50 of them down.
//!
//! - 1400×900: all 50 problem rows on the first screen (each bounding box
//!   inside the viewport); the counts, the problems (in the server's
//!   order) and the site tiles shown are REST's (`/api/v1/summary`,
//!   `/api/v1/overview`, `?status=down`); 1,000 changes in one second
//!   applied (the longest frame is printed for docs/BENCHMARKS.md, not
//!   asserted).
//! - The URL's search and filters list the rows REST's filters return.
//! - 400×800: no horizontal scroll, every count visible. `?wall=1`: the
//!   wallboard.
//! - The controller killed: within 3 s the page is stale (banner, no status
//!   colour); restarted: live again with the truth changed meanwhile.
//!
//! Screenshots: `target/tmp/dashboard-*.png`. `WARD_NOC_DEVICES=200000`
//! runs it at another size (docs/BENCHMARKS.md: the dashboard at 200,000
//! devices); devices past the 38,000th are addressed in 2001:2::/48.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use ward_controller::services::App;
use ward_controller::store::{Actor, DeviceSpec, ReportedTransition, Status, TransitionReport};
use ward_testkit::browser::Chromium;

const SITES: usize = 100;

/// How many devices: 10,000 unless `WARD_NOC_DEVICES` says otherwise.
fn device_count() -> usize {
    std::env::var("WARD_NOC_DEVICES")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(10_000)
}
/// Every 199th device is down (50 of them, spread over the sites).
const DOWN_EVERY: usize = 199;
/// The status colour of `down` (`--down: #c62828`) and of a stale page.
const RED: &str = "rgb(198, 40, 40)";
const STALE_GREY: &str = "rgb(112, 112, 112)";

/// The REST API served on `port` by a runtime of its own, so killing it
/// drops every connection at once, as a dead process does.
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(controller: App, port: u16) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, is_bound) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind the dashboard's port");
                bound.send(()).expect("bound");
                let app = ward_controller::api::router(controller)
                    .into_make_service_with_connect_info::<SocketAddr>();
                tokio::select! {
                    served = axum::serve(listener, app) => served.expect("serve"),
                    _ = stopped => {}
                }
            });
            // Every connection's task goes with the runtime.
            runtime.shutdown_background();
        });
        is_bound
            .recv_timeout(Duration::from_secs(10))
            .expect("the server bound its port");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spec(index: usize) -> DeviceSpec {
    DeviceSpec {
        rst_alive: true,
        check: Default::default(),
        profile: None,
        name: format!("dev-{index}"),
        address: if index < 38_000 {
            format!("198.18.{}.{}", 100 + index / 250, 1 + index % 250)
        } else {
            format!("2001:2::{:x}:{:x}", index >> 16, index & 0xffff)
        }
        .parse()
        .expect("address"),
        site: format!("site-{:03}", index % SITES),
        parent_id: None,
        interval_ms: 1000,
        timeout_ms: 500,
        down_after: 3,
        up_after: 2,
        tags: if index.is_multiple_of(7) {
            vec!["atm".into()]
        } else {
            vec![]
        },
        enabled: true,
        severity: [
            ward_controller::store::Severity::Critical,
            ward_controller::store::Severity::Major,
            ward_controller::store::Severity::Minor,
        ][index % 3],
    }
}

fn report(seq: u64, changes: &[(i64, Status)]) -> TransitionReport {
    let now = ward_controller::time::now_ms();
    TransitionReport {
        agent_alerts: Vec::new(),
        agent_id: "agent-1".into(),
        boot_id: "boot-1".into(),
        seq,
        transitions: changes
            .iter()
            .map(|&(device_id, status)| ReportedTransition {
                degraded: None,
                device_id,
                status,
                probed_at_ms: now,
                last_rtt_us: (status == Status::Up).then_some(900),
                reason: "test".into(),
            })
            .collect(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn artifact(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Waits until the page is live and shows `problems` problem rows.
fn live_with(browser: &mut Chromium, problems: usize) -> Duration {
    browser
        .wait_until(
            &format!(
                "document.getElementById('link').textContent === 'live' \
                 && !document.body.classList.contains('stale') \
                 && document.querySelectorAll('#problems li').length === {problems}"
            ),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|error| {
            let shown = browser.evaluate(
                "[document.getElementById('link').textContent, document.body.className, \
                  document.querySelectorAll('#problems li').length, location.href, \
                  document.getElementById('stale').textContent, \
                  performance.getEntriesByType('resource').map((e) => `${e.name} ${Math.round(e.responseEnd)}`)]",
            );
            let url = shown.as_ref().ok().and_then(|v| v[3].as_str()).unwrap_or_default().to_owned();
            let curl = std::process::Command::new("curl").args(["-m", "5", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", &format!("{url}api/v1/devices")]).output();
            panic!("the dashboard live with {problems} problems: {error}; it shows {shown:?}; curl {curl:?}")
        })
}

/// Each status badge shown whose text has less than WCAG AA contrast
/// (4.5:1) on its background, as `[class, ratio]`.
const LOW_CONTRAST: &str = "(() => { \
    const luminance = (css) => { const [r, g, b] = css.match(/\\d+/g).map(Number).map((v) => v / 255) \
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)); \
      return 0.2126 * r + 0.7152 * g + 0.0722 * b; }; \
    const seen = new Map(); \
    for (const badge of document.querySelectorAll('.badge')) { \
      const style = getComputedStyle(badge); \
      const [a, b] = [luminance(style.color), luminance(style.backgroundColor)].sort((x, y) => y - x); \
      seen.set(badge.className, (a + 0.05) / (b + 0.05)); } \
    return [...seen].filter(([, ratio]) => ratio < 4.5); })()";

/// The problem rows whose bounding box leaves the viewport.
const OFF_SCREEN: &str = "[...document.querySelectorAll('#problems li')].filter((row) => { \
    const box = row.getBoundingClientRect(); \
    return box.top < 0 || box.left < 0 || box.bottom > innerHeight || box.right > innerWidth; \
    }).map((row) => row.id)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noc_sees_every_problem_first_finds_anything_and_is_never_shown_a_stale_screen() {
    let (_dir, controller, api) =
        common::served_with(|settings| settings.anonymous_read = true).await;
    let specs: Vec<DeviceSpec> = (0..device_count()).map(spec).collect();
    let devices = controller
        .inventory
        .import_devices(&specs, &Actor::console(), ward_controller::time::now_ms())
        .await
        .expect("import the devices");
    let ids: Vec<i64> = devices.iter().map(|device| device.id).collect();
    let all_up: Vec<(i64, Status)> = ids.iter().map(|&id| (id, Status::Up)).collect();
    let now = ward_controller::time::now_ms();
    controller
        .reports
        .apply_report(&report(1, &all_up), now)
        .await
        .expect("all up");
    let down: Vec<i64> = ids.iter().step_by(DOWN_EVERY).take(50).copied().collect();
    assert_eq!(down.len(), 50);
    let changes: Vec<(i64, Status)> = down.iter().map(|&id| (id, Status::Down)).collect();
    controller
        .reports
        .apply_report(&report(2, &changes), now)
        .await
        .expect("50 down");

    // What REST says, for the screen to agree with.
    let (_, summary) = api.get("/api/v1/summary").await;
    let (_, downs) = api.get("/api/v1/devices?status=down").await;
    let mut down_ids: Vec<i64> = downs
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|device| device["id"].as_i64())
        .collect();
    down_ids.sort_unstable();
    let (_, overview) = api.get("/api/v1/overview").await;

    let port = free_port();
    let mut server = Server::start(controller.clone(), port);
    let base = format!("http://127.0.0.1:{port}");
    let mut browser = tokio::task::block_in_place(|| {
        let mut browser = Chromium::start().expect(
            "start headless Chromium (Debian package `chromium`; testkit/run-tests.sh installs it)",
        );
        browser.set_viewport(1400, 900).expect("1400×900");
        browser.navigate(&format!("{base}/")).expect("open");
        live_with(&mut browser, 50);
        // The counts, the problems and the sites shown are REST's.
        let shown = browser
            .evaluate(
                "[Object.fromEntries(['up', 'degraded', 'down', 'unreachable', 'unknown', 'total']                    .map((name) => [name, Number(document.getElementById(name).textContent)])),                   [...document.querySelectorAll('#problems li.problem')].map((row) => Number(row.id.slice(8))),                   document.querySelectorAll('#sites li').length]",
            )
            .expect("what the screen shows");
        for name in ["up", "degraded", "down", "unreachable", "unknown", "total"] {
            assert_eq!(
                shown[0][name], summary[name],
                "{name}: {shown} against {summary}"
            );
        }
        let problem_ids: Vec<i64> = shown[1]
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        let overview_ids: Vec<i64> = overview["problems"]["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .filter_map(|device| device["id"].as_i64())
            .collect();
        assert_eq!(
            problem_ids, overview_ids,
            "the problems in the server's order"
        );
        let mut problem_set = problem_ids.clone();
        problem_set.sort_unstable();
        assert_eq!(
            problem_set, down_ids,
            "the problems are REST's down devices"
        );
        assert_eq!(
            shown[2].as_u64(),
            overview["sites"].as_array().map(|sites| sites.len() as u64),
            "a tile per site"
        );
        browser
            .screenshot(&artifact("dashboard-problems.png"))
            .expect("screenshot");
        let off = browser.evaluate(OFF_SCREEN).expect("boxes");
        let low = browser.evaluate(LOW_CONTRAST).expect("contrast");
        assert_eq!(low, serde_json::json!([]), "every status badge is WCAG AA");
        let first_problem = browser
            .evaluate("document.querySelector('#problems li').textContent")
            .expect("a problem row");
        assert!(
            first_problem
                .as_str()
                .is_some_and(|text| text.contains("198.18.100.1")
                    && text.contains("site-000")
                    && text.contains("alert #")),
            "a down device keeps its address, site and alert: {first_problem}"
        );
        let first = browser
            .evaluate(
                "[...document.querySelectorAll('#device-rows .row a')].slice(0, 5).map((a) => a.textContent)",
            )
            .expect("first rows");
        assert_eq!(
            first,
            serde_json::json!(["dev-0", "dev-100", "dev-200", "dev-300", "dev-400"]),
            "by site, then name in natural order (dev-1000 after dev-900)"
        );
        assert_eq!(
            off,
            serde_json::json!([]),
            "every problem on the first screen"
        );
        let shown = browser
            .evaluate(
                "[document.getElementById('down').textContent, \
                  document.getElementById('total').textContent, \
                  performance.getEntriesByName('ward-first-render')[0].startTime, \
                  document.querySelector('#problems li').dataset.status]",
            )
            .expect("counts");
        assert_eq!(
            (&shown[0], &shown[1], &shown[3]),
            (
                &Value::from("50"),
                &Value::from(device_count().to_string()),
                &Value::from("down")
            )
        );
        eprintln!(
            "dashboard: first render {:.0} ms after navigation start ({} devices, 50 down)",
            shown[2].as_f64().unwrap_or_default(),
            device_count()
        );
        // Frames longer than 50 ms from here on.
        browser
            .evaluate(
                "window.longFrames = []; new PerformanceObserver((list) => \
                 list.getEntries().forEach((entry) => longFrames.push(entry.duration)))\
                 .observe({ type: 'long-animation-frame' }); true",
            )
            .expect("observe frames");
        browser
    });

    // 1,000 changes within one second: ten reports of 100, 100 ms apart.
    let flipping: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !down.contains(id))
        .take(1_000)
        .collect();
    let started = Instant::now();
    for (round, chunk) in flipping.chunks(100).enumerate() {
        let changes: Vec<(i64, Status)> = chunk.iter().map(|&id| (id, Status::Down)).collect();
        controller
            .reports
            .apply_report(&report(10 + round as u64, &changes), now_ms())
            .await
            .expect("changes");
        tokio::time::sleep_until(
            (started + Duration::from_millis(100 * (round as u64 + 1))).into(),
        )
        .await;
    }
    tokio::task::block_in_place(|| {
        browser
            .wait_until(
                "document.getElementById('down').textContent === '1050'",
                Duration::from_secs(10),
            )
            .expect("1,000 changes shown");
        let longest = browser
            .evaluate("Math.max(0, ...longFrames)")
            .expect("frames");
        eprintln!(
            "dashboard: 1,000 changes in one second applied; longest frame over 50 ms: {longest} ms (0: none)"
        );
    });
    let back: Vec<(i64, Status)> = flipping.iter().map(|&id| (id, Status::Up)).collect();
    controller
        .reports
        .apply_report(&report(30, &back), now_ms())
        .await
        .expect("back up");

    // Search and filters in the URL give REST's rows.
    for query in [
        "status=down&site=site-000",
        "q=dev-12&severity=critical",
        "tag=atm&status=down",
        "q=198.18.100.1",
    ] {
        let (_, expected) = api.get(&format!("/api/v1/devices?{query}")).await;
        let mut expected: Vec<i64> = expected
            .as_array()
            .expect("devices")
            .iter()
            .filter_map(|device| device["id"].as_i64())
            .collect();
        expected.sort_unstable();
        let listed = tokio::task::block_in_place(|| {
            browser.navigate(&format!("{base}/?{query}")).expect("open");
            browser
                .wait_until(
                    &format!(
                        "document.getElementById('link').textContent === 'live' \
                         && document.getElementById('device-count').textContent === '({})'",
                        expected.len()
                    ),
                    Duration::from_secs(20),
                )
                .unwrap_or_else(|error| panic!("?{query}: {error}"));
            browser
                .evaluate(
                    "[...document.querySelectorAll('#device-rows .row')].map((row) => Number(row.id.slice(7)))",
                )
                .expect("rows")
        });
        let mut listed: Vec<i64> = listed
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        listed.sort_unstable();
        if expected.len() <= 20 {
            assert_eq!(listed, expected, "?{query}");
        } else {
            assert!(
                listed.iter().all(|id| expected.contains(id)),
                "?{query}: {listed:?}"
            );
        }
    }

    tokio::task::block_in_place(|| {
        // A phone: nothing wider than the screen, every count visible.
        browser.set_viewport(400, 800).expect("400×800");
        browser.navigate(&format!("{base}/")).expect("open");
        live_with(&mut browser, 50);
        let fits = browser
            .evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth, \
                  [...document.querySelectorAll('#counts li')].every((count) => { \
                    const box = count.getBoundingClientRect(); \
                    return box.width > 0 && box.left >= 0 && box.right <= innerWidth && box.bottom <= innerHeight; })]",
            )
            .expect("widths");
        assert!(
            fits[0].as_u64() <= fits[1].as_u64(),
            "no horizontal scroll (content width ≤ viewport): {fits}"
        );
        assert_eq!(fits[2], true, "every count visible: {fits}");
        browser
            .screenshot(&artifact("dashboard-400px.png"))
            .expect("screenshot");

        // The wallboard.
        browser.set_viewport(1400, 900).expect("1400×900");
        browser.navigate(&format!("{base}/?wall=1")).expect("open");
        live_with(&mut browser, 50);
        let wall = browser
            .evaluate(
                "[getComputedStyle(document.getElementById('filters')).display, \
                  getComputedStyle(document.getElementById('devices-panel')).display, \
                  getComputedStyle(document.body).backgroundColor]",
            )
            .expect("wall");
        assert_eq!(
            wall,
            serde_json::json!(["none", "none", "rgb(17, 17, 17)"]),
            "problems and sites only, dark"
        );
        browser
            .screenshot(&artifact("dashboard-wall.png"))
            .expect("screenshot");

        browser.navigate(&format!("{base}/")).expect("open");
        live_with(&mut browser, 50);
    });

    // The controller dies: the page says so within 3 s.
    let first_down = format!("document.querySelector('#problem-{} .badge')", down[0]);
    let red = tokio::task::block_in_place(|| {
        browser
            .evaluate(&format!("getComputedStyle({first_down}).backgroundColor"))
            .expect("colour")
    });
    assert_eq!(red, RED, "live, a down device is red");
    server.kill();
    let stale = tokio::task::block_in_place(|| {
        browser
            .wait_until(
                "document.body.classList.contains('stale') \
                 && !document.getElementById('stale').hidden \
                 && document.getElementById('stale').textContent.startsWith('not live since')",
                Duration::from_secs(3),
            )
            .expect("stale within 3 s of the controller's death")
    });
    eprintln!("dashboard: stale banner {stale:?} after the controller died");
    let colours = tokio::task::block_in_place(|| {
        browser
            .evaluate(&format!(
                "[getComputedStyle({first_down}).backgroundColor, \
                  getComputedStyle(document.querySelector('.site')).backgroundColor]"
            ))
            .expect("colours")
    });
    assert_eq!(
        colours,
        serde_json::json!([STALE_GREY, STALE_GREY]),
        "no status colour as if live"
    );
    let low = tokio::task::block_in_place(|| browser.evaluate(LOW_CONTRAST).expect("contrast"));
    assert_eq!(low, serde_json::json!([]), "stale badges stay readable");
    tokio::task::block_in_place(|| {
        browser
            .screenshot(&artifact("dashboard-stale.png"))
            .expect("screenshot");
    });

    // While it is dead, the truth changes; back, the page shows it.
    controller
        .reports
        .apply_report(&report(40, &[(down[0], Status::Up)]), now_ms())
        .await
        .expect("one back up");
    let _server = Server::start(controller.clone(), port);
    tokio::task::block_in_place(|| {
        live_with(&mut browser, 49);
        let shown = browser
            .evaluate(&format!(
                "[document.getElementById('down').textContent, document.getElementById('stale').hidden, \
                  {first_down} === null]"
            ))
            .expect("after");
        assert_eq!(shown, serde_json::json!(["49", true, true]));
    });
}

fn now_ms() -> i64 {
    ward_controller::time::now_ms()
}
