//! Local events from applications on the host: `levee-agent emit TYPE
//! --data JSON` writes one JSON line to the agent's Unix socket
//! (`<data_dir>/emit.sock`, in the owner-only data directory, so only the
//! agent's user and root reach it), and the agent puts the
//! event in its outbox like any of its own. The reply comes after the
//! event is durably in the outbox, so an acknowledged emit is never lost.
//!
//! Types under `host.` and `levee.` are refused: they are the agent's and
//! the controllers' own, and a forged `host.process.exited` could set off
//! repairs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use levee_common::agent_config::AgentConfig;
use levee_common::event::{MAX_EVENT_DATA_BYTES, MAX_EVENT_FIELD_BYTES};
use levee_common::namespace::{self, Raiser};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Source, SourceContext, SourceError, SourceRun};
use crate::clock::now_ms;
use crate::outbox::Outbox;
use crate::util::blocking;

/// Longest request line: the largest event data plus room for the rest.
const MAX_LINE_BYTES: usize = MAX_EVENT_DATA_BYTES + 4096;

/// The socket's path for an agent with this data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("emit.sock")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitRequest {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EmitReply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why an emitted event was refused.
pub fn check(request: &EmitRequest) -> Result<(), String> {
    if request.event_type.is_empty() {
        return Err("the event type is empty".into());
    }
    namespace::check(Raiser::Workload, &request.event_type).map_err(|err| err.to_string())?;
    for (field, value) in [("type", &request.event_type), ("subject", &request.subject)] {
        if value.len() > MAX_EVENT_FIELD_BYTES {
            return Err(format!(
                "`{field}` is {} bytes, more than {MAX_EVENT_FIELD_BYTES}",
                value.len()
            ));
        }
    }
    let data = request.data.to_string();
    if data.len() > MAX_EVENT_DATA_BYTES {
        return Err(format!(
            "`data` is {} bytes, more than {MAX_EVENT_DATA_BYTES}",
            data.len()
        ));
    }
    Ok(())
}

/// The socket as a source: always on, whatever the config.
pub struct EmitSocket;

/// The emit socket needs no config.
pub fn from_config(_: &AgentConfig) -> Result<Vec<Box<dyn Source>>, SourceError> {
    Ok(vec![Box::new(EmitSocket)])
}

impl Source for EmitSocket {
    fn run(self: Box<Self>, context: SourceContext, shutdown: CancellationToken) -> SourceRun {
        Box::pin(async move {
            let path = socket_path(&context.data_dir);
            if let Err(err) = serve(path, context.outbox, shutdown).await {
                warn!(error = %err, "the local event socket failed");
            }
        })
    }
}

/// Serves the socket until `shutdown`.
pub async fn serve(
    path: PathBuf,
    outbox: Outbox,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // A socket left by a crashed agent would make bind fail.
    match std::fs::remove_file(&path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    info!(socket = %path.display(), "accepting local events");
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    warn!(error = %err, "cannot accept a local event connection");
                    continue;
                }
            },
        };
        let outbox = outbox.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(stream, outbox).await {
                debug!(error = %err, "local event connection ended");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// One request per line, one reply per request, until the client closes.
async fn handle(stream: UnixStream, outbox: Outbox) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_LINE_BYTES as u64 * 64));
    let mut line = String::new();
    loop {
        line.clear();
        let read = (&mut lines)
            .take(MAX_LINE_BYTES as u64)
            .read_line(&mut line)
            .await?;
        if read == 0 {
            return Ok(());
        }
        let reply = match accept(&line, &outbox).await {
            Ok(seq) => EmitReply {
                ok: true,
                seq: Some(seq),
                error: None,
            },
            Err(error) => EmitReply {
                ok: false,
                seq: None,
                error: Some(error),
            },
        };
        let mut text = serde_json::to_string(&reply).unwrap_or_default();
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
    }
}

async fn accept(line: &str, outbox: &Outbox) -> Result<u64, String> {
    if !line.ends_with('\n') {
        return Err(format!(
            "a request is one JSON line of at most {MAX_LINE_BYTES} bytes"
        ));
    }
    let request: EmitRequest =
        serde_json::from_str(line.trim_end()).map_err(|err| format!("not an event: {err}"))?;
    check(&request)?;
    let outbox = outbox.clone();
    blocking(move || {
        outbox.append(
            &request.event_type,
            &request.subject,
            &request.data,
            now_ms(),
        )
    })
    .await
    .map_err(|err| format!("cannot store the event: {err}"))
}

/// The client side: sends one event and waits for the agent's answer.
pub async fn emit(socket: &Path, request: &EmitRequest) -> anyhow::Result<u64> {
    use anyhow::{Context, bail};
    check(request).map_err(anyhow::Error::msg)?;
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {} (is the agent running?)", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    let reply: EmitReply = serde_json::from_str(reply.trim_end())
        .with_context(|| format!("the agent answered {reply:?}"))?;
    match (reply.ok, reply.seq, reply.error) {
        (true, Some(seq), _) => Ok(seq),
        (_, _, Some(error)) => bail!("the agent refused the event: {error}"),
        _ => bail!("the agent gave no answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    fn request(event_type: &str, data: Value) -> EmitRequest {
        EmitRequest {
            event_type: event_type.into(),
            subject: "web".into(),
            data,
        }
    }

    /// The emit socket served over a fresh agent fixture, once it exists.
    async fn serving() -> (
        crate::testing::Fixture,
        std::path::PathBuf,
        CancellationToken,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let fixture = fixture();
        let path = socket_path(&fixture.config.data_dir);
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(path.clone(), fixture.outbox.clone(), stop.clone()));
        crate::testing::wait_until("the socket to exist", || path.exists()).await;
        (fixture, path, stop, server)
    }

    #[tokio::test]
    async fn an_emitted_event_is_in_the_outbox_before_the_reply() {
        let (fixture, path, stop, server) = serving().await;
        let outbox = fixture.outbox.clone();
        let before = outbox.unacknowledged().unwrap();
        let seq = emit(
            &path,
            &request("app.load", serde_json::json!({ "cpu": 93 })),
        )
        .await
        .unwrap();
        assert!(seq > 0);
        assert_eq!(outbox.unacknowledged().unwrap(), before + 1);
        stop.cancel();
        server.await.unwrap().unwrap();
        assert!(!path.exists(), "the socket is removed on shutdown");
    }

    #[tokio::test]
    async fn reserved_types_oversized_data_and_garbage_are_refused() {
        let (fixture, path, stop, server) = serving().await;
        let outbox = fixture.outbox.clone();
        let before = outbox.unacknowledged().unwrap();
        for reserved in [
            "host.process.exited",
            "timer.fired",
            " Levee.x",
            "HOST.lost",
        ] {
            let err = emit(&path, &request(reserved, Value::Null))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("reserved"), "{reserved}: {err}");
        }
        let huge = Value::String("x".repeat(MAX_EVENT_DATA_BYTES + 1));
        assert!(emit(&path, &request("app.big", huge)).await.is_err());
        // Garbage straight on the socket gets an error reply, not a crash.
        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream.write_all(b"{not json}\n").await.unwrap();
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).await.unwrap();
        assert!(reply.contains("\"ok\":false"), "{reply}");
        assert_eq!(
            outbox.unacknowledged().unwrap(),
            before,
            "nothing was stored"
        );
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
