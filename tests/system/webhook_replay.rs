//! A hostile client against a signed CloudEvents endpoint: it captured a
//! signed request and sends it again, unchanged or altered, too late, or
//! after a flood of other deliveries. Real controller, real HTTPS.

use levee_tests::signed_webhook::{Delivery, Signer, binary_cloudevent, now_unix_s};
use levee_tests::webhook_client::WebhookClient;
use levee_tests::{ControllerProcess, TestEnv, https};
use serde_json::Value;

use crate::common::events_of;

const KEY: &str = "deploys-signing-key";
const HOOK: &str = "/hooks/deploys";
/// The endpoint's window, not the default, so the refusal is seen to name
/// the endpoint's own.
const WINDOW_S: i64 = 120;

/// One controller with a signed CloudEvents endpoint and metrics.
fn start(env: &mut TestEnv) -> (ControllerProcess, WebhookClient, Signer) {
    let key = env.path().join("deploys.key");
    std::fs::write(&key, KEY).unwrap();
    env.controller_keys = "metrics_listen = \"127.0.0.1:0\"".into();
    env.controller_options = format!(
        r#"[webhooks]
listen = "127.0.0.1:0"

[[webhooks.endpoint]]
name = "deploys"
format = "cloudevents"
hmac_secret_file = "{}"
replay_window_s = {WINDOW_S}
"#,
        key.display()
    );
    let controller = env.start_controller(1);
    let client = WebhookClient::new(&env.pki.dir.join("ca.crt"), &controller.webhook_addr());
    let signer = Signer::new(KEY.as_bytes(), "x-levee-signature");
    (controller, client, signer)
}

fn deploy_event(signer: &Signer, signed_at: i64) -> Delivery {
    signer.sign(
        signed_at,
        &binary_cloudevent("deploy-42", "app.deployed"),
        br#"{"release":"2026.11.3"}"#,
    )
}

/// `levee_events_committed_total` from the controller's metrics.
fn events_committed(controller: &ControllerProcess) -> u64 {
    let scrape = https::get(&format!("http://{}/metrics", controller.metrics_addr()));
    scrape
        .body
        .lines()
        .find_map(|line| line.strip_prefix("levee_events_committed_total "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no events_committed in the scrape: {}", scrape.body))
}

fn error_of(reply: &https::Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_captured_signed_request_is_refused_unchanged_altered_or_late() {
    let mut env = TestEnv::new();
    let (controller, client, signer) = start(&mut env);
    let captured = deploy_event(&signer, now_unix_s());
    let sent = client.post(HOOK, &captured);
    assert_eq!(sent.status, 200, "{sent:?}");
    assert_eq!(sent.json()["accepted"], 1, "{sent:?}");

    // Sent again as captured: a repeat, answered 200, committed once.
    let replay = client.post(HOOK, &captured);
    assert_eq!(replay.status, 200, "{replay:?}");
    assert_eq!(replay.json()["duplicates"], 1, "{replay:?}");
    assert_eq!(replay.json()["accepted"], 0, "{replay:?}");

    // Altered: every signed part changed breaks the signature.
    let fresh = (now_unix_s() + 1).to_string();
    let altered = [
        (
            "a new ce-id",
            captured.clone().with_header("ce-id", "deploy-43"),
        ),
        (
            "a new ce-type",
            captured.clone().with_header("ce-type", "app.rolled-back"),
        ),
        (
            "an added ce-* header",
            captured.clone().with_header("ce-subject", "db"),
        ),
        (
            "a new timestamp",
            captured.clone().with_header("x-levee-timestamp", &fresh),
        ),
    ];
    for (change, delivery) in &altered {
        let refused = client.post(HOOK, delivery);
        assert_eq!(refused.status, 401, "{change}: {refused:?}");
        assert!(
            error_of(&refused).starts_with("wrong signature: header `x-levee-signature`"),
            "{change}: {refused:?}"
        );
    }

    // Correctly signed, but outside the endpoint's window either way.
    let late = deploy_event(&signer, now_unix_s() - WINDOW_S - 30);
    let refused = client.post(HOOK, &late);
    assert_eq!(refused.status, 401, "{refused:?}");
    let error = error_of(&refused);
    assert!(error.starts_with("request too old"), "{error}");
    assert!(error.contains("replay window of 120 s"), "{error}");
    let early = deploy_event(&signer, now_unix_s() + 600);
    let refused = client.post(HOOK, &early);
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        error_of(&refused).starts_with("request from the future"),
        "{refused:?}"
    );
    // A body-only HMAC, as senders signed before v1, is told the form.
    let unsigned = captured
        .clone()
        .with_header("x-levee-signature", &"ab".repeat(32));
    let refused = client.post(HOOK, &unsigned);
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        error_of(&refused).contains("expected `v1=<hex>`"),
        "{refused:?}"
    );

    let committed: Vec<Value> = events_of(&controller, "app.deployed");
    assert_eq!(committed.len(), 1, "{committed:?}");
    assert_eq!(committed[0]["data"]["id"], "deploy-42");
    assert!(events_of(&controller, "app.rolled-back").is_empty());
    assert_eq!(
        events_committed(&controller),
        1,
        "nothing else was committed"
    );
}

#[test]
fn a_replay_after_twenty_thousand_other_deliveries_is_still_a_repeat() {
    const FLOOD: usize = 20_000;
    let mut env = TestEnv::new();
    let (controller, client, signer) = start(&mut env);
    let captured = deploy_event(&signer, now_unix_s());
    assert_eq!(client.post(HOOK, &captured).json()["accepted"], 1);

    // Twice the 10,000 ids the state once remembered, all fresh.
    let ids: Vec<String> = (0..FLOOD).map(|n| format!("flood-{n}")).collect();
    let flood: Vec<Delivery> = ids
        .iter()
        .map(|id| signer.sign_now(&binary_cloudevent(id, "app.flooded"), br#"{"noise":true}"#))
        .collect();
    let started = std::time::Instant::now();
    let replies = client.post_all(HOOK, &flood, 32);
    let took = started.elapsed();
    eprintln!("{FLOOD} signed deliveries over 32 connections in {took:?}");
    assert_eq!(replies.len(), FLOOD);
    for (delivery, reply) in flood.iter().zip(&replies) {
        assert_eq!(
            reply.status,
            200,
            "{:?}: {reply:?}",
            delivery.header("ce-id")
        );
    }
    assert_eq!(events_committed(&controller), 1 + FLOOD as u64);

    // The capture, sent again once all of those came after it.
    let replay = client.post(HOOK, &captured);
    assert_eq!(replay.status, 200, "{replay:?}");
    assert_eq!(replay.json()["duplicates"], 1, "{replay:?}");
    assert_eq!(
        events_committed(&controller),
        1 + FLOOD as u64,
        "the replay was not committed again"
    );
    // `levee events` keeps the latest 10,000: the original has aged out of
    // it, and the replay did not come back in.
    assert!(events_of(&controller, "app.deployed").is_empty());
}
