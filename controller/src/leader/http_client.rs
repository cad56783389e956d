//! One HTTP(S) POST, for rules' webhook calls: hyper's HTTP/1 client over
//! TCP, or over rustls with the platform's root certificates.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The platform's trusted roots, loaded once.
fn tls() -> Result<TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates found on this host".into());
            }
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map(TlsConnector::from)
}

/// POSTs `body` as JSON; returns the response status. Any status is Ok:
/// the caller decides what a status means.
pub async fn post_json(
    url: &str,
    headers: &[(&str, String)],
    body: String,
    timeout: Duration,
) -> Result<u16, String> {
    tokio::time::timeout(timeout, post(url, headers, body))
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
}

async fn post(url: &str, headers: &[(&str, String)], body: String) -> Result<u16, String> {
    let uri: Uri = url.parse().map_err(|err| format!("bad url {url}: {err}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url}: only http:// and https:// are supported")),
    };
    let host = uri.host().ok_or_else(|| format!("{url} names no host"))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|err| format!("connecting to {host}:{port}: {err}"))?;
    tcp.set_nodelay(true).ok();
    let mut request = Request::post(uri.path_and_query().map_or("/", |path| path.as_str()))
        .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "levee");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| format!("building the request: {err}"))?;
    if https {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|err| format!("{host} is not a valid TLS name: {err}"))?;
        let stream = tls()?
            .connect(name, tcp)
            .await
            .map_err(|err| format!("TLS with {host}: {err}"))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<T>(io: TokioIo<T>, request: Request<Full<Bytes>>) -> Result<u16, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|err| format!("HTTP handshake: {err}"))?;
    // The connection drives the exchange; polled together with the
    // request, it goes when this future does (a timeout drops both).
    let exchange = sender.send_request(request);
    tokio::pin!(connection);
    tokio::pin!(exchange);
    loop {
        tokio::select! {
            response = &mut exchange => {
                return response
                    .map(|response| response.status().as_u16())
                    .map_err(|err| format!("sending: {err}"));
            }
            ended = &mut connection => {
                // The connection ended first: the request's own result
                // says why, or the connection's error does.
                if let Err(err) = ended {
                    return Err(format!("connection: {err}"));
                }
            }
        }
    }
}
