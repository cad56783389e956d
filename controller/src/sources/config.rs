//! Configuration of the inbound sources, part of a node's TOML config:
//! `[webhooks]` with its `[[webhooks.endpoint]]`s, and `[[mqtt]]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use levee_common::ids::is_valid_name;
use serde::{Deserialize, Serialize};

use super::webhook::Format;
use super::webhook::freshness::{DEFAULT_REPLAY_WINDOW_S, MAX_REPLAY_WINDOW_S, ReplayWindow};

/// The HTTPS webhook receiver. Every controller serves it; a follower
/// hands what it receives to the leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Port 0 picks a free port, written to `<data_dir>/webhook.addr`.
    pub listen: SocketAddr,
    /// Certificate and key served to senders; the node's own when unset
    /// (senders must then trust the cluster CA).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Largest request body accepted.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Each is served at `POST /hooks/<name>`.
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<EndpointConfig>,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

/// One webhook endpoint: its payload format and how senders prove who
/// they are (exactly one of a token or an HMAC secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub name: String,
    pub format: Format,
    /// A file holding the shared token (Bearer, Basic password or
    /// `?token=`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// A file holding the HMAC-SHA256 key. Senders sign each request's
    /// timestamp, `content-type` and `ce-*` headers and body (the v1
    /// signing string, `sources::webhook::signing`) and send `v1=<hex>` in
    /// `hmac_header`.
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    #[serde(default = "default_hmac_header")]
    pub hmac_header: String,
    /// Whether this endpoint's events may name the host a rule acts on
    /// (a rule's `agent_from`). Off by default: whoever can post here
    /// could otherwise drain or repair any host.
    #[serde(default)]
    pub may_name_hosts: bool,
    /// How old (by this controller's clock) a signed request's
    /// `x-levee-timestamp`, or an SNS message's `Timestamp`, may be: 1 to
    /// 900 seconds, 300 when unset. Only for endpoints that carry a time:
    /// signed ones and `sns`.
    #[serde(default)]
    pub replay_window_s: Option<u64>,
}

impl EndpointConfig {
    /// The endpoint's replay window.
    pub fn replay_window(&self) -> ReplayWindow {
        ReplayWindow::of(self.replay_window_s.unwrap_or(DEFAULT_REPLAY_WINDOW_S))
    }
}

fn default_hmac_header() -> String {
    "x-levee-signature".into()
}

/// A subscription on an MQTT broker. Only the leader subscribes, with one
/// client id for the whole cluster, so the broker keeps one session whose
/// unacknowledged messages a new leader receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub name: String,
    /// `host:port` of the broker.
    pub broker: String,
    /// Connect over TLS, trusting this CA (PEM); without it the connection
    /// is plain TCP, for a broker on a trusted network only.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Topic filters, `+` and `#` wildcards allowed; subscribed with QoS 1.
    pub topics: Vec<String>,
    /// Defaults to `levee-<name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The events' type.
    #[serde(default = "default_mqtt_event_type")]
    pub event_type: String,
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// Whether these messages may name the host a rule acts on (a rule's
    /// `agent_from`). Off by default: whoever can publish on the topics
    /// could otherwise act on any host.
    #[serde(default)]
    pub may_name_hosts: bool,
}

fn default_mqtt_event_type() -> String {
    "mqtt.message".into()
}

fn default_keep_alive_s() -> u64 {
    30
}

impl MqttConfig {
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("levee-{}", self.name))
    }
}

use crate::state::inbound::is_reserved_type;

/// A window only means something where requests carry a time: a token
/// endpoint's requests say nothing of when they were sent.
fn validate_replay_window(endpoint: &EndpointConfig) -> Result<(), String> {
    let Some(seconds) = endpoint.replay_window_s else {
        return Ok(());
    };
    if !(1..=MAX_REPLAY_WINDOW_S).contains(&seconds) {
        return Err(format!(
            "`replay_window_s` is {seconds}; it must be 1 to {MAX_REPLAY_WINDOW_S} \
             (ids are remembered only a little longer)"
        ));
    }
    if endpoint.hmac_secret_file.is_none() && endpoint.format != Format::Sns {
        return Err(
            "`replay_window_s` applies only to signed endpoints (`hmac_secret_file`) and \
             `sns` ones: a token endpoint's requests carry no time"
                .into(),
        );
    }
    Ok(())
}

/// Checks what serde cannot; the message names the entry at fault.
pub fn validate(webhooks: Option<&WebhooksConfig>, mqtt: &[MqttConfig]) -> Result<(), String> {
    if let Some(webhooks) = webhooks {
        if webhooks.cert.is_some() != webhooks.key.is_some() {
            return Err("webhooks: set both `cert` and `key`, or neither".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for endpoint in &webhooks.endpoints {
            let at = format!("webhooks.endpoint `{}`", endpoint.name);
            if !is_valid_name(&endpoint.name) {
                return Err(format!("{at}: a name is lowercase letters, digits and '-'"));
            }
            if !names.insert(&endpoint.name) {
                return Err(format!("{at}: the name is used twice"));
            }
            match (&endpoint.token_file, &endpoint.hmac_secret_file) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "{at}: set exactly one of `token_file` and `hmac_secret_file`"
                    ));
                }
            }
            if http::HeaderName::from_bytes(endpoint.hmac_header.as_bytes()).is_err() {
                return Err(format!(
                    "{at}: `hmac_header` {:?} is not a valid header name",
                    endpoint.hmac_header
                ));
            }
            validate_replay_window(endpoint).map_err(|problem| format!("{at}: {problem}"))?;
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for subscription in mqtt {
        let at = format!("mqtt `{}`", subscription.name);
        if !is_valid_name(&subscription.name) {
            return Err(format!("{at}: a name is lowercase letters, digits and '-'"));
        }
        if !names.insert(&subscription.name) {
            return Err(format!("{at}: the name is used twice"));
        }
        if subscription.topics.is_empty() {
            return Err(format!("{at}: `topics` names no topic"));
        }
        if subscription
            .broker
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return Err(format!(
                "{at}: `broker` {:?} is not host:port",
                subscription.broker
            ));
        }
        if is_reserved_type(&subscription.event_type) || subscription.event_type.is_empty() {
            return Err(format!(
                "{at}: `event_type` {:?} is empty or reserved (host.*, levee.*, timer.*)",
                subscription.event_type
            ));
        }
        if subscription.password_file.is_some() && subscription.username.is_none() {
            return Err(format!("{at}: `password_file` needs a `username`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhooks(endpoint: &str) -> WebhooksConfig {
        toml::from_str(&format!(
            "listen = \"127.0.0.1:0\"\n[[endpoint]]\nname = \"e\"\n{endpoint}"
        ))
        .unwrap()
    }

    fn check(endpoint: &str) -> Result<(), String> {
        validate(Some(&webhooks(endpoint)), &[])
    }

    #[test]
    fn a_replay_window_is_for_signed_and_sns_endpoints_within_bounds() {
        let signed = "format = \"cloudevents\"\nhmac_secret_file = \"/k\"\n";
        check(signed).unwrap();
        check(&format!("{signed}replay_window_s = 900\n")).unwrap();
        check("format = \"sns\"\ntoken_file = \"/t\"\nreplay_window_s = 60\n").unwrap();
        for seconds in [0, 901] {
            let err = check(&format!("{signed}replay_window_s = {seconds}\n")).unwrap_err();
            assert!(err.contains("it must be 1 to 900"), "{err}");
        }
        let err = check("format = \"alertmanager\"\ntoken_file = \"/t\"\nreplay_window_s = 60\n")
            .unwrap_err();
        assert!(
            err.starts_with("webhooks.endpoint `e`: `replay_window_s` applies only to signed"),
            "{err}"
        );
    }

    #[test]
    fn the_window_defaults_to_five_minutes() {
        let endpoint = &webhooks("format = \"sns\"\ntoken_file = \"/t\"\n").endpoints[0];
        assert_eq!(endpoint.replay_window().seconds(), 300);
        let endpoint = &webhooks(
            "format = \"cloudevents\"\nhmac_secret_file = \"/k\"\nreplay_window_s = 42\n",
        )
        .endpoints[0];
        assert_eq!(endpoint.replay_window().seconds(), 42);
    }
}
