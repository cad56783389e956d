//! MQTT subscriptions for edge brokers. Only the leader subscribes, under
//! one client id for the cluster and a persistent session (clean session
//! off), with QoS 1 and manual acknowledgement: a message is acknowledged
//! to the broker only after its event is committed. A message that was
//! not acknowledged (the leader died, the commit failed) is delivered
//! again by the broker, to whichever controller leads next.

use std::time::Duration;

use levee_common::event::{MAX_EVENT_DATA_BYTES, MAX_EVENT_FIELD_BYTES};
use std::path::Path;
use std::sync::Arc;

use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::config::MqttConfig;
use super::sink::{InboundSink, Origin};
use crate::state::inbound::InboundEvent;

/// Pause after a failed connection before the next attempt.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct MqttSource {
    pub config: MqttConfig,
    pub password: Option<String>,
    /// Set when the broker is reached over TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sink: InboundSink,
}

/// Why a session with the broker ended.
enum Ended {
    /// Leadership ended or the node is stopping.
    Stopped,
    Failed,
}

impl MqttSource {
    /// Holds the subscription while this node leads: followers keep no
    /// session, since the broker would split the messages between them,
    /// or replay them to each.
    pub async fn lead(self, _term: u64, stepped_down: CancellationToken) {
        let span = info_span!("mqtt", subscription = %self.config.name);
        async move {
            loop {
                match self.session(&stepped_down).await {
                    Ended::Stopped => {
                        info!("no longer the leader (or stopping): unsubscribed");
                        return;
                    }
                    Ended::Failed => {
                        tokio::select! {
                            () = stepped_down.cancelled() => return,
                            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn options(&self) -> MqttOptions {
        let (host, port) = self
            .config
            .broker
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
            .unwrap_or_else(|| (self.config.broker.clone(), 1883));
        let mut options = MqttOptions::new(self.config.client_id(), host, port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(self.config.keep_alive_s.max(5)));
        if let Some(username) = &self.config.username {
            options.set_credentials(username, self.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls.clone())));
        }
        options
    }

    /// One connection, from connect to the first failure, loss of
    /// leadership or shutdown.
    async fn session(&self, stepped_down: &CancellationToken) -> Ended {
        let (client, mut eventloop) = AsyncClient::new(self.options(), 64);
        let origin = Origin {
            source: format!("mqtt/{}", self.config.name),
            names_hosts: self.config.may_name_hosts,
        };
        let ended = loop {
            let polled = tokio::select! {
                () = stepped_down.cancelled() => break Ended::Stopped,
                polled = eventloop.poll() => polled,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    info!(broker = %self.config.broker, session_present = ack.session_present, "connected");
                    // Subscribing on every connection keeps the topics in
                    // step with the config; the retained messages a
                    // subscription brings again are deduplicated by content.
                    let filters = self
                        .config
                        .topics
                        .iter()
                        .map(|topic| SubscribeFilter::new(topic.clone(), QoS::AtLeastOnce));
                    if let Err(err) = client.try_subscribe_many(filters) {
                        warn!(error = %err, "cannot subscribe");
                        break Ended::Failed;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|code| matches!(code, SubscribeReasonCode::Failure))
                        .count();
                    if refused > 0 {
                        warn!(
                            refused,
                            topics = ?self.config.topics,
                            "the broker refused subscriptions (check its ACLs)"
                        );
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if !self.deliver(&client, &origin, &publish).await {
                        break Ended::Failed;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    warn!(broker = %self.config.broker, error = %err, "broker connection failed");
                    break Ended::Failed;
                }
            }
        };
        // Best effort: the broker ends the session either way.
        let _ = client.try_disconnect();
        ended
    }

    /// Commits one message and acknowledges it. False when the commit
    /// failed: the message stays unacknowledged and comes again.
    async fn deliver(&self, client: &AsyncClient, origin: &Origin, publish: &Publish) -> bool {
        let event = match to_event(&self.config.event_type, publish) {
            Ok(event) => event,
            Err(problem) => {
                // A message that can never become an event would block the
                // session forever if left unacknowledged.
                warn!(topic = %publish.topic, %problem, "message dropped");
                return client.ack(publish).await.is_ok();
            }
        };
        match self.sink.submit(origin, vec![event]).await {
            Ok(outcome) => {
                debug!(topic = %publish.topic, accepted = outcome.accepted, "message committed");
                client.ack(publish).await.is_ok()
            }
            Err(err) => {
                warn!(topic = %publish.topic, error = %err, "message not committed; the broker will deliver it again");
                false
            }
        }
    }
}

/// A TLS client config trusting only the CA in `ca` (PEM).
pub fn tls_trusting(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("reading {}: {err}", ca.display()))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|err| format!("{}: {err}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", ca.display()));
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The event a message becomes: subject the topic, data the payload (JSON
/// when it parses, else text). A JSON payload's string `id` deduplicates
/// redeliveries. A retained message (the broker sends it again with every
/// new subscription: each reconnect, each new leader) is dropped when the
/// same content on its topic was committed before, live or retained;
/// messages published while the subscriber is away are queued in its
/// session and arrive live, not as retained.
pub fn to_event(event_type: &str, publish: &Publish) -> Result<InboundEvent, String> {
    if publish.topic.len() > MAX_EVENT_FIELD_BYTES {
        return Err(format!(
            "the topic is {} bytes, more than {MAX_EVENT_FIELD_BYTES}",
            publish.topic.len()
        ));
    }
    if publish.payload.len() > MAX_EVENT_DATA_BYTES {
        return Err(format!(
            "the payload is {} bytes, more than {MAX_EVENT_DATA_BYTES}",
            publish.payload.len()
        ));
    }
    let payload: Value = match serde_json::from_slice(&publish.payload) {
        Ok(json) => json,
        Err(_) => match std::str::from_utf8(&publish.payload) {
            Ok(text) => Value::String(text.to_owned()),
            Err(_) => return Err("the payload is neither JSON nor UTF-8 text".into()),
        },
    };
    let digest = Sha256::digest(&publish.payload);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let content = format!("content {} {hex}", publish.topic);
    let (dedup_id, remember) = match payload.get("id").and_then(Value::as_str) {
        Some(id) => (Some(format!("{} {id}", publish.topic)), None),
        // A replay of a state already seen, live or retained: dropped.
        None if publish.retain => (Some(content), None),
        // Live: always committed, and remembered for later replays.
        None => (None, Some(content)),
    };
    let event = InboundEvent {
        event_type: event_type.to_owned(),
        subject: publish.topic.clone(),
        data: json!({
            "topic": publish.topic,
            "payload": payload,
            "retained": publish.retain,
        }),
        dedup_id,
        time_unix_ms: None,
        remember,
    };
    match event.problem() {
        Some(problem) => Err(problem),
        None => Ok(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str, payload: &[u8]) -> Publish {
        Publish::new(topic, QoS::AtLeastOnce, payload.to_vec())
    }

    #[test]
    fn a_json_payload_becomes_data_and_its_id_deduplicates() {
        let event = to_event(
            "mqtt.message",
            &publish("site/a/alarm", br#"{"id":"m-1","level":3}"#),
        )
        .unwrap();
        assert_eq!(event.subject, "site/a/alarm");
        assert_eq!(event.data["payload"]["level"], 3);
        assert_eq!(event.dedup_id.as_deref(), Some("site/a/alarm m-1"));
    }

    #[test]
    fn a_retained_message_is_deduplicated_by_its_content() {
        let mut retained = publish("site/a/state", b"open");
        retained.retain = true;
        let once = to_event("mqtt.message", &retained).unwrap().dedup_id;
        let again = to_event("mqtt.message", &retained).unwrap().dedup_id;
        assert!(once.is_some());
        assert_eq!(once, again);
        let mut changed = publish("site/a/state", b"closed");
        changed.retain = true;
        assert_ne!(to_event("mqtt.message", &changed).unwrap().dedup_id, once);
    }

    #[test]
    fn a_live_message_is_remembered_so_its_retained_replay_is_dropped() {
        let live = to_event("mqtt.message", &publish("site/a/state", b"open")).unwrap();
        assert_eq!(live.dedup_id, None, "live messages are never dropped");
        let mut replay = publish("site/a/state", b"open");
        replay.retain = true;
        let replay = to_event("mqtt.message", &replay).unwrap();
        assert_eq!(live.remember, replay.dedup_id);
    }

    #[test]
    fn a_text_payload_is_kept_as_text_without_dedup() {
        let event = to_event("mqtt.message", &publish("t", b"door open")).unwrap();
        assert_eq!(event.data["payload"], "door open");
        assert_eq!(event.dedup_id, None);
    }

    #[test]
    fn binary_and_oversized_payloads_are_refused_with_the_reason() {
        let binary = to_event("mqtt.message", &publish("t", &[0xff, 0xfe, 0x00])).unwrap_err();
        assert!(binary.contains("neither JSON nor UTF-8"), "{binary}");
        let big = vec![b'a'; MAX_EVENT_DATA_BYTES + 1];
        let oversized = to_event("mqtt.message", &publish("t", &big)).unwrap_err();
        assert!(oversized.contains("payload is"), "{oversized}");
    }
}
