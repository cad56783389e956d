//! Which controller answers at an address: a TLS handshake alone, whose
//! verified server certificate names it. The leader asks before adding a
//! node by address, so the membership records the name the node's
//! certificate states, not one a message claims.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use levee_common::identity::{CONTROLLER_SERVER_NAME, Identity, Role};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::net::{TcpSocket, lookup_host};
use tokio_rustls::TlsConnector;

/// A handshake taking longer than this is given up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum PeerNameError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("the server at {addr} is `{identity}`, not a controller")]
    NotController { addr: String, identity: String },
}

/// The name in the controller certificate `addr` presents, checked
/// against the cluster CA by `tls`.
pub async fn verified_controller_name(
    tls: Arc<ClientConfig>,
    addr: &str,
    source: Option<IpAddr>,
) -> Result<String, PeerNameError> {
    let unreachable = |reason: String| PeerNameError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let handshake_failed = |reason: String| PeerNameError::Handshake {
        addr: addr.to_owned(),
        reason,
    };
    let probe = async {
        let target = lookup_host(addr)
            .await
            .map_err(|err| unreachable(err.to_string()))?
            .next()
            .ok_or_else(|| unreachable("the name resolves to no address".into()))?;
        let tcp = connect(target, source)
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let server_name = ServerName::try_from(CONTROLLER_SERVER_NAME)
            .map_err(|err| handshake_failed(err.to_string()))?;
        let stream = TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|err| handshake_failed(err.to_string()))?;
        let (_, session) = stream.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or_else(|| handshake_failed("no server certificate".into()))?;
        Identity::from_certificate_der(leaf.as_ref())
            .map_err(|err| handshake_failed(err.to_string()))
    };
    let identity = tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .map_err(|_| unreachable(format!("no handshake within {PROBE_TIMEOUT:?}")))??;
    if identity.role != Role::Controller {
        return Err(PeerNameError::NotController {
            addr: addr.to_owned(),
            identity: identity.to_string(),
        });
    }
    Ok(identity.name)
}

async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(target).await
}
