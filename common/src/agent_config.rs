//! The agent's configuration file. It lives here, not in the agent crate,
//! because `levee dev` and the system tests write it too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::tls::TlsFiles;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Every controller's `host:port`; the agent finds the leader itself.
    pub controllers: Vec<String>,
    /// Holds the outbox, the task journal and the services' directories.
    pub data_dir: PathBuf,
    /// Labels that rules and placement selectors match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Directories resources may touch. Empty means `<data_dir>/services`.
    #[serde(default)]
    pub allowed_roots: Vec<PathBuf>,
    pub tls: TlsFiles,
    #[serde(default)]
    pub link: LinkConfig,
}

/// How the agent talks to the controllers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// First reconnect delay; doubles up to `reconnect_max_ms`, with jitter.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Most events sent in one batch.
    pub batch_max_events: usize,
    /// Most unacknowledged events kept on disk; past it the oldest are
    /// dropped and counted.
    pub outbox_max_events: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            batch_max_events: 500,
            outbox_max_events: 1_000_000,
        }
    }
}

#[derive(Debug, Error)]
pub enum AgentConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, AgentConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: AgentConfig =
            toml::from_str(&text).map_err(|err| AgentConfigError::Invalid {
                path: path.to_owned(),
                message: err.to_string(),
            })?;
        config
            .validate()
            .map_err(|message| AgentConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.controllers.is_empty() {
            return Err("`controllers` must list at least one controller address".into());
        }
        if self.link.reconnect_min_ms == 0
            || self.link.reconnect_max_ms < self.link.reconnect_min_ms
        {
            return Err(
                "link.reconnect_min_ms must be at least 1 and at most link.reconnect_max_ms".into(),
            );
        }
        if self.link.batch_max_events == 0 || self.link.outbox_max_events == 0 {
            return Err(
                "link.batch_max_events and link.outbox_max_events must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// Where service `name` keeps its files and runs.
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("services").join(name)
    }

    /// The roots resources may touch.
    pub fn roots(&self) -> Vec<PathBuf> {
        if self.allowed_roots.is_empty() {
            vec![self.data_dir.join("services")]
        } else {
            self.allowed_roots.clone()
        }
    }

    pub fn to_toml(&self) -> String {
        // Serialising a struct of strings, paths and maps cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_agent_config_in_deploy_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/agent.toml");
        let config = AgentConfig::load(&path).unwrap();
        assert_eq!(config.labels["role"], "demo");
        assert_eq!(
            config.roots(),
            [PathBuf::from("/var/lib/levee-agent/services")]
        );
    }

    #[test]
    fn a_written_config_reads_back_the_same() {
        let config = AgentConfig {
            controllers: vec!["127.0.0.1:1".into()],
            data_dir: "/tmp/a".into(),
            labels: BTreeMap::from([("role".into(), "demo".into())]),
            allowed_roots: vec![],
            tls: TlsFiles {
                ca: "ca".into(),
                cert: "c".into(),
                key: "k".into(),
            },
            link: LinkConfig::default(),
        };
        assert_eq!(
            toml::from_str::<AgentConfig>(&config.to_toml()).unwrap(),
            config
        );
    }
}
