//! A controller node's configuration, read from TOML.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use levee_common::tls::TlsFiles;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sources::config::{MqttConfig, WebhooksConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's Raft id: unique in the cluster, never reused.
    pub node_id: u64,
    /// Where the gRPC services listen (agents, API, Raft). Port 0 picks a
    /// free port, written to `<data_dir>/api.addr` once bound.
    pub listen: SocketAddr,
    /// The address peers and agents dial; defaults to the bound address.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Holds `levee.redb` (Raft log, snapshots) and `api.addr`.
    pub data_dir: PathBuf,
    pub tls: TlsFiles,
    /// Controllers of an existing cluster to ask for membership when this
    /// node's store is empty. Leave empty on the first node (with
    /// `raft.bootstrap = true`) or to join later with `levee cluster join`.
    #[serde(default)]
    pub join: Vec<String>,
    /// Local address for connections to other controllers, on hosts with
    /// several addresses; the kernel chooses when unset.
    #[serde(default)]
    pub peer_source_address: Option<std::net::IpAddr>,
    #[serde(default)]
    pub raft: RaftConfig,
    #[serde(default)]
    pub agents: AgentsConfig,
    /// The HTTPS webhook receiver (off when absent).
    #[serde(default)]
    pub webhooks: Option<WebhooksConfig>,
    /// MQTT subscriptions (the leader subscribes).
    #[serde(default)]
    pub mqtt: Vec<MqttConfig>,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP: bind
    /// it to a private address). Off when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// One file per secret that specs name (`{ secret: NAME }`), read by
    /// the leader when it sends a task. Give every controller the same
    /// files, readable by the controller only.
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
}

/// How the leader watches its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An agent without a session to the leader for this long is declared
    /// lost (`host.lost`), and its replicas are placed elsewhere. A new
    /// leader waits this long afresh before declaring anyone lost.
    pub lost_after_ms: u64,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            lost_after_ms: 30_000,
        }
    }
}

/// Raft timing, log compaction, and who may join by themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Initialise a new single-node cluster if this node's store is empty.
    pub bootstrap: bool,
    /// Controller certificate names that may ask to be added by
    /// themselves (a node started with `join`), each only under its own
    /// name. Set it alike on every controller: whichever leads decides.
    /// `levee cluster join <addr>` needs no entry: the operator's call is
    /// the permission.
    pub join_allowed: Vec<String>,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many entries.
    pub snapshot_every: u64,
}

/// Defaults for controllers on one LAN: a follower votes for a new leader
/// only once `election_max_ms` has passed without a heartbeat (openraft's
/// leader lease), so the write gap after a leader dies is roughly
/// `election_max_ms` plus one election. Across a WAN, raise all three
/// (etcd's 100 / 1000 ms is a good start).
impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            bootstrap: false,
            join_allowed: Vec::new(),
            heartbeat_ms: 50,
            election_min_ms: 250,
            election_max_ms: 500,
            snapshot_every: 5000,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// Checks what serde cannot, before any port is bound.
    pub fn validate(&self) -> Result<(), String> {
        let raft = &self.raft;
        if raft.heartbeat_ms == 0 || raft.election_min_ms <= raft.heartbeat_ms {
            return Err(format!(
                "raft.election_min_ms ({}) must be greater than raft.heartbeat_ms ({})",
                raft.election_min_ms, raft.heartbeat_ms
            ));
        }
        if raft.election_max_ms <= raft.election_min_ms {
            return Err(format!(
                "raft.election_max_ms ({}) must be greater than raft.election_min_ms ({})",
                raft.election_max_ms, raft.election_min_ms
            ));
        }
        if raft.bootstrap && !self.join.is_empty() {
            return Err(
                "set either raft.bootstrap (a new cluster) or join (an existing one), not both"
                    .into(),
            );
        }
        for name in &raft.join_allowed {
            levee_common::identity::check_name(name)
                .map_err(|err| format!("raft.join_allowed: {err}"))?;
        }
        if raft.snapshot_every == 0 {
            return Err("raft.snapshot_every must be at least 1".into());
        }
        crate::sources::config::validate(self.webhooks.as_ref(), &self.mqtt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_node_config_in_deploy_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/controller.toml");
        let config = NodeConfig::load(&path).unwrap();
        assert_eq!(config.node_id, 1);
    }

    #[test]
    fn webhook_and_mqtt_sources_are_checked_before_anything_starts() {
        let base = r#"
node_id = 1
listen = "127.0.0.1:0"
data_dir = "/tmp/x"
tls = { ca = "a", cert = "b", key = "c" }
"#;
        let check = |extra: &str| {
            toml::from_str::<NodeConfig>(&format!("{base}\n{extra}"))
                .map_err(|err| err.to_string())
                .and_then(|config| config.validate())
        };
        let good = r#"
[webhooks]
listen = "127.0.0.1:0"
[[webhooks.endpoint]]
name = "am"
format = "alertmanager"
token_file = "/t"
[[mqtt]]
name = "site"
broker = "127.0.0.1:1883"
topics = ["a/#"]
"#;
        check(good).unwrap();
        let both = good.replace(
            "token_file = \"/t\"",
            "token_file = \"/t\"\nhmac_secret_file = \"/k\"",
        );
        assert!(
            check(&both)
                .unwrap_err()
                .contains("exactly one of `token_file` and `hmac_secret_file`")
        );
        let format = good.replace("\"alertmanager\"", "\"prometheus\"");
        assert!(check(&format).unwrap_err().contains("unknown variant"));
        let reserved = format!("{good}event_type = \"host.lost\"\n");
        assert!(check(&reserved).unwrap_err().contains("reserved"));
        let no_port = good.replace("127.0.0.1:1883", "broker.local");
        assert!(check(&no_port).unwrap_err().contains("is not host:port"));
        let twice =
            format!("{good}[[mqtt]]\nname = \"site\"\nbroker = \"h:1\"\ntopics = [\"t\"]\n");
        assert!(check(&twice).unwrap_err().contains("used twice"));
    }

    #[test]
    fn unknown_fields_and_bad_timings_are_refused() {
        let base = r#"
node_id = 1
listen = "127.0.0.1:0"
data_dir = "/tmp/x"
tls = { ca = "a", cert = "b", key = "c" }
"#;
        assert!(toml::from_str::<NodeConfig>(&format!("{base}\nlisten_port = 3\n")).is_err());
        let config: NodeConfig =
            toml::from_str(&format!("{base}\n[raft]\nheartbeat_ms = 500\n")).unwrap();
        assert!(config.validate().unwrap_err().contains("election_min_ms"));
    }
}
