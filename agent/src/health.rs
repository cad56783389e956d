//! Health checks: a task that (re)starts a workload with a health check
//! succeeds only once the workload answers its probe, so "applied" means
//! "serving", and a broken release fails its task instead of passing it.
//!
//! A probe passing `healthy_threshold` times in a row makes the workload
//! healthy. Failures before the first pass are the workload starting up and
//! are tolerated until `start_timeout_ms`; once a probe has passed,
//! `unhealthy_threshold` failures in a row fail the check.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use levee_common::resource::{HealthCheck, Probe};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::exec::{self, Exec};

/// Used when a check leaves a duration at 0.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of an HTTP answer read to find its status line.
const STATUS_LINE_MAX: usize = 1024;

/// Why a workload did not become healthy. Each names the probe and its
/// last failure.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HealthError {
    #[error("{probe}: unhealthy after {failures} failures in a row; last failure: {last}")]
    Unhealthy {
        probe: String,
        failures: u32,
        last: String,
    },
    #[error("{probe}: not healthy within {ms} ms; last failure: {last}")]
    StartTimeout {
        probe: String,
        ms: u128,
        last: String,
    },
    #[error("{probe}: the workload exited before it was healthy; last failure: {last}")]
    Exited { probe: String, last: String },
}

/// A probe, named for messages.
struct Named<'a>(&'a Probe);

impl fmt::Display for Named<'_> {
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

/// Waits until the workload is healthy. `exited` resolves when the
/// workload's process ends; `working_dir` is where command probes run.
/// Returns how many probes ran.
pub async fn wait_healthy(
    check: &HealthCheck,
    working_dir: &Path,
    exited: impl Future<Output = ()>,
) -> Result<u32, HealthError> {
    let interval = millis_or(check.interval_ms, DEFAULT_INTERVAL);
    let timeout = millis_or(check.timeout_ms, DEFAULT_PROBE_TIMEOUT);
    let start_timeout = millis_or(check.start_timeout_ms, DEFAULT_START_TIMEOUT);
    let healthy_threshold = check.healthy_threshold.max(1);
    let unhealthy_threshold = check.unhealthy_threshold.max(1);
    let probe = Named(&check.probe).to_string();
    let deadline = Instant::now() + start_timeout;
    let mut exited = std::pin::pin!(exited);
    let (mut probes, mut passes, mut failures) = (0u32, 0u32, 0u32);
    let mut ever_passed = false;
    let mut last = String::from("none yet");
    loop {
        let result = tokio::select! {
            biased;
            () = &mut exited => return Err(HealthError::Exited { probe, last }),
            () = tokio::time::sleep_until(deadline) => {
                return Err(HealthError::StartTimeout { probe, ms: start_timeout.as_millis(), last });
            }
            result = probe_once(&check.probe, working_dir, timeout) => result,
        };
        probes += 1;
        match result {
            Ok(()) => {
                passes += 1;
                failures = 0;
                ever_passed = true;
                if passes >= healthy_threshold {
                    return Ok(probes);
                }
            }
            Err(failure) => {
                passes = 0;
                failures += 1;
                last = failure;
                if ever_passed && failures >= unhealthy_threshold {
                    return Err(HealthError::Unhealthy {
                        probe,
                        failures,
                        last,
                    });
                }
            }
        }
        tokio::select! {
            biased;
            () = &mut exited => return Err(HealthError::Exited { probe, last }),
            () = tokio::time::sleep_until(deadline) => {
                return Err(HealthError::StartTimeout { probe, ms: start_timeout.as_millis(), last });
            }
            () = tokio::time::sleep(interval) => {}
        }
    }
}

fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    /// Serves HTTP on 127.0.0.1: the n-th request (from 1) gets
    /// `status(n)`. Returns the port.
    async fn server(status: impl Fn(u32) -> u16 + Send + Sync + 'static) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let code = status(n);
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let expected =
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                let code = if request.starts_with(expected) {
                    code
                } else {
                    400
                };
                let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    /// A port nobody listens on, for as long as the returned socket lives:
    /// it is bound but not listening, so connections to it are refused and
    /// no other process can take the port meanwhile (as one could a port
    /// whose listener was dropped).
    fn closed_port() -> (TcpSocket, u16) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    fn check(probe: Probe) -> HealthCheck {
        HealthCheck {
            probe,
            interval_ms: 10,
            timeout_ms: 2_000,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            start_timeout_ms: 10_000,
        }
    }

    fn http_probe(port: u16) -> Probe {
        Probe::Http {
            port,
            path: "/healthz".into(),
        }
    }

    fn never() -> impl Future<Output = ()> {
        std::future::pending()
    }

    #[tokio::test]
    async fn http_probes_pass_on_2xx_and_3xx_only() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        for (code, healthy) in [(200, true), (302, true), (404, false), (503, false)] {
            let port = server(move |_| code).await;
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

    #[tokio::test]
    async fn healthy_takes_the_threshold_of_passes_in_a_row() {
        let dir = tempfile::tempdir().unwrap();
        // Fails twice while starting, then passes: 2 failures + 2 passes.
        let port = server(|n| if n <= 2 { 503 } else { 200 }).await;
        let probes = wait_healthy(&check(http_probe(port)), dir.path(), never())
            .await
            .unwrap();
        assert_eq!(probes, 4);
    }

    #[tokio::test]
    async fn failures_after_a_pass_make_it_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        // Passes once, then fails for good: the threshold of 3 ends it.
        let port = server(|n| if n == 1 { 200 } else { 500 }).await;
        let err = wait_healthy(&check(http_probe(port)), dir.path(), never())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            HealthError::Unhealthy {
                probe: format!("http probe GET 127.0.0.1:{port}/healthz"),
                failures: 3,
                last: "status 500".into(),
            }
        );
    }

    #[tokio::test]
    async fn never_healthy_fails_at_the_start_timeout_with_the_last_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (_held, port) = closed_port();
        let mut check = check(Probe::Tcp { port });
        check.start_timeout_ms = 300;
        let started = Instant::now();
        let err = wait_healthy(&check, dir.path(), never()).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "tcp probe 127.0.0.1:{port}: not healthy within 300 ms"
            )),
            "{message}"
        );
        assert!(message.contains("last failure: connect:"), "{message}");
    }

    #[tokio::test]
    async fn an_exited_workload_fails_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (_held, port) = closed_port();
        let err = wait_healthy(&check(Probe::Tcp { port }), dir.path(), async {})
            .await
            .unwrap_err();
        assert!(matches!(err, HealthError::Exited { .. }), "{err}");
    }
}
