//! Prometheus metrics: `GET /metrics` on `metrics_listen`, plain HTTP, in
//! the text format 0.0.4. [`Readings`] is the registry's one collector: it
//! reads the agent's own objects at scrape time (no task of its own keeps
//! them), and [`Snapshot::encode`] writes the families and is pure.

mod render;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use levee_common::refusals::RefusalLog;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, prometheus_text};
use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use self::render::Snapshot;
use crate::apply::Applier;
use crate::outbox::Outbox;
use crate::store::StoreError;
use crate::util::blocking;

/// The file the bound address is written to, under the data directory:
/// with port 0 it is how tests and local tools find the port.
pub const ADDR_FILE: &str = "metrics.addr";

/// Why the metrics listener could not start. The I/O error is the
/// source, so `{:#}` prints it once.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    WriteAddr {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a scrape reads from.
#[derive(Clone)]
pub struct Readings {
    pub outbox: Outbox,
    pub applier: Applier,
    /// Set by the link while a session with the leader is open.
    pub connected: Arc<AtomicBool>,
    /// Controllers the link refused.
    pub refusals: Arc<RefusalLog>,
    /// `None` when drift detection is off.
    pub unresolved_drift: Option<Arc<AtomicU64>>,
}

/// Binds `listen` and writes the bound address to `<data_dir>/metrics.addr`.
/// Done at startup, before anything runs, so a taken port stops the agent
/// with an error naming the address.
pub async fn bind(listen: SocketAddr, data_dir: &Path) -> Result<TcpListener, MetricsError> {
    let bind_err = |source| MetricsError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let path = data_dir.join(ADDR_FILE);
    std::fs::write(&path, addr.to_string())
        .map_err(|source| MetricsError::WriteAddr { path, source })?;
    info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, readings: Readings, shutdown: CancellationToken) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(readings));
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry));
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        warn!(error = %err, "the metrics listener stopped with an error");
    }
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    // The collector reads the outbox's store (read transactions, but still
    // file I/O): off the async threads.
    let encoded = blocking(move || {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).map(|()| text)
    })
    .await;
    match encoded {
        Ok(text) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(fmt::Error) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

impl Readings {
    /// Reads every number once. A store read that fails leaves its family
    /// out of this scrape rather than failing it.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            boot_epoch: self.outbox.boot_epoch(),
            connected: self.connected.load(Ordering::Relaxed),
            refusals: self.refusals.totals(),
            outbox_events: readable("outbox events", self.outbox.unacknowledged()),
            outbox_dropped: readable("dropped outbox events", self.outbox.dropped()),
            workloads: self.applier.supervisor().count_by_state(),
            tasks: self.applier.task_totals(),
            unresolved_drift: self
                .unresolved_drift
                .as_ref()
                .map(|count| count.load(Ordering::Relaxed)),
        }
    }
}

impl Collector for Readings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.snapshot().encode(&mut encoder)
    }
}

impl fmt::Debug for Readings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readings").finish_non_exhaustive()
    }
}

fn readable(what: &str, read: Result<u64, StoreError>) -> Option<u64> {
    read.inspect_err(|err| debug!(error = %err, "metrics: cannot read {what}; leaving it out"))
        .ok()
}
