//! Prometheus metrics: `GET /metrics` on `metrics_listen`, in the text
//! format 0.0.4. The registry's one collector reads the replicated state
//! and Raft's view at scrape time; `render::encode` writes the families
//! and is pure.

mod render;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use levee_common::refusals::RefusalLog;
use openraft::async_runtime::WatchReceiver;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, prometheus_text};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use self::render::{NodeView, encode};
use crate::leader::sessions::Sessions;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;

/// What a scrape reads from: the registry's collector.
pub struct Sources {
    pub state: SharedState,
    pub sessions: Sessions,
    pub proposer: Proposer,
    /// Refused handshakes and calls, by boundary and reason.
    pub refusals: Arc<RefusalLog>,
}

/// Binds `listen` and serves until `shutdown`; the bound address is also
/// written to `<data_dir>/metrics.addr`.
pub async fn start(
    listen: SocketAddr,
    data_dir: &Path,
    sources: Sources,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener to {listen}"))?;
    let addr = listener.local_addr()?;
    std::fs::write(data_dir.join("metrics.addr"), addr.to_string())
        .context("writing metrics.addr")?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry));
    info!(%addr, "serving Prometheus metrics at /metrics");
    tracker.spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            warn!(error = %err, "metrics listener stopped with an error");
        }
    });
    Ok(addr)
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::new();
    match prometheus_text::encode(&mut text, &registry) {
        Ok(()) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(fmt::Error) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

impl Sources {
    fn node_view(&self) -> NodeView {
        let connected: BTreeSet<_> = self.sessions.connected().into_iter().collect();
        let metrics = self.proposer.raft().metrics().borrow_watched().clone();
        NodeView {
            is_leader: metrics.current_leader == Some(metrics.id),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or_default(),
            last_applied_index: metrics.last_applied.map(|id| id.index).unwrap_or_default(),
            voters: metrics.membership_config.membership().voter_ids().count(),
            connected,
            refusals: self.refusals.totals(),
        }
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // Sessions first, then the state: never both locks at once.
        let node = self.node_view();
        self.state.read(|state| encode(state, &node, &mut encoder))
    }
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}
