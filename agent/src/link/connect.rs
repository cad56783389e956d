//! Dialling a controller with the agent's own TLS config, so the
//! handshake runs [`MemberVerifier`](super::verifier::MemberVerifier):
//! tonic's TLS settings take no custom verifier. The channel speaks
//! HTTP/2 over the stream this connector hands it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use levee_common::identity::CONTROLLER_SERVER_NAME;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// Opens a channel to the controller at `addr` (`host:port`).
pub async fn connect(
    addr: &str,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let target = addr.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let (target, tls) = (target.clone(), tls.clone());
        async move {
            let tcp = TcpStream::connect(&target).await?;
            // Small stream messages must not wait out Nagle's algorithm.
            tcp.set_nodelay(true)?;
            let server_name = ServerName::try_from(CONTROLLER_SERVER_NAME)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
            let stream = TlsConnector::from(tls).connect(server_name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    // The scheme only tells tonic not to add TLS of its own: the
    // connector does it.
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
}
