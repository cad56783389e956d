//! Prometheus metrics: `GET /metrics` on `metrics_listen`, rendered from
//! the replicated state and Raft's view at scrape time (`render` is pure).

mod render;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use levee_common::prom::CONTENT_TYPE;
use openraft::async_runtime::WatchReceiver;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use self::render::{NodeView, render};
use crate::dispatch::sessions::Sessions;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;

#[derive(Clone)]
struct Sources {
    state: SharedState,
    sessions: Sessions,
    proposer: Proposer,
}

/// Binds `listen` and serves until `shutdown`; the bound address is also
/// written to `<data_dir>/metrics.addr`.
pub async fn start(
    listen: SocketAddr,
    data_dir: &Path,
    state: SharedState,
    sessions: Sessions,
    proposer: Proposer,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener to {listen}"))?;
    let addr = listener.local_addr()?;
    std::fs::write(data_dir.join("metrics.addr"), addr.to_string())
        .context("writing metrics.addr")?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Sources {
            state,
            sessions,
            proposer,
        });
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

async fn scrape(State(sources): State<Sources>) -> impl IntoResponse {
    // Sessions first, then the state: never both locks at once.
    let connected: BTreeSet<_> = sources.sessions.connected().into_iter().collect();
    let metrics = sources.proposer.raft().metrics().borrow_watched().clone();
    let node = NodeView {
        is_leader: metrics.current_leader == Some(metrics.id),
        term: metrics.current_term,
        last_log_index: metrics.last_log_index.unwrap_or_default(),
        last_applied_index: metrics.last_applied.map(|id| id.index).unwrap_or_default(),
        voters: metrics.membership_config.membership().voter_ids().count(),
        connected,
    };
    let text = sources.state.read(|state| render(state, &node));
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
