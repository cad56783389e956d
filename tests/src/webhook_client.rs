//! A webhook sender that sends exactly the bytes it is given, over kept-
//! alive HTTPS connections, many at once: to flood the receiver with
//! thousands of deliveries in seconds, and to replay captured requests
//! with whatever a hostile client changes. HTTP/1.1 written by hand, so
//! nothing is added or normalised on the way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::https::Reply;
use crate::signed_webhook::Delivery;

/// Longest wait for one reply: the receiver answers within its own 30 s.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Times a connection the receiver closed is opened again for the rest.
const RECONNECTS: usize = 3;

type Connection = BufReader<TlsStream<TcpStream>>;

/// Posts to one controller's webhook receiver, trusting the cluster CA.
pub struct WebhookClient {
    addr: SocketAddr,
    tls: TlsConnector,
    runtime: tokio::runtime::Runtime,
}

impl WebhookClient {
    /// A client for the receiver at `addr` (`127.0.0.1:port`).
    pub fn new(ca: &Path, addr: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
            roots
                .add(cert.expect("a CA certificate"))
                .expect("a usable CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            addr: addr.parse().expect("a webhook address"),
            tls: TlsConnector::from(Arc::new(config)),
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime"),
        }
    }

    /// POSTs one delivery on a connection of its own.
    pub fn post(&self, path: &str, delivery: &Delivery) -> Reply {
        self.post_all(path, std::slice::from_ref(delivery), 1)
            .pop()
            .expect("one reply")
    }

    /// POSTs every delivery, spread over `connections` kept-alive
    /// connections that send at once; the replies in the deliveries' order.
    pub fn post_all(&self, path: &str, deliveries: &[Delivery], connections: usize) -> Vec<Reply> {
        let per_connection = deliveries.len().div_ceil(connections.max(1)).max(1);
        self.runtime.block_on(async {
            let mut sends = tokio::task::JoinSet::new();
            for (index, share) in deliveries.chunks(per_connection).enumerate() {
                let requests: Vec<Vec<u8>> = share.iter().map(|d| request_bytes(path, d)).collect();
                let (addr, tls) = (self.addr, self.tls.clone());
                sends.spawn(async move { (index, send_in_turn(addr, tls, requests).await) });
            }
            let mut shares: Vec<(usize, Vec<Reply>)> = sends.join_all().await.into_iter().collect();
            shares.sort_by_key(|(index, _)| *index);
            shares
                .into_iter()
                .flat_map(|(_, replies)| replies)
                .collect()
        })
    }
}

/// Sends `requests` one after another on one connection, opening another
/// if the receiver closes it between requests.
async fn send_in_turn(addr: SocketAddr, tls: TlsConnector, requests: Vec<Vec<u8>>) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(requests.len());
    let mut connection = connect(addr, &tls).await;
    let mut reconnects = 0;
    for request in &requests {
        loop {
            match tokio::time::timeout(REPLY_TIMEOUT, exchange(&mut connection, request)).await {
                Ok(Ok(reply)) => {
                    replies.push(reply);
                    break;
                }
                Ok(Err(err)) if reconnects < RECONNECTS => {
                    reconnects += 1;
                    eprintln!("webhook connection lost ({err}); connecting again");
                    connection = connect(addr, &tls).await;
                }
                Ok(Err(err)) => panic!("webhook connection lost {RECONNECTS} times: {err}"),
                Err(_) => panic!("no reply from the webhook receiver within {REPLY_TIMEOUT:?}"),
            }
        }
    }
    replies
}

async fn connect(addr: SocketAddr, tls: &TlsConnector) -> Connection {
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|err| panic!("connecting to the webhook receiver at {addr}: {err}"));
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tls
        .connect(name, tcp)
        .await
        .unwrap_or_else(|err| panic!("TLS with the webhook receiver at {addr}: {err}"));
    BufReader::new(stream)
}

fn request_bytes(path: &str, delivery: &Delivery) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: levee\r\nContent-Length: {}\r\n",
        delivery.body.len()
    );
    for (name, value) in &delivery.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&delivery.body);
    bytes
}

/// Writes one request and reads its reply (which must say its length).
async fn exchange(connection: &mut Connection, request: &[u8]) -> std::io::Result<Reply> {
    connection.get_mut().write_all(request).await?;
    connection.get_mut().flush().await?;
    let mut status_line = String::new();
    if connection.read_line(&mut status_line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let mut headers = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        connection.read_line(&mut line).await?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().expect("a Content-Length");
        }
        assert!(
            !line.starts_with("transfer-encoding"),
            "the receiver's replies say their length: {line}"
        );
        headers.push_str(&line);
        headers.push('\n');
    }
    let mut body = vec![0; length];
    connection.read_exact(&mut body).await?;
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
