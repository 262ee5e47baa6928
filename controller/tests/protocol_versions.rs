//! Agents and controllers of neighbouring releases link: an agent of the
//! release before protocol versions (its Hello names none) is admitted
//! and told the controller's version; one speaking a protocol newer than
//! the controller's is refused, naming both versions and which side to
//! upgrade.

mod common;

use serde_json::json;
use ward_proto::v1::{self as pb, controller_message};
use ward_proto::{OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION};

async fn first_answer(url: &str, hello: pb::Hello) -> controller_message::Kind {
    let mut stream = common::agent_link(url, hello).await;
    stream
        .message()
        .await
        .expect("an answer")
        .expect("a message")
        .kind
        .expect("a kind")
}

#[tokio::test]
async fn an_agent_of_the_previous_release_links_and_one_too_new_is_refused_naming_the_versions() {
    let (_dir, controller) = common::sqlite_controller().await;
    let api = common::Api::serve(controller.clone()).await;
    let grpc = common::serve_grpc(controller.clone()).await;
    let (code, _) = api
        .post(
            "/api/v1/agents",
            json!({"id": "branch-7-agent", "site": "branch-7"}),
        )
        .await;
    assert_eq!(code, 201);

    let previous = common::ipv4_hello("branch-7-agent", "branch-7");
    assert_eq!(previous.protocol, 0, "the previous release announces none");
    match first_answer(&grpc, previous.clone()).await {
        controller_message::Kind::Snapshot(snapshot) => {
            assert_eq!(snapshot.controller_protocol, PROTOCOL_VERSION);
        }
        other => panic!("expected the assignment, got {other:?}"),
    }

    let newer = pb::Hello {
        protocol: PROTOCOL_VERSION + 1,
        boot_id: "boot-2".into(),
        version: "9.9.9".into(),
        ..previous
    };
    match first_answer(&grpc, newer).await {
        controller_message::Kind::Refusal(refusal) => {
            assert_eq!(refusal.code(), pb::RefusalCode::UnsupportedVersion);
            for said in [
                format!(
                    "ward-agent 9.9.9) speaks agent-link protocol {}",
                    PROTOCOL_VERSION + 1
                ),
                format!("speaks {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"),
                "upgrade this controller first".to_owned(),
            ] {
                assert!(
                    refusal.message.contains(&said),
                    "{said:?} in {}",
                    refusal.message
                );
            }
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
