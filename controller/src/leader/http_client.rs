//! One HTTP(S) POST, for rules' webhook calls: hyper-util's client over
//! TCP, or over rustls (hyper-rustls) with the platform's root
//! certificates.

use std::error::Error as _;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

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

/// The client and whether the platform has any trusted roots, built once.
/// It keeps no idle connections: every call has its own, closed when the
/// call's future ends, so a call dropped at its deadline leaves nothing
/// behind (connecting runs inside that future; the connection task hyper
/// spawns ends once the request's sender and response are dropped).
fn client() -> &'static (HttpsClient, bool) {
    static CLIENT: OnceLock<(HttpsClient, bool)> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let has_roots = !roots.is_empty();
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        // The TLS connector around it takes https:// URLs.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        (client, has_roots)
    })
}

async fn post(url: &str, headers: &[(&str, String)], body: String) -> Result<u16, String> {
    let uri: Uri = url.parse().map_err(|err| format!("bad url {url}: {err}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url}: only http:// and https:// are supported")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url} names no host"))?
        .to_owned();
    let (client, has_roots) = client();
    if https && !has_roots {
        return Err("no trusted root certificates found on this host".into());
    }
    let mut request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "levee");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| format!("building the request: {err}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|err| format!("POST to {host}: {}", causes(&err)))?;
    Ok(response.status().as_u16())
}

/// An error and its sources, so "client error (Connect)" says why.
fn causes(err: &hyper_util::client::legacy::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Reads one request's head from `stream`.
    async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before sending a request");
            head.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    #[tokio::test]
    async fn any_status_is_ok_and_the_headers_are_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let head = read_head(&mut stream).await;
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            head
        });
        let status = post_json(
            &format!("http://{addr}/hook?x=1"),
            &[("Idempotency-Key", "k1".into())],
            "{}".into(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status, Ok(503));
        let head = server.await.unwrap().to_lowercase();
        assert!(head.starts_with("post /hook?x=1 http/1.1\r\n"), "{head}");
        for line in [
            format!("host: {addr}"),
            "content-type: application/json".into(),
            "user-agent: levee".into(),
            "idempotency-key: k1".into(),
        ] {
            assert!(head.contains(&line), "{line} missing in {head}");
        }
    }

    #[tokio::test]
    async fn a_timed_out_call_leaves_no_connection_behind() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}/slow");
        let call = post_json(&url, &[], "{}".into(), Duration::from_millis(300));
        let server = async {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_head(&mut stream).await;
            stream
        };
        // The receiver takes the request and never answers.
        let (result, mut stream) = tokio::join!(call, server);
        assert_eq!(result, Err("no answer within 300 ms".into()));
        // The client's side of the connection is closed: the receiver
        // reads the end of the stream (the body was sent with the head or
        // is read first).
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 64];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the connection is still open");
    }

    #[tokio::test]
    async fn other_schemes_and_refused_connections_are_errors() {
        let err = post_json(
            "ftp://example.com/x",
            &[],
            "{}".into(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(err.contains("only http:// and https://"), "{err}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = post_json(
            &format!("http://{addr}/"),
            &[],
            "{}".into(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.starts_with("POST to 127.0.0.1: "), "{err}");
    }
}
