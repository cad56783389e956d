//! Health checks: a task that (re)starts a workload with a health check
//! succeeds only once the workload answers its probe, so "applied" means
//! "serving", and a broken release fails its task instead of passing it.
//!
//! A probe passing `healthy_threshold` times in a row makes the workload
//! healthy. Failures before the first pass are the workload starting up and
//! are tolerated until `start_timeout_ms`; once a probe has passed,
//! `unhealthy_threshold` failures in a row fail the check.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use levee_common::resource::HealthCheck;
use thiserror::Error;
use tokio::time::Instant;

use crate::probe::{Described, probe_once};

/// Used when a check leaves a duration at 0.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

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
    let probe = Described(&check.probe).to_string();
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

#[cfg(test)]
mod tests {
    use levee_common::resource::Probe;

    use super::*;
    use crate::testing::{closed_port, http_server};

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
    async fn healthy_takes_the_threshold_of_passes_in_a_row() {
        let dir = tempfile::tempdir().unwrap();
        // Fails twice while starting, then passes: 2 failures + 2 passes.
        let port = http_server(|n| if n <= 2 { 503 } else { 200 }).await;
        let probes = wait_healthy(&check(http_probe(port)), dir.path(), never())
            .await
            .unwrap();
        assert_eq!(probes, 4);
    }

    #[tokio::test]
    async fn failures_after_a_pass_make_it_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        // Passes once, then fails for good: the threshold of 3 ends it.
        let port = http_server(|n| if n == 1 { 200 } else { 500 }).await;
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
