//! Events from outside the fleet: HTTPS webhooks (Alertmanager,
//! CloudEvents) sent to a follower and committed through the leader
//! (replays of signed ones: `webhook_replay`), and
//! MQTT messages from a real Mosquitto broker, kept across a leader's
//! death.

use levee_tests::mosquitto::Broker;
use levee_tests::signed_webhook::{Delivery, Signer};
use levee_tests::{ControllerProcess, TestEnv, https, wait_until};
use serde_json::Value;

use crate::common::{TIMEOUT, events_of};

const TOKEN: &str = "s3cret-alertmanager-token";
const HMAC_KEY: &str = "ce-signing-key";

const SPECS: &str = r#"
kind: Service
name: web
placement: { selector: { role: worker } }
process:
  argv: ["/bin/sh", "-c", "exec sleep 3600"]
  stop_timeout_ms: 2000
---
kind: Rule
name: drain-on-disk-full
match: { type: [alert.firing], subject: [DiskFull] }
agent_from: data.labels.instance
action: { drain: {} }
"#;

fn alert(instance: &str, alertname: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"{alertname}\"}}","truncatedAlerts":0,
"status":"firing","receiver":"levee","groupLabels":{{"alertname":"{alertname}"}},
"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://alertmanager:9093",
"alerts":[{{"status":"firing","labels":{{"alertname":"{alertname}","instance":"{instance}"}},
"annotations":{{"summary":"disk full"}},"startsAt":"2026-11-29T09:00:00Z",
"endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"d1sk{instance}"}}]}}"#
    )
}

fn webhook_options(env: &TestEnv) -> String {
    let token = env.path().join("am.token");
    let key = env.path().join("ce.key");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::write(&key, HMAC_KEY).unwrap();
    format!(
        r#"[webhooks]
listen = "127.0.0.1:0"

[[webhooks.endpoint]]
name = "alertmanager"
format = "alertmanager"
token_file = "{}"
may_name_hosts = true

[[webhooks.endpoint]]
name = "deploys"
format = "cloudevents"
hmac_secret_file = "{}"
hmac_header = "x-signature"
"#,
        token.display(),
        key.display()
    )
}

fn agents(controller: &ControllerProcess) -> Vec<Value> {
    controller
        .cli(&["agents"])
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

fn running_web(controller: &ControllerProcess) -> Vec<String> {
    agents(controller)
        .iter()
        .filter(|agent| {
            agent["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "web")
        })
        .map(|agent| agent["agent_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_alert_sent_to_a_follower_is_committed_once_and_drains_the_host_it_names() {
    let mut env = TestEnv::new();
    env.controller_options = webhook_options(&env);
    let cluster = env.start_cluster(3);
    let leader = cluster.wait_for_leader();
    let nodes = cluster.node_refs();
    let follower = nodes[(leader + 1) % nodes.len()];
    let specs = env.write_specs("specs", &[("specs.yaml", SPECS)]);
    follower.apply(&specs).expect("levee apply");
    let _workers: Vec<_> = (1..=2)
        .map(|n| env.start_agent(&format!("worker-{n}"), &[("role", "worker")], &nodes))
        .collect();
    let victim = wait_until("web placed on a worker", TIMEOUT, || {
        running_web(follower)
            .pop()
            .ok_or_else(|| format!("{:?}", agents(follower)))
    });
    let ca = env.pki.dir.join("ca.crt");
    let url = format!("https://{}/hooks/alertmanager", follower.webhook_addr());
    let body = alert(&victim, "DiskFull");
    let bearer = format!("Authorization: Bearer {TOKEN}");

    // No credentials: refused, with the Basic challenge SNS needs.
    let refused = https::post(&ca, &url, &[], body.as_bytes());
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused.headers.contains("www-authenticate: basic"),
        "{refused:?}"
    );
    let wrong = https::post(
        &ca,
        &url,
        &["Authorization: Bearer guess".into()],
        body.as_bytes(),
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(!wrong.body.contains(TOKEN), "the token is never echoed");
    // A payload missing what it must carry: 400, naming the field.
    let broken = body.replace("\"alertname\":\"DiskFull\",", "");
    let bad = https::post(&ca, &url, std::slice::from_ref(&bearer), broken.as_bytes());
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("labels.alertname"),
        "{bad:?}"
    );
    assert!(
        events_of(follower, "alert.firing").is_empty(),
        "nothing refused was committed"
    );

    // Delivered to a follower: answered once the leader committed it.
    let ok = https::post(&ca, &url, std::slice::from_ref(&bearer), body.as_bytes());
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["accepted"], 1, "{ok:?}");
    // Alertmanager sends the group again: committed once.
    let again = https::post(&ca, &url, std::slice::from_ref(&bearer), body.as_bytes());
    assert_eq!(again.json()["duplicates"], 1, "{again:?}");
    let committed = events_of(follower, "alert.firing");
    assert_eq!(committed.len(), 1, "{committed:?}");
    assert_eq!(committed[0]["source"], "webhook/alertmanager");
    assert_eq!(committed[0]["subject"], "DiskFull");
    let outcome = committed[0]["outcomes"][0].as_str().unwrap();
    assert!(
        outcome.starts_with(&format!("drain-on-disk-full: drained {victim}: plan")),
        "{outcome}"
    );

    // The host it named is drained: web runs on the other worker.
    let moved_to = wait_until("web moved off the drained host", TIMEOUT, || {
        let on = running_web(follower);
        match on.as_slice() {
            [one] if *one != victim => Ok(one.clone()),
            _ => Err(format!("{:?}", agents(follower))),
        }
    });
    let drained = agents(follower)
        .into_iter()
        .find(|agent| agent["agent_id"] == victim.as_str())
        .unwrap();
    assert_eq!(drained["drained_of"], serde_json::json!(["*"]));
    wait_until("web converged on the other host", TIMEOUT, || {
        let status = follower.cli(&["status"])?;
        let web = &status["services"][0];
        (web["converged"] == 1)
            .then_some(())
            .ok_or_else(|| web.to_string())
    });
    assert_ne!(moved_to, victim);
    follower.run(&["undrain", &victim]).expect("levee undrain");
    let undrained = agents(follower)
        .into_iter()
        .find(|agent| agent["agent_id"] == victim.as_str())
        .unwrap();
    assert_eq!(undrained["drained_of"], serde_json::json!([]));

    // With the other two controllers dead there is no quorum: nothing can
    // be committed, so the sender is told to retry, and told nothing of
    // the cluster's addresses.
    for (index, node) in nodes.iter().enumerate() {
        if index != (leader + 1) % nodes.len() {
            node.signal(nix::sys::signal::Signal::SIGKILL);
        }
    }
    let later = alert(&victim, "DiskFull").replace("d1sk", "again");
    let unavailable = https::post(&ca, &url, std::slice::from_ref(&bearer), later.as_bytes());
    assert_eq!(unavailable.status, 503, "{unavailable:?}");
    assert!(
        unavailable.headers.contains("retry-after: 1"),
        "{unavailable:?}"
    );
    assert!(!unavailable.body.contains("127.0.0.1"), "{unavailable:?}");
}

#[test]
fn a_cloudevent_in_binary_mode_needs_its_hmac_signature() {
    let mut env = TestEnv::new();
    env.controller_options = webhook_options(&env);
    let controller = env.start_controller(1);
    let ca = env.pki.dir.join("ca.crt");
    let url = format!("https://{}/hooks/deploys", controller.webhook_addr());
    let body = br#"{"release":"2026.11.3","by":"ci"}"#;
    let signer = Signer::new(HMAC_KEY.as_bytes(), "x-signature");
    let event = [
        ("Content-Type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "deploy-42"),
        ("ce-source", "/ci/pipelines/7"),
        ("ce-type", "app.deployed"),
        ("ce-subject", "web"),
    ];
    // As curl sends them: `Name: value`.
    let curl_headers = |delivery: &Delivery| -> Vec<String> {
        delivery
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect()
    };
    let signed = signer.sign_now(&event, body);
    let headers =
        |signature: &str| curl_headers(&signed.clone().with_header("x-signature", signature));
    let signature = signed.header("x-signature").unwrap().to_owned();
    let forged = https::post(&ca, &url, &headers(&format!("v1={}", "0".repeat(64))), body);
    assert_eq!(forged.status, 401, "{forged:?}");
    // More than max_body_bytes (1 MiB by default) is refused unread.
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let too_big = https::post(&ca, &url, &headers(&signature), &huge);
    assert_eq!(too_big.status, 413, "{too_big:?}");
    let tampered = https::post(&ca, &url, &headers(&signature), br#"{"release":"evil"}"#);
    assert_eq!(tampered.status, 401, "{tampered:?}");
    let ok = https::post(&ca, &url, &headers(&signature), body);
    assert_eq!(ok.status, 200, "{ok:?}");
    let events = events_of(&controller, "app.deployed");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], "web");
    assert_eq!(events[0]["source"], "webhook/deploys");
    assert_eq!(events[0]["data"]["data"]["release"], "2026.11.3");
    // A plaintext client is refused: the receiver speaks only TLS.
    let plain = std::process::Command::new("curl")
        .args(["--silent", "--max-time", "10", "--data", "{}"])
        .arg(format!(
            "http://{}/hooks/deploys",
            controller.webhook_addr()
        ))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("accepted"),
        "plain HTTP must not be served"
    );
}

#[test]
fn mqtt_messages_are_committed_once_and_survive_the_leader_s_death() {
    let mut env = TestEnv::new();
    let broker = Broker::start(env.path());
    env.controller_options = format!(
        "[[mqtt]]\nname = \"site\"\nbroker = \"{}\"\ntopics = [\"site/+/alarm\"]\nkeep_alive_s = 5\n",
        broker.addr()
    );
    let mut cluster = env.start_cluster(3);
    let first = |controller: &ControllerProcess, id: &str| -> Vec<Value> {
        events_of(controller, "mqtt.message")
            .into_iter()
            .filter(|event| event["data"]["payload"]["id"] == id)
            .collect()
    };
    // The leader subscribes once it leads; a message before that would
    // be kept by the broker only for a session it already knows.
    wait_until("the leader to subscribe", TIMEOUT, || {
        broker.publish("site/a/alarm", r#"{"id":"probe","level":0}"#);
        let seen = first(cluster.any(), "probe");
        (!seen.is_empty()).then_some(()).ok_or_else(|| {
            let logs: Vec<String> = cluster.nodes.iter().map(|node| node.log_tail()).collect();
            format!(
                "no probe event yet; controller logs:\n{}",
                logs.join("\n---\n")
            )
        })
    });
    broker.publish("site/a/alarm", r#"{"id":"m1","level":3}"#);
    broker.publish("site/a/alarm", r#"{"id":"m1","level":3}"#);
    broker.publish("site/b/alarm", "door open");
    broker.publish("site/a/other", r#"{"id":"not-subscribed"}"#);
    let text = wait_until("the text message", TIMEOUT, || {
        events_of(cluster.any(), "mqtt.message")
            .into_iter()
            .find(|event| event["data"]["payload"] == "door open")
            .ok_or_else(|| "not yet".to_owned())
    });
    assert_eq!(text["subject"], "site/b/alarm");
    assert_eq!(text["source"], "mqtt/site");
    // Messages are committed in order: m1's repeat came before the text.
    assert_eq!(
        first(cluster.any(), "m1").len(),
        1,
        "a redelivery is committed once"
    );
    assert!(first(cluster.any(), "not-subscribed").is_empty());

    // The leader dies; a message published meanwhile waits in the
    // broker's session for whichever controller leads next.
    let leader = cluster.wait_for_leader();
    cluster.nodes[leader].kill();
    broker.publish("site/c/alarm", r#"{"id":"m2","level":5}"#);
    let survivor = cluster.wait_for_leader_without(leader);
    let survivor = cluster
        .nodes
        .iter()
        .find(|node| node.node_id == survivor)
        .unwrap();
    wait_until(
        "the message sent while no leader was subscribed",
        TIMEOUT,
        || {
            let seen = first(survivor, "m2");
            (seen.len() == 1)
                .then_some(())
                .ok_or_else(|| format!("{seen:?}\n{}", survivor.log_tail()))
        },
    );
}

#[test]
fn an_mqtt_broker_reached_over_tls_delivers_to_the_leader() {
    let mut env = TestEnv::new();
    // The broker's certificate, for 127.0.0.1, from the cluster CA.
    let broker_tls = env.pki.issue("controller", "broker");
    let broker = Broker::start_tls(env.path(), &broker_tls);
    env.controller_options = format!(
        "[[mqtt]]\nname = \"edge\"\nbroker = \"{}\"\ntopics = [\"site/#\"]\ntls_ca = \"{}\"\n",
        broker.addr(),
        broker_tls.ca.display()
    );
    let controller = env.start_controller(1);
    let seen = wait_until("a message over TLS to become an event", TIMEOUT, || {
        broker.publish("site/x/alarm", r#"{"id":"tls-1","level":2}"#);
        events_of(&controller, "mqtt.message")
            .into_iter()
            .find(|event| event["data"]["payload"]["id"] == "tls-1")
            .ok_or_else(|| format!("none yet; controller log:\n{}", controller.log_tail()))
    });
    assert_eq!(seen["source"], "mqtt/edge");
    assert_eq!(seen["subject"], "site/x/alarm");
}
