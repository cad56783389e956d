//! The HTTPS webhook receiver: `POST /hooks/<endpoint>`. A request is
//! authenticated, parsed in its endpoint's format, and answered 200 only
//! once its events are committed, so a sender that saw 200 lost nothing,
//! and one that saw anything else may retry (repeats are committed once).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::config::{EndpointConfig, WebhooksConfig};
use super::sink::{InboundSink, Origin, SubmitError};
use super::webhook::auth::{self, Admitted, AuthError, Secret, WebhookAuth};
use super::webhook::{self, Format, ReplayWindow};

/// A TLS handshake, or a request's headers, taking longer than this is
/// dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed on accept, so a flood of
/// idle clients cannot starve the node that also serves Raft.
const MAX_CONNECTIONS: usize = 256;
/// A request (its body read, its events committed) taking longer than this
/// is answered 408: a client trickling its body cannot hold a slot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A kept-alive connection is closed (gracefully) after this long.
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// An endpoint ready to serve: its format, loaded secret and replay window.
struct Endpoint {
    format: Format,
    auth: WebhookAuth,
    may_name_hosts: bool,
    window: ReplayWindow,
}

struct Receiver {
    endpoints: BTreeMap<String, Endpoint>,
    sink: InboundSink,
    max_body_bytes: usize,
}

/// Binds the receiver and serves it until `shutdown`. Returns the bound
/// address (also written to `<data_dir>/webhook.addr`).
pub async fn start(
    config: &WebhooksConfig,
    node_tls: &levee_common::tls::TlsFiles,
    data_dir: &Path,
    sink: InboundSink,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let endpoints = config
        .endpoints
        .iter()
        .map(|endpoint| Ok((endpoint.name.clone(), load_endpoint(endpoint)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    if let Some((first, second)) = shared_signing_key(&endpoints) {
        anyhow::bail!(
            "webhooks.endpoint `{first}` and `{second}` share an HMAC key: a request signed for one could be replayed to the other (the signature does not name the endpoint); give each its own key"
        );
    }
    let cert = config.cert.as_deref().unwrap_or(&node_tls.cert);
    let key = config.key.as_deref().unwrap_or(&node_tls.key);
    let acceptor = TlsAcceptor::from(Arc::new(server_tls(cert, key)?));
    let app = Router::new()
        .route("/hooks/{endpoint}", post(receive))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn(within_deadline))
        .with_state(Arc::new(Receiver {
            endpoints,
            sink,
            max_body_bytes: config.max_body_bytes,
        }));
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the webhook receiver to {}", config.listen))?;
    let addr = listener.local_addr()?;
    std::fs::write(data_dir.join("webhook.addr"), addr.to_string())
        .context("writing webhook.addr")?;
    info!(%addr, endpoints = config.endpoints.len(), "webhook receiver serving");
    let connections = tracker.clone();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "webhook receiver: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                warn!(%peer, "webhook receiver: {MAX_CONNECTIONS} connections open; closing a new one");
                continue;
            };
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(app.clone());
            let shutdown = shutdown.clone();
            connections.spawn(
                async move {
                    let _slot = slot;
                    let tls =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(err)) => {
                                debug!(error = %err, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!("TLS handshake timed out");
                                return;
                            }
                        };
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HANDSHAKE_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(err) = result {
                                debug!(error = %err, "webhook connection ended with an error");
                            }
                        }
                        () = shutdown.cancelled() => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                        () = tokio::time::sleep(MAX_CONNECTION_LIFETIME) => {
                            connection.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, connection).await;
                        }
                    }
                }
                .instrument(info_span!("webhook_connection", %peer)),
            );
        }
    });
    Ok(addr)
}

/// Two signed endpoints with the same key, if any.
fn shared_signing_key(endpoints: &BTreeMap<String, Endpoint>) -> Option<(&str, &str)> {
    let signed: Vec<(&str, &Secret)> = endpoints
        .iter()
        .filter_map(|(name, endpoint)| match &endpoint.auth {
            WebhookAuth::Hmac { secret, .. } => Some((name.as_str(), secret)),
            WebhookAuth::Token(_) => None,
        })
        .collect();
    signed.iter().enumerate().find_map(|(at, (first, key))| {
        signed[at + 1..]
            .iter()
            .find(|(_, other)| other == key)
            .map(|(second, _)| (*first, *second))
    })
}

fn load_endpoint(config: &EndpointConfig) -> Result<Endpoint> {
    let read = |path: &Path| -> Result<Secret> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "webhooks.endpoint `{}`: reading {}",
                config.name,
                path.display()
            )
        })?;
        Secret::new(text.trim().as_bytes().to_vec()).map_err(|_| {
            anyhow::anyhow!(
                "webhooks.endpoint `{}`: {} is empty",
                config.name,
                path.display()
            )
        })
    };
    let auth = match (&config.token_file, &config.hmac_secret_file) {
        (Some(token), _) => WebhookAuth::Token(read(token)?),
        (None, Some(secret)) => WebhookAuth::Hmac {
            secret: read(secret)?,
            header: http::HeaderName::from_bytes(config.hmac_header.as_bytes())
                .context("hmac_header")?,
        },
        (None, None) => anyhow::bail!(
            "webhooks.endpoint `{}`: no token_file or hmac_secret_file",
            config.name
        ),
    };
    Ok(Endpoint {
        format: config.format,
        auth,
        may_name_hosts: config.may_name_hosts,
        window: config.replay_window(),
    })
}

fn server_tls(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the webhook certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the webhook key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the webhook certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How much of a refused, oversized body is still read and dropped, and
/// for how long, so the sender sees the 413 rather than a connection reset
/// (closing a socket with unread data resets it).
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads a body of at most `max` bytes. A larger one is refused, after
/// draining a bounded amount of what follows.
async fn read_body(body: Body, max: usize) -> Result<axum::body::Bytes, String> {
    let mut stream = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| err.to_string())?;
        if read.len() + chunk.len() > max {
            let mut drained = read.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while drained < DRAIN_BYTES
                    && let Some(Ok(chunk)) = stream.next().await
                {
                    drained += chunk.len();
                }
            })
            .await;
            return Err("length limit exceeded".into());
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.into())
}

/// Handles one delivery.
async fn receive(
    State(receiver): State<Arc<Receiver>>,
    UrlPath(name): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = info_span!("webhook", endpoint = %name);
    async move {
        let Some(endpoint) = receiver.endpoints.get(&name) else {
            return reply(
                StatusCode::NOT_FOUND,
                format!("no webhook endpoint named `{name}`"),
            );
        };
        // A token is in the headers: a caller without it is turned away
        // before its body is read. A signature needs the body.
        if matches!(endpoint.auth, WebhookAuth::Token(_))
            && let Err(err) = admit(endpoint, &headers, query.as_deref(), &[])
        {
            return refused(endpoint, &err);
        }
        let body = match read_body(body, receiver.max_body_bytes).await {
            Ok(body) => body,
            Err(err) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "cannot read the body (at most {} bytes): {err}",
                        receiver.max_body_bytes
                    ),
                );
            }
        };
        let admitted = match admit(endpoint, &headers, query.as_deref(), &body) {
            Ok(admitted) => admitted,
            Err(err) => return refused(endpoint, &err),
        };
        let mut parsed = match webhook::parse(endpoint.format, &headers, &body) {
            Ok(parsed) => parsed,
            Err(err) => {
                warn!(error = %err, "webhook payload refused");
                return reply(StatusCode::BAD_REQUEST, err.to_string());
            }
        };
        if let Err(stale) = webhook::check_sent(&parsed, &endpoint.window, crate::clock::now_ms()) {
            warn!(error = %stale, "webhook refused");
            return reply(StatusCode::UNAUTHORIZED, stale.to_string());
        }
        if let Admitted::Signed(signed) = &admitted {
            webhook::identify_by_signature(&mut parsed.events, &signed.signature_hex);
        }
        if let Some(url) = &parsed.subscribe_url {
            // Confirming means fetching the URL from AWS; an operator does
            // it once, so the receiver makes no outbound calls.
            warn!(%url, "SNS asks to confirm a subscription: open this URL once to confirm it");
        }
        if parsed.events.is_empty() {
            return (
                StatusCode::OK,
                axum::Json(json!({"accepted": 0, "duplicates": 0})),
            )
                .into_response();
        }
        let origin = Origin {
            source: format!("webhook/{name}"),
            names_hosts: endpoint.may_name_hosts,
        };
        match receiver.sink.submit(&origin, parsed.events).await {
            Ok(outcome) => {
                info!(
                    accepted = outcome.accepted,
                    duplicates = outcome.duplicates,
                    "webhook events committed"
                );
                (
                    StatusCode::OK,
                    axum::Json(json!({
                        "accepted": outcome.accepted,
                        "duplicates": outcome.duplicates,
                    })),
                )
                    .into_response()
            }
            Err(SubmitError::Refused(reason)) => reply(StatusCode::BAD_REQUEST, reason),
            Err(full @ SubmitError::AtLimit { .. }) => {
                warn!(error = %full, "webhook events not committed");
                retry_later(
                    reply(StatusCode::SERVICE_UNAVAILABLE, full.to_string()),
                    "30",
                )
            }
            Err(err) => {
                warn!(error = %err, "webhook events not committed; the sender may retry");
                // The cause (and the leader's address) stays in the log.
                let response = reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the cluster could not commit the events now; retry".into(),
                );
                retry_later(response, "1")
            }
        }
    }
    .instrument(span)
    .await
}

async fn within_deadline(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => reply(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long; send it again".into(),
        ),
    }
}

/// Checks a delivery's credentials (and a signature's timestamp against
/// this controller's clock).
fn admit(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Admitted, AuthError> {
    let request = auth::Request {
        headers,
        query,
        body,
    };
    auth::check(
        &endpoint.auth,
        &endpoint.window,
        request,
        crate::clock::now_ms(),
    )
}

/// The answer to a delivery whose credentials failed.
fn refused(endpoint: &Endpoint, err: &AuthError) -> Response {
    warn!(error = %err, "webhook refused");
    let mut response = reply(err.status(), err.to_string());
    // SNS sends its Basic credentials only when challenged.
    if err.status() == StatusCode::UNAUTHORIZED && matches!(endpoint.auth, WebhookAuth::Token(_)) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(auth::BASIC_CHALLENGE),
        );
    }
    response
}

/// Adds `Retry-After: <seconds>`.
fn retry_later(mut response: Response, seconds: &'static str) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(seconds),
    );
    response
}

fn reply(status: StatusCode, error: String) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &str) -> Endpoint {
        Endpoint {
            format: Format::CloudEvents,
            auth: WebhookAuth::Hmac {
                secret: Secret::new(key.as_bytes()).unwrap(),
                header: http::HeaderName::from_static("x-levee-signature"),
            },
            may_name_hosts: false,
            window: ReplayWindow::of(300),
        }
    }

    #[test]
    fn two_signed_endpoints_may_not_share_a_key() {
        let mut endpoints = BTreeMap::from([
            ("alerts".to_owned(), signed("k1")),
            ("deploys".to_owned(), signed("k2")),
        ]);
        assert_eq!(shared_signing_key(&endpoints), None);
        endpoints.insert("ops".to_owned(), signed("k1"));
        assert_eq!(shared_signing_key(&endpoints), Some(("alerts", "ops")));
    }
}
