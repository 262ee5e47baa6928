//! E-mail receivers against a real SMTP server (Debian's Exim, started by
//! the test on a loopback port): STARTTLS and authentication required,
//! each message read back from the server's Maildir and parsed (subject,
//! the plain-text and HTML bodies, the link); a wrong password is a failed
//! delivery retried later, never a lost one.

mod common;

use std::time::Duration;

use ward_controller::config::{EmailSettings, SmtpSecurity};
use ward_controller::notify::{Channel, Email, deliver_due};
use ward_controller::services::{App, AppSettings};
use ward_controller::store::Status;
use ward_testkit::services::{Exim, SMTP_PASSWORD, SMTP_USER};

const PUBLIC_URL: &str = "https://ward.bank.example/";

/// An SMTP server with a certificate for 127.0.0.1 and the CA it chains
/// to (PEM); the directory holding them.
fn smtp_server() -> (Exim, Vec<u8>, tempfile::TempDir) {
    let certs = tempfile::Builder::new()
        .prefix("ward-test-smtp-")
        .tempdir()
        .expect("dir");
    ward_controller::certs::init(certs.path(), &["127.0.0.1".to_owned()]).expect("certificates");
    let exim = Exim::start(
        &certs.path().join("controller.pem"),
        &certs.path().join("controller.key"),
    )
    .expect("start Exim (Debian package exim4-daemon-light)");
    let ca = std::fs::read(certs.path().join("ca.pem")).expect("CA");
    (exim, ca, certs)
}

fn settings(exim: &Exim, ca: &[u8], password: &str) -> EmailSettings {
    EmailSettings {
        host: "127.0.0.1".into(),
        port: exim.port(),
        security: SmtpSecurity::StartTls,
        credentials: Some((SMTP_USER.into(), password.into())),
        from: "ward <ward@bank.example>".into(),
        to: vec!["noc@bank.example".into(), "night@bank.example".into()],
        ca_pem: Some(ca.to_vec()),
    }
}

async fn controller() -> (tempfile::TempDir, App, i64) {
    common::webhook_controller_with_device(AppSettings {
        receivers: common::webhook_receivers(&["webhook"]),
        ..AppSettings::default()
    })
    .await
}

/// The server's messages once it holds `count`, within 10 s.
async fn messages(exim: &Exim, count: usize) -> Vec<Vec<u8>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let messages = exim.messages().expect("Maildir");
        if messages.len() >= count || std::time::Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (subject, plain body, HTML body) of a raw message.
fn parts(raw: &[u8]) -> (String, String, String) {
    let mail = mailparse::parse_mail(raw).expect("a MIME message");
    let subject = mail
        .headers
        .iter()
        .find(|h| h.get_key().eq_ignore_ascii_case("subject"))
        .map(|h| h.get_value())
        .expect("a subject");
    let body = |mime: &str| {
        mail.subparts
            .iter()
            .find(|part| part.ctype.mimetype == mime)
            .unwrap_or_else(|| panic!("no {mime} part"))
            .get_body()
            .expect("body")
    };
    (subject, body("text/plain"), body("text/html"))
}

#[tokio::test]
async fn an_alert_is_mailed_over_starttls_with_authentication_and_reads_back() {
    let (exim, ca, _certs) = smtp_server();
    let (_dir, app, id) = controller().await;
    // The one channel of this test takes the webhook's outbox rows.
    let email = Email::new(
        "webhook",
        &settings(&exim, &ca, SMTP_PASSWORD),
        Some(PUBLIC_URL),
    )
    .expect("receiver");
    let channel = Channel::Email(email);
    let report = |seq, status, at| common::transition_report("agent", id, seq, status, at);
    app.reports
        .apply_report(&report(1, Status::Down, 10_000), 10_000)
        .await
        .expect("down");
    let round = deliver_due(&app.notifications, &app.maintenance, &channel, 10_000)
        .await
        .expect("round");
    assert_eq!((round.delivered, round.failed), (1, 0));
    let fired = messages(&exim, 2).await;
    assert_eq!(fired.len(), 2, "one copy for each of the two recipients");
    let link = format!("{PUBLIC_URL}?device={id}");
    for raw in &fired {
        let (subject, plain, html) = parts(raw);
        assert_eq!(subject, "[ward] DOWN atm-1 (branch-7) since 00:00 UTC");
        for fact in [
            "Site: branch-7",
            "Severity: critical",
            "Address: 198.18.1.10",
            "Acknowledged: no",
        ] {
            assert!(plain.contains(fact), "{fact} in\n{plain}");
        }
        assert!(plain.contains(&link), "{plain}");
        assert!(html.contains(&format!("<a href=\"{link}\">")), "{html}");
        assert!(
            html.contains("<th align=\"left\">Site</th><td>branch-7</td>"),
            "{html}"
        );
        let text = String::from_utf8_lossy(raw);
        assert!(text.contains("From: ward <ward@bank.example>"), "{text}");
    }

    app.reports
        .apply_report(&report(2, Status::Up, 70_000), 70_000)
        .await
        .expect("up");
    deliver_due(&app.notifications, &app.maintenance, &channel, 70_000)
        .await
        .expect("round");
    let all = messages(&exim, 4).await;
    assert_eq!(all.len(), 4);
    let (subject, _, _) = parts(&all[3]);
    assert_eq!(
        subject,
        "[ward] RESOLVED DOWN atm-1 (branch-7) at 00:01 UTC"
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_failed_delivery_kept_for_later_not_a_lost_one() {
    let (exim, ca, _certs) = smtp_server();
    let (_dir, app, id) = controller().await;
    let channel = Channel::Email(
        Email::new("webhook", &settings(&exim, &ca, "not-the-password"), None).expect("receiver"),
    );
    app.reports
        .apply_report(
            &common::transition_report("agent", id, 1, Status::Down, 10_000),
            10_000,
        )
        .await
        .expect("down");
    let round = deliver_due(&app.notifications, &app.maintenance, &channel, 10_000)
        .await
        .expect("round");
    assert_eq!((round.delivered, round.failed), (0, 1));
    assert!(app.notifications.failing("webhook"));
    assert_eq!(
        app.core
            .store
            .pending_notifications()
            .await
            .expect("outbox")
            .len(),
        1,
        "kept for the next attempt"
    );
    assert!(exim.messages().expect("Maildir").is_empty());
}
