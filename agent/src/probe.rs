//! Probes: one check, once, of something serving on this host. Health
//! gating of workloads ([`crate::health`]) and scheduled `[[check]]`s
//! ([`crate::sources::health_check`]) both run probes through [`probe_once`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use levee_common::resource::Probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::exec::{self, Exec};

/// Most bytes of an HTTP answer read to find its status line.
const STATUS_LINE_MAX: usize = 1024;

/// A probe, named for messages and events.
pub struct Described<'a>(pub &'a Probe);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Probe::Http { port, path } => {
                write!(f, "http probe GET 127.0.0.1:{port}{}", request_path(path))
            }
            Probe::Tcp { port } => write!(f, "tcp probe 127.0.0.1:{port}"),
            Probe::Command { argv } => write!(f, "command probe {argv:?}"),
        }
    }
}

/// Runs `probe` once, bounded by `timeout`; the error says what failed.
pub async fn probe_once(
    probe: &Probe,
    working_dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    match probe {
        Probe::Http { port, path } => bounded(timeout, http(*port, path)).await,
        Probe::Tcp { port } => {
            bounded(timeout, async {
                TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .map(drop)
                    .map_err(|err| format!("connect: {err}"))
            })
            .await
        }
        Probe::Command { argv } => {
            let finished = exec::run(Exec {
                argv,
                env: &BTreeMap::new(),
                working_dir,
                timeout,
            })
            .await
            .map_err(|err| err.to_string())?;
            if finished.success() {
                Ok(())
            } else {
                let stderr = finished.stderr_text();
                Err(if stderr.is_empty() {
                    finished.describe()
                } else {
                    format!("{}: {stderr}", finished.describe())
                })
            }
        }
    }
}

async fn bounded(
    timeout: Duration,
    work: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
}

fn request_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// A minimal HTTP/1.1 GET: healthy on a 2xx or 3xx status.
async fn http(port: u16, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|err| format!("connect: {err}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        request_path(path)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("send: {err}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.windows(2).any(|pair| pair == b"\r\n") && answer.len() < STATUS_LINE_MAX {
        let read = stream
            .read(&mut buf)
            .await
            .map_err(|err| format!("receive: {err}"))?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..read]);
    }
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::testing::{closed_port, http_server};

    fn http_probe(port: u16) -> Probe {
        Probe::Http {
            port,
            path: "/healthz".into(),
        }
    }

    #[tokio::test]
    async fn http_probes_pass_on_2xx_and_3xx_only() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        for (code, healthy) in [(200, true), (302, true), (404, false), (503, false)] {
            let port = http_server(move |_| code).await;
            let result = probe_once(&http_probe(port), dir.path(), timeout).await;
            assert_eq!(result.is_ok(), healthy, "status {code}: {result:?}");
            if !healthy {
                assert_eq!(result.unwrap_err(), format!("status {code}"));
            }
        }
        let (_held, closed) = closed_port();
        let refused = probe_once(&http_probe(closed), dir.path(), timeout).await;
        assert!(refused.unwrap_err().starts_with("connect:"));
    }

    #[tokio::test]
    async fn tcp_and_command_probes() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        assert_eq!(
            probe_once(&Probe::Tcp { port: open }, dir.path(), timeout).await,
            Ok(())
        );
        let (_held, closed) = closed_port();
        assert!(
            probe_once(&Probe::Tcp { port: closed }, dir.path(), timeout)
                .await
                .unwrap_err()
                .starts_with("connect:")
        );
        drop(listener);

        let command = |words: &[&str]| Probe::Command {
            argv: words.iter().map(|word| word.to_string()).collect(),
        };
        std::fs::write(dir.path().join("ready"), "").unwrap();
        assert_eq!(
            probe_once(&command(&["/bin/test", "-f", "ready"]), dir.path(), timeout).await,
            Ok(()),
            "command probes run in the working directory"
        );
        let failed = probe_once(
            &command(&["/bin/sh", "-c", "echo not ready >&2; exit 1"]),
            dir.path(),
            timeout,
        )
        .await;
        assert_eq!(failed, Err("exit code 1: not ready".into()));
        let slow = probe_once(
            &command(&["/bin/sleep", "600"]),
            dir.path(),
            Duration::from_millis(100),
        )
        .await;
        assert!(slow.unwrap_err().contains("did not finish within 100 ms"));
    }

    #[test]
    fn probes_describe_themselves() {
        let http = Probe::Http {
            port: 80,
            path: "healthz".into(),
        };
        assert_eq!(
            Described(&http).to_string(),
            "http probe GET 127.0.0.1:80/healthz"
        );
        assert_eq!(
            Described(&Probe::Tcp { port: 5432 }).to_string(),
            "tcp probe 127.0.0.1:5432"
        );
    }
}
