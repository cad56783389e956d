//! Prometheus metrics: `GET /metrics` on `metrics_listen`, plain HTTP. The
//! numbers are read from the agent's own objects at scrape time (no task
//! of its own keeps them); [`render`] turns them into text and is pure.

mod render;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use levee_common::prom::CONTENT_TYPE;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use self::render::{Snapshot, render};
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
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(readings);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        warn!(error = %err, "the metrics listener stopped with an error");
    }
}

async fn scrape(State(readings): State<Readings>) -> impl IntoResponse {
    let text = render(&snapshot(&readings).await);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// Reads every number once. A store read that fails leaves its family out
/// of this scrape rather than failing it.
async fn snapshot(readings: &Readings) -> Snapshot {
    let outbox = readings.outbox.clone();
    // Read transactions, but still file I/O: off the async threads.
    let read =
        blocking(move || Ok::<_, Infallible>((outbox.unacknowledged(), outbox.dropped()))).await;
    let (events, dropped) = match read {
        Ok(read) => read,
        Err(never) => match never {},
    };
    Snapshot {
        boot_epoch: readings.outbox.boot_epoch(),
        connected: readings.connected.load(Ordering::Relaxed),
        outbox_events: readable("outbox events", events),
        outbox_dropped: readable("dropped outbox events", dropped),
        workloads: readings.applier.supervisor().count_by_state(),
        tasks: readings.applier.task_totals(),
        unresolved_drift: readings
            .unresolved_drift
            .as_ref()
            .map(|count| count.load(Ordering::Relaxed)),
    }
}

fn readable(what: &str, read: Result<u64, StoreError>) -> Option<u64> {
    read.inspect_err(|err| debug!(error = %err, "metrics: cannot read {what}; leaving it out"))
        .ok()
}
