//! The controller's gRPC listener. TCP is accepted here and the TLS
//! handshake done here, each in its own task with a deadline, so a failed
//! handshake is seen: counted and logged (rate-limited) with the peer's
//! address. Established streams go to tonic (`serve_with_incoming`), whose
//! `Connected` impl for rustls streams keeps `peer_certs()` working.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use levee_common::refusals::RefusalLog;
use rustls::{CertificateError, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::refusals::{TLS, refuse};

/// A handshake not finished within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; a connection past it is closed, so a
/// flood of slow clients cannot pile up tasks.
const MAX_HANDSHAKES: usize = 256;
/// Established connections waiting for tonic to take them.
const READY_QUEUE: usize = 64;

/// Established TLS connections, for `serve_with_incoming`.
pub type Incoming = ReceiverStream<io::Result<TlsStream<TcpStream>>>;

/// Accepts on `listener` until `shutdown`, handshaking with `tls`.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    refusals: Arc<RefusalLog>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Incoming {
    let (ready, incoming) = mpsc::channel(READY_QUEUE);
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = tracker.clone();
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tracker.spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors, mostly: give it a moment.
                        warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let detail = format!("{MAX_HANDSHAKES} handshakes in progress; closed a new one");
                refuse(
                    &refusals,
                    &peer_key(peer),
                    TLS,
                    "too_many_handshakes",
                    &detail,
                );
                continue;
            };
            let (acceptor, ready, refusals) = (acceptor.clone(), ready.clone(), refusals.clone());
            handshakes.spawn(async move {
                let _slot = slot;
                // Small messages (tasks, acks) must not wait out Nagle's
                // algorithm against delayed ACKs, ~40 ms each.
                if let Err(err) = tcp.set_nodelay(true) {
                    debug!(%peer, error = %err, "cannot set TCP_NODELAY");
                }
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        // The server stopped: the connection is dropped.
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => {
                        let reason = handshake_refusal(&err);
                        refuse(&refusals, &peer_key(peer), TLS, reason, &err.to_string());
                    }
                    Err(_) => {
                        let detail = format!("no handshake within {HANDSHAKE_TIMEOUT:?}");
                        refuse(&refusals, &peer_key(peer), TLS, "timeout", &detail);
                    }
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}

/// Refusals are keyed by the peer's address without its port: a flood of
/// connections from one host is one peer.
fn peer_key(peer: SocketAddr) -> String {
    peer.ip().to_string()
}

/// Why a handshake failed, as a metrics label.
fn handshake_refusal(err: &io::Error) -> &'static str {
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::NoCertificatesPresented) => "no_certificate",
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        )) => "expired_certificate",
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => "untrusted_certificate",
        Some(rustls::Error::InvalidCertificate(_)) => "bad_certificate",
        Some(rustls::Error::AlertReceived(_)) => "client_aborted",
        Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }) => {
            "not_tls"
        }
        Some(_) => "handshake_failed",
        None if err.kind() == io::ErrorKind::UnexpectedEof => "closed_early",
        None => "handshake_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(err: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn handshake_failures_are_labelled_by_cause() {
        let cases = [
            (
                wrapped(rustls::Error::NoCertificatesPresented),
                "no_certificate",
            ),
            (
                wrapped(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                )),
                "untrusted_certificate",
            ),
            (
                wrapped(rustls::Error::InvalidCertificate(CertificateError::Expired)),
                "expired_certificate",
            ),
            (
                wrapped(rustls::Error::InvalidCertificate(
                    CertificateError::BadEncoding,
                )),
                "bad_certificate",
            ),
            (
                io::Error::from(io::ErrorKind::UnexpectedEof),
                "closed_early",
            ),
            (
                io::Error::from(io::ErrorKind::ConnectionReset),
                "handshake_failed",
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(handshake_refusal(&err), expected, "{err}");
        }
    }
}
