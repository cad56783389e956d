//! mTLS only: a caller with no certificate, one from another CA or plain
//! text is refused; each role may call only its own services; an agent
//! cannot speak for another, nor as `controller`; and a redelivered event
//! is acknowledged again but committed once.

use std::time::Duration;

use levee_common::identity::{CONTROLLER_SERVER_NAME, Identity, Role};
use levee_common::pb::agent_link_client::AgentLinkClient;
use levee_common::pb::control_client::ControlClient;
use levee_common::pb::raft_transport_client::RaftTransportClient;
use levee_common::pb::{self, AgentMessage, agent_message, controller_message};
use levee_common::pki::CertificateAuthority;
use levee_common::tls::TlsFiles;
use levee_tests::{ControllerProcess, TestEnv};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};
use tonic::{Code, Status};

use crate::common::rows;

fn runtime() -> tokio::runtime::Runtime {
    levee_common::tls::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A channel that trusts the cluster CA and presents `identity`, if any.
fn channel(
    controller: &ControllerProcess,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(CONTROLLER_SERVER_NAME);
    if let Some((cert, key)) = identity {
        tls = tls.identity(TlsIdentity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{}", controller.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

fn with_cert(files: &TlsFiles) -> Option<(String, String)> {
    Some((read(&files.cert), read(&files.key)))
}

async fn list_agents(channel: Channel) -> Result<pb::ListAgentsResponse, Status> {
    ControlClient::new(channel)
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

/// Opens an AgentLink session and returns the first reply.
async fn open_session(channel: Channel, hello: pb::Hello) -> Result<pb::ControllerMessage, Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(hello)),
    })
    .await
    .unwrap();
    let mut inbound = AgentLinkClient::new(channel)
        .session(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let reply = inbound
        .message()
        .await?
        .ok_or_else(|| Status::aborted("stream ended"))?;
    drop(tx);
    Ok(reply)
}

fn hello(agent_id: &str) -> pb::Hello {
    pb::Hello {
        agent_id: agent_id.into(),
        boot_epoch: 1,
        ..Default::default()
    }
}

#[test]
fn no_certificate_another_ca_and_plaintext_are_all_refused() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let ca_pem = read(&env.pki.dir.join("ca.crt"));
    let runtime = runtime();
    let _context = runtime.enter();

    // No client certificate at all.
    let anonymous = runtime.block_on(list_agents(channel(&controller, &ca_pem, None)));
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served: {anonymous:?}"
    );
    let anonymous_agent = runtime.block_on(open_session(
        channel(&controller, &ca_pem, None),
        hello("ghost"),
    ));
    assert!(
        anonymous_agent.is_err(),
        "an agent without a certificate was served"
    );

    // A well-formed operator certificate from another CA.
    let now = OffsetDateTime::now_utc();
    let other_ca =
        CertificateAuthority::create("impostor", now, Duration::from_secs(86_400)).unwrap();
    let forged = other_ca
        .issue(
            &Identity::new(Role::Operator, "tester"),
            &[],
            now,
            Duration::from_secs(3600),
        )
        .unwrap();
    let foreign = runtime.block_on(list_agents(channel(
        &controller,
        &ca_pem,
        Some((forged.cert_pem, forged.key_pem)),
    )));
    assert!(
        foreign.is_err(),
        "a certificate from another CA was served: {foreign:?}"
    );

    // Plaintext HTTP/2 to the same port.
    let plaintext = runtime.block_on(async {
        let channel = Endpoint::from_shared(format!("http://{}", controller.addr))
            .unwrap()
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        list_agents(channel).await
    });
    assert!(
        plaintext.is_err(),
        "a plaintext client was served: {plaintext:?}"
    );

    // Nothing those clients sent changed anything.
    assert!(rows(&controller, "agents").is_empty());
}

#[test]
fn each_role_may_call_only_its_own_services() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let ca_pem = read(&env.pki.dir.join("ca.crt"));
    let agent = with_cert(&env.pki.issue("agent", "edge-1"));
    let operator = with_cert(&env.pki.issue("operator", "tester"));
    let runtime = runtime();
    let _context = runtime.enter();
    let denied = |result: Result<(), Status>, what: &str| match result {
        Err(status) if status.code() == Code::PermissionDenied => {}
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    };

    runtime.block_on(async {
        // An agent certificate on every Control method.
        let mut control = ControlClient::new(channel(&controller, &ca_pem, agent.clone()));
        denied(
            control
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .map(drop),
            "agent: ListAgents",
        );
        denied(
            control
                .list_events(pb::ListEventsRequest::default())
                .await
                .map(drop),
            "agent: ListEvents",
        );
        denied(
            control
                .list_tasks(pb::ListTasksRequest::default())
                .await
                .map(drop),
            "agent: ListTasks",
        );
        denied(
            control
                .list_plans(pb::ListPlansRequest::default())
                .await
                .map(drop),
            "agent: ListPlans",
        );
        denied(
            control
                .apply_specs(pb::ApplySpecsRequest::default())
                .await
                .map(drop),
            "agent: ApplySpecs",
        );
        denied(
            control
                .cluster_status(pb::ClusterStatusRequest {})
                .await
                .map(drop),
            "agent: ClusterStatus",
        );

        // Agent and operator certificates on every Raft method.
        for (who, identity) in [("agent", agent.clone()), ("operator", operator.clone())] {
            let mut raft = RaftTransportClient::new(channel(&controller, &ca_pem, identity));
            denied(
                raft.append_entries(pb::RaftPayload::default())
                    .await
                    .map(drop),
                &format!("{who}: AppendEntries"),
            );
            denied(
                raft.vote(pb::RaftPayload::default()).await.map(drop),
                &format!("{who}: Vote"),
            );
            denied(
                raft.install_snapshot(pb::RaftPayload::default())
                    .await
                    .map(drop),
                &format!("{who}: InstallSnapshot"),
            );
        }

        // An operator certificate cannot open an agent session.
        denied(
            open_session(
                channel(&controller, &ca_pem, operator.clone()),
                hello("tester"),
            )
            .await
            .map(drop),
            "operator: Session",
        );

        // Each role's own service works.
        assert!(
            list_agents(channel(&controller, &ca_pem, operator.clone()))
                .await
                .is_ok()
        );
        let reply = open_session(
            channel(&controller, &ca_pem, agent.clone()),
            hello("edge-1"),
        )
        .await
        .unwrap();
        assert!(
            matches!(reply.body, Some(controller_message::Body::Welcome(_))),
            "{reply:?}"
        );
    });
}

#[test]
fn an_agent_cannot_speak_for_another_agent() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let ca_pem = read(&env.pki.dir.join("ca.crt"));
    let agent = with_cert(&env.pki.issue("agent", "edge-1"));
    let runtime = runtime();
    let _context = runtime.enter();
    let result = runtime.block_on(open_session(
        channel(&controller, &ca_pem, agent),
        hello("edge-2"),
    ));
    match result {
        Err(status) => {
            assert_eq!(status.code(), Code::PermissionDenied);
            assert!(status.message().contains("edge-1"), "{}", status.message());
        }
        Ok(reply) => panic!("impersonation accepted: {reply:?}"),
    }
    assert!(
        rows(&controller, "agents").is_empty(),
        "no agent was registered"
    );
}

#[test]
fn the_name_controller_is_reserved_for_the_controllers_own_events() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let ca_pem = read(&env.pki.dir.join("ca.crt"));
    let agent = with_cert(&env.pki.issue("agent", "controller"));
    let runtime = runtime();
    let _context = runtime.enter();
    let result = runtime.block_on(open_session(
        channel(&controller, &ca_pem, agent),
        hello("controller"),
    ));
    match result {
        Err(status) => {
            assert_eq!(status.code(), Code::PermissionDenied);
            assert!(
                status.message().contains("reserved"),
                "{}",
                status.message()
            );
        }
        Ok(reply) => panic!("an agent named controller was accepted: {reply:?}"),
    }
    assert!(rows(&controller, "agents").is_empty());
}

/// Sends one batch on a fresh session and returns the acknowledgement.
async fn send_batch(channel: Channel, agent_id: &str, seqs: &[u64]) -> pb::EventAck {
    let (tx, rx) = mpsc::channel(8);
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(hello(agent_id))),
    })
    .await
    .unwrap();
    let events = seqs
        .iter()
        .map(|seq| pb::Event {
            id: String::new(),
            boot_epoch: 1,
            seq: *seq,
            r#type: "app.order.placed".into(),
            subject: "orders".into(),
            time_unix_ms: 1,
            data_json: format!("{{\"order\":{seq}}}"),
        })
        .collect();
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Events(pb::EventBatch { events })),
    })
    .await
    .unwrap();
    let mut inbound = AgentLinkClient::new(channel)
        .session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    loop {
        match inbound.message().await.unwrap().expect("stream open").body {
            Some(controller_message::Body::EventAck(ack)) => return ack,
            Some(controller_message::Body::Welcome(_) | controller_message::Body::Heartbeat(_)) => {
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_redelivered_event_is_acknowledged_again_but_committed_once() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let ca_pem = read(&env.pki.dir.join("ca.crt"));
    let agent = with_cert(&env.pki.issue("agent", "edge-1"));
    let runtime = runtime();
    let _context = runtime.enter();

    let first = runtime.block_on(send_batch(
        channel(&controller, &ca_pem, agent.clone()),
        "edge-1",
        &[1, 2],
    ));
    assert_eq!((first.boot_epoch, first.up_to_seq), (1, 2));
    // The agent never saw that ack (say the link dropped) and resends.
    let second = runtime.block_on(send_batch(
        channel(&controller, &ca_pem, agent.clone()),
        "edge-1",
        &[1, 2, 3],
    ));
    assert_eq!((second.boot_epoch, second.up_to_seq), (1, 3));

    let ids: Vec<String> = rows(&controller, "events")
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["edge-1/1/1", "edge-1/1/2", "edge-1/1/3"]);
    let agents = rows(&controller, "agents");
    assert_eq!(agents[0]["events_committed"], 3);
}
