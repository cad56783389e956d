//! `[[check]]`s as an event source: one task per check probes it every
//! `interval_ms` and appends `host.check.failed` / `host.check.recovered`
//! to the outbox when [`CheckState`] (pure, in [`state`]) says the check
//! changed state.

pub mod state;

use std::path::PathBuf;
use std::time::Duration;

use levee_common::agent_config::{AgentConfig, Check};
use levee_common::event::types::{CHECK_FAILED, CHECK_RECOVERED};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::state::{CheckState, Transition};
use super::{Source, SourceContext, SourceError, SourceRun};
use crate::probe::{Described, probe_once};

/// One `[[check]]`, probed on its interval.
pub struct HealthCheck {
    pub check: Check,
}

/// One source per `[[check]]`.
pub fn from_config(config: &AgentConfig) -> Result<Vec<Box<dyn Source>>, SourceError> {
    Ok(config
        .checks
        .iter()
        .map(|check| {
            Box::new(HealthCheck {
                check: check.clone(),
            }) as Box<dyn Source>
        })
        .collect())
}

impl Source for HealthCheck {
    fn run(self: Box<Self>, context: SourceContext, shutdown: CancellationToken) -> SourceRun {
        let working_dir = context.data_dir.clone();
        Box::pin(run(self.check, working_dir, context, shutdown))
    }
}

/// Probes `check` until `shutdown`; command probes run in `working_dir`.
/// A probe under way when `shutdown` comes is abandoned (a command probe's
/// process group is killed).
async fn run(
    check: Check,
    working_dir: PathBuf,
    context: SourceContext,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_millis(check.interval_ms.max(1));
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    let probe = Described(&check.probe).to_string();
    let mut state = CheckState::new(check.unhealthy_threshold, check.healthy_threshold);
    // Durations between transitions come from a monotonic clock, so a wall
    // clock step cannot make `failing_ms` negative.
    let started = Instant::now();
    info!(check = %check.name, %probe, "checking");
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            result = probe_once(&check.probe, &working_dir, timeout) => result,
        };
        let at_ms = started.elapsed().as_millis() as i64;
        if let Some(transition) = state.observe(at_ms, result) {
            let (event_type, data) = match transition {
                Transition::Failed { failures, error } => {
                    warn!(check = %check.name, %probe, failures, %error, "check failing");
                    (
                        CHECK_FAILED,
                        json!({ "check": check.name, "probe": probe, "failures": failures, "error": error }),
                    )
                }
                Transition::Recovered {
                    failures,
                    failing_ms,
                } => {
                    info!(check = %check.name, %probe, failing_ms, "check recovered");
                    (
                        CHECK_RECOVERED,
                        json!({ "check": check.name, "probe": probe, "failures": failures, "failing_ms": failing_ms }),
                    )
                }
            };
            if let Err(err) = context.record(event_type, &check.name, data).await {
                warn!(check = %check.name, error = %err, "could not record a check event");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use levee_common::resource::Probe;
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;
    use crate::testing::{PATIENCE, events, fixture, wait_until};

    /// Listens on `port` (0: any), reusing the address so the same port can
    /// be listened on again after the listener is dropped.
    fn listen(port: u16) -> TcpListener {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(format!("127.0.0.1:{port}").parse().unwrap())
            .unwrap();
        socket.listen(16).unwrap()
    }

    fn tcp_check(port: u16) -> Check {
        Check {
            name: "db".into(),
            probe: Probe::Tcp { port },
            interval_ms: 20,
            timeout_ms: 1_000,
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }

    #[tokio::test]
    async fn a_listener_going_away_and_coming_back_is_one_failed_and_one_recovered() {
        let fixture = fixture();
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            tcp_check(port),
            fixture.config.data_dir.clone(),
            fixture.source_context(),
            stop.clone(),
        ));
        // Seen passing first: the accepted connection is the agent's probe.
        tokio::time::timeout(PATIENCE, listener.accept())
            .await
            .expect("a probe within the patience")
            .unwrap();
        drop(listener);
        wait_until("the failed event", || {
            !events(&fixture.outbox, CHECK_FAILED).is_empty()
        })
        .await;
        let listener = listen(port);
        wait_until("the recovered event", || {
            !events(&fixture.outbox, CHECK_RECOVERED).is_empty()
        })
        .await;
        // Passing on after recovering says nothing more.
        for _ in 0..3 {
            tokio::time::timeout(PATIENCE, listener.accept())
                .await
                .expect("probes go on")
                .unwrap();
        }
        stop.cancel();
        task.await.unwrap();

        let failed = events(&fixture.outbox, CHECK_FAILED);
        assert_eq!(failed.len(), 1, "{failed:#?}");
        let (subject, data) = &failed[0];
        assert_eq!(subject, "db");
        assert_eq!(data["check"], "db");
        assert_eq!(data["probe"], format!("tcp probe 127.0.0.1:{port}"));
        assert_eq!(data["failures"], 2);
        assert!(
            data["error"].as_str().unwrap().starts_with("connect:"),
            "{data}"
        );
        let recovered = events(&fixture.outbox, CHECK_RECOVERED);
        assert_eq!(recovered.len(), 1, "{recovered:#?}");
        assert!(recovered[0].1["failures"].as_u64().unwrap() >= 2);
        assert!(recovered[0].1["failing_ms"].as_i64().unwrap() >= 0);
    }

    #[tokio::test]
    async fn shutdown_abandons_a_probe_under_way() {
        let fixture = fixture();
        let stop = CancellationToken::new();
        let check = Check {
            name: "slow".into(),
            probe: Probe::Command {
                argv: ["/bin/sh", "-c", "touch started; exec sleep 600"]
                    .map(String::from)
                    .to_vec(),
            },
            interval_ms: 1_000,
            timeout_ms: 600_000,
            unhealthy_threshold: 1,
            healthy_threshold: 1,
        };
        let task = tokio::spawn(run(
            check,
            fixture.config.data_dir.clone(),
            fixture.source_context(),
            stop.clone(),
        ));
        let started = fixture.config.data_dir.join("started");
        wait_until("the probe to start", || started.exists()).await;
        stop.cancel();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the check task to stop")
            .unwrap();
        assert!(events(&fixture.outbox, CHECK_FAILED).is_empty());
    }
}
