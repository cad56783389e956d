//! The agent's event sources, behind one shape: each turns something on
//! this host into events in the outbox, runs as one tokio task until
//! `shutdown`, and is built from the config by one entry in [`REGISTRY`].
//! The agent starts whatever [`from_config`] returns and knows no source by
//! name, so adding a source is its module, its line here and its config.
//!
//! - [`emit`]: the local socket applications send their own events to.
//! - [`file_watch`]: `[[watch]]`, inotify, debounced per path.
//! - [`health_check`]: `[[check]]`, probes on an interval, one event per
//!   transition.
//! - [`host_metrics`]: `[[metric]]`, thresholds on cpu, memory, disk and
//!   load.
//! - [`log_pattern`]: `[[log_pattern]]`, lines of followed files matching
//!   a regex.

pub mod emit;
pub mod file_watch;
pub mod health_check;
pub mod host_metrics;
pub mod log_pattern;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use levee_common::agent_config::{AgentConfig, AgentConfigError};
use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::now_ms;
use crate::outbox::Outbox;
use crate::store::StoreError;
use crate::util::blocking;

/// What every source is given when it starts.
#[derive(Clone)]
pub struct SourceContext {
    /// Where events go; an event is durable once appended.
    pub outbox: Outbox,
    /// The agent's data directory: command probes run in it, the emit
    /// socket lives in it.
    pub data_dir: PathBuf,
}

impl SourceContext {
    /// Appends one event now, off the async threads (redb fsyncs).
    pub async fn record(
        &self,
        event_type: &str,
        subject: &str,
        data: serde_json::Value,
    ) -> Result<u64, StoreError> {
        let outbox = self.outbox.clone();
        let (event_type, subject) = (event_type.to_owned(), subject.to_owned());
        blocking(move || outbox.append(&event_type, &subject, &data, now_ms())).await
    }
}

/// A running source's future; it ends once `shutdown` is cancelled.
pub type SourceRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One event source, built from the config and run once.
pub trait Source: Send {
    /// Runs until `shutdown`; reports its own errors (a source that cannot
    /// go on logs why and ends, the agent goes on).
    fn run(self: Box<Self>, context: SourceContext, shutdown: CancellationToken) -> SourceRun;
}

/// Why the config's sources cannot be built.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error(transparent)]
    LogPattern(#[from] log_pattern::MatcherError),
}

/// Builds one kind of source from the config: none, one, or one per item.
type Build = fn(&AgentConfig) -> Result<Vec<Box<dyn Source>>, SourceError>;

/// Every kind of source, in the order they start.
const REGISTRY: &[Build] = &[
    emit::from_config,
    file_watch::from_config,
    host_metrics::from_config,
    health_check::from_config,
    log_pattern::from_config,
];

/// The sources `config` asks for, failing on the first that cannot be
/// built (a regex that does not compile).
pub fn from_config(config: &AgentConfig) -> Result<Vec<Box<dyn Source>>, SourceError> {
    let mut sources = Vec::new();
    for build in REGISTRY {
        sources.extend(build(config)?);
    }
    Ok(sources)
}

/// Checks what [`AgentConfig::validate`] cannot, by building the sources:
/// reported as the config file's error, like the others.
pub fn validate(config: &AgentConfig, path: &Path) -> Result<(), AgentConfigError> {
    from_config(config)
        .map(drop)
        .map_err(|err| AgentConfigError::Invalid {
            path: path.to_owned(),
            message: err.to_string(),
        })
}

/// Starts every source on a task of its own, in the current span.
pub fn spawn_all(
    sources: Vec<Box<dyn Source>>,
    context: &SourceContext,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    sources
        .into_iter()
        .map(|source| {
            tokio::spawn(
                source
                    .run(context.clone(), shutdown.clone())
                    .in_current_span(),
            )
        })
        .collect()
}
