//! Dashboard logins through LDAP against a real OpenLDAP server (Debian
//! `slapd`, started by the test harness): the role comes from the user's
//! group, a wrong password and a user in no mapped group are refused,
//! LDAPS and StartTLS both check the directory's certificate, and with the
//! directory down local users still log in while `/readyz` says so.

mod common;

use serde_json::{Value, json};
use ward_controller::auth::Role;
use ward_controller::ldap::{Directory, LdapSettings};
use ward_controller::services::App;
use ward_controller::store::Actor;
use ward_testkit::services::{ADMIN_DN, ADMIN_PASSWORD, BASE_DN, Slapd, SlapdTls};

/// Users `olive` (operators), `adam` (admins), `vera` (viewers) and `nina`
/// (no group), each with password `NAME-secret`.
fn people() -> String {
    let mut ldif = format!(
        "dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for user in ["olive", "adam", "vera", "nina"] {
        ldif.push_str(&format!(
            "dn: uid={user},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {user}\n\
             cn: {user}\nsn: {user}\nuserPassword: {user}-secret\n\n"
        ));
    }
    for (group, member) in [
        ("ward-operators", "olive"),
        ("ward-admins", "adam"),
        ("ward-viewers", "vera"),
    ] {
        ldif.push_str(&format!(
            "dn: cn={group},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: {group}\n\
             member: uid={member},ou=people,{BASE_DN}\n\n"
        ));
    }
    ldif
}

/// A directory for tests: the server, its CA, and a service account's
/// password file.
struct Lab {
    slapd: Slapd,
    dir: tempfile::TempDir,
}

fn start_directory() -> Lab {
    let dir = tempfile::Builder::new()
        .prefix("ward-test-ldap-")
        .tempdir()
        .expect("dir");
    ward_controller::certs::init(dir.path(), &["127.0.0.1".to_owned()]).expect("certificates");
    std::fs::write(
        dir.path().join("bind-password"),
        format!("{ADMIN_PASSWORD}\n"),
    )
    .expect("password file");
    let tls = SlapdTls {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("controller.pem"),
        key: dir.path().join("controller.key"),
    };
    let slapd = Slapd::start(&people(), &tls)
        .expect("start slapd (Debian package `slapd`; testkit/run-tests.sh installs it)");
    Lab { slapd, dir }
}

impl Lab {
    /// LDAPS, the user searched for as the service account.
    fn searching(&self) -> LdapSettings {
        LdapSettings {
            url: self.slapd.ldaps_url(),
            starttls: false,
            ca: Some(self.dir.path().join("ca.pem")),
            user_dn: None,
            bind_dn: Some(ADMIN_DN.into()),
            bind_password_file: Some(self.dir.path().join("bind-password")),
            user_base: Some(format!("ou=people,{BASE_DN}")),
            user_filter: "(uid={user})".into(),
            group_base: format!("ou=groups,{BASE_DN}"),
            group_filter: "(member={dn})".into(),
            admin_group: Some(format!("cn=ward-admins,ou=groups,{BASE_DN}")),
            operator_group: Some(format!("cn=ward-operators,ou=groups,{BASE_DN}")),
            viewer_group: Some(format!("cn=ward-viewers,ou=groups,{BASE_DN}")),
            timeout: None,
        }
    }

    /// StartTLS on plain LDAP, a direct bind by DN template.
    fn direct(&self) -> LdapSettings {
        LdapSettings {
            url: self.slapd.url(),
            starttls: true,
            user_dn: Some(format!("uid={{user}},ou=people,{BASE_DN}")),
            bind_dn: None,
            bind_password_file: None,
            user_base: None,
            ..self.searching()
        }
    }
}

async fn served(settings: LdapSettings) -> (tempfile::TempDir, App, common::Api) {
    let directory = Directory::new(settings).expect("directory settings");
    common::served_with(|settings| settings.directory = Some(directory)).await
}

async fn login(api: &common::Api, user: &str, password: &str) -> (u16, Value) {
    api.anonymous()
        .post(
            "/api/v1/login",
            json!({ "user": user, "password": password }),
        )
        .await
}

async fn every_login_is_decided_by_the_directory(api: &common::Api) {
    for (user, role) in [("olive", "operator"), ("adam", "admin"), ("vera", "viewer")] {
        let (code, session) = login(api, user, &format!("{user}-secret")).await;
        assert_eq!(code, 200, "{user}: {session}");
        assert_eq!(session["role"], role, "{user}: {session}");
        assert_eq!(session["origin"], "ldap", "{user}: {session}");
    }
    let (code, refused) = login(api, "olive", "vera-secret").await;
    assert_eq!(code, 401, "a wrong password: {refused}");
    let (code, refused) = login(api, "olive", "").await;
    assert_eq!(
        code, 401,
        "an empty password is never an anonymous bind: {refused}"
    );
    let (code, refused) = login(api, "nobody", "x").await;
    assert_eq!(code, 401, "no such user: {refused}");
    let (code, refused) = login(api, "nina", "nina-secret").await;
    assert_eq!(code, 403, "a user in no mapped group: {refused}");
    assert!(
        refused["error"]
            .as_str()
            .expect("error")
            .contains("no group"),
        "{refused}"
    );
    let (_, audit) = api.get("/api/v1/audit?object=user%20nina").await;
    assert_eq!(audit[0]["action"], "login.refused", "{audit}");
    let (_, audit) = api.get("/api/v1/audit?object=user%20olive").await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["login.failed", "login.failed", "login"],
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_users_log_in_with_their_groups_role_over_ldaps_and_starttls() {
    let lab = tokio::task::block_in_place(start_directory);
    for settings in [lab.searching(), lab.direct()] {
        let (_dir, _controller, api) = served(settings).await;
        every_login_is_decided_by_the_directory(&api).await;
        let (_, ready) = api.get("/readyz").await;
        assert_eq!(ready["components"]["ldap"]["status"], "ok", "{ready}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_certificate_from_another_ca_is_refused() {
    let lab = tokio::task::block_in_place(start_directory);
    let other = tempfile::Builder::new()
        .prefix("ward-test-ldap-ca-")
        .tempdir()
        .expect("dir");
    ward_controller::certs::init(other.path(), &["127.0.0.1".to_owned()]).expect("other CA");
    for settings in [lab.searching(), lab.direct()] {
        let settings = LdapSettings {
            ca: Some(other.path().join("ca.pem")),
            ..settings
        };
        let (_dir, _controller, api) = served(settings).await;
        let (code, refused) = login(&api, "olive", "olive-secret").await;
        assert_eq!(code, 503, "{refused}");
        let (_, ready) = api.get("/readyz").await;
        assert_eq!(ready["components"]["ldap"]["status"], "failing", "{ready}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_directory_down_local_users_log_in_and_readyz_says_so() {
    let mut lab = tokio::task::block_in_place(start_directory);
    let (_dir, controller, api) = served(lab.searching()).await;
    let hash = ward_controller::auth::hash_password("local-secret").expect("hash");
    controller
        .core
        .store
        .add_user(
            "local",
            Role::Admin,
            Some(&hash),
            &Actor::console(),
            ward_controller::time::now_ms(),
        )
        .await
        .expect("local user");
    assert_eq!(login(&api, "olive", "olive-secret").await.0, 200);

    tokio::task::block_in_place(|| lab.slapd.stop());
    let (code, session) = login(&api, "local", "local-secret").await;
    assert_eq!(
        code, 200,
        "a local user does not need the directory: {session}"
    );
    assert_eq!(session["origin"], "local");
    let (code, refused) = login(&api, "olive", "olive-secret").await;
    assert_eq!(code, 503, "{refused}");
    assert!(
        refused["error"].as_str().expect("error").contains("LDAP"),
        "it says the directory is the cause: {refused}"
    );
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["components"]["ldap"]["status"], "failing", "{ready}");
    assert!(
        ready["components"]["ldap"]["detail"]
            .as_str()
            .expect("detail")
            .contains("local users can"),
        "{ready}"
    );
    assert_eq!(api.metric("ward_login_directory_errors_total").await, 1);

    tokio::task::block_in_place(|| lab.slapd.resume()).expect("slapd back");
    let (_, ready) = api.get("/readyz").await;
    assert_eq!(ready["components"]["ldap"]["status"], "ok", "{ready}");
    assert_eq!(login(&api, "olive", "olive-secret").await.0, 200);
}
