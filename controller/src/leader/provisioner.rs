//! The leader runs provisioners: for each pending provision it commits
//! `ProvisionStarted` (with its term), runs the provisioner's argv, and
//! commits the result. A provision found started by an older term is
//! never run again: it is closed as `unknown` (still counting against
//! `max_hosts`) for an operator to resolve, since its command may have
//! made a host before the leader changed.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use levee_common::spec::ProvisionerSpec;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use super::sleep_until;
use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command as cmd;
use crate::state::command::Command;

/// How soon a proposal that failed is tried again.
const RETRY: Duration = Duration::from_millis(250);
/// How much of a provisioner's output is kept in the record.
const OUTPUT_TAIL: usize = 4096;

#[derive(Clone)]
pub struct ProvisionRunner {
    pub state: SharedState,
    pub proposer: Proposer,
    /// Provisions this node is running, whatever the term: a run goes on
    /// across a change of leadership and reports for itself (committed if
    /// this node leads again); only the node's shutdown ends it.
    pub running_here: Arc<Mutex<BTreeSet<String>>>,
    /// Where runs are spawned: the node waits for them at shutdown.
    pub tracker: TaskTracker,
    /// The node's shutdown, which kills runs and their process groups.
    pub shutdown: CancellationToken,
}

impl ProvisionRunner {
    /// Starts pending provisions while this node leads `term`; woken by
    /// applied entries (a run's result is one). A run started in an
    /// earlier term by another leader is closed as `unknown`, never run
    /// again.
    pub async fn lead(self, term: u64, stepped_down: CancellationToken) {
        let running_here = self.running_here.clone();
        let mut applied = self.state.subscribe();
        loop {
            // A proposal that failed is tried again shortly.
            let mut retry_at: Option<Instant> = None;
            let work = self.state.read(|state| {
                state
                    .provisions_to_handle(term)
                    .into_iter()
                    .filter_map(|(id, pending)| {
                        let record = state.effects.provisions.get(&id)?;
                        let spec = state
                            .desired
                            .specs
                            .provisioners
                            .get(&record.provisioner)
                            .cloned();
                        Some((id, pending, spec))
                    })
                    .collect::<Vec<_>>()
            });
            for (id, pending, spec) in work {
                // This node may lead again in a newer term while its own
                // run goes on: that run reports for itself.
                if lock(&running_here).contains(&id) {
                    continue;
                }
                if !pending {
                    let command = Command::ProvisionAbandoned(cmd::ProvisionAbandoned {
                        id: id.clone(),
                        term,
                        at_ms: now_ms(),
                    });
                    if let Err(err) = self.proposer.propose(command).await {
                        warn!(%id, error = %err, "could not close an abandoned provision");
                        retry_at = Some(Instant::now() + RETRY);
                    }
                    continue;
                }
                let Some(spec) = spec else {
                    let gone = Err("its provisioner is no longer in the specs".into());
                    if !self.finish(&id, gone).await {
                        retry_at = Some(Instant::now() + RETRY);
                    }
                    continue;
                };
                lock(&running_here).insert(id.clone());
                let started = cmd::ProvisionStarted {
                    id: id.clone(),
                    term,
                    at_ms: now_ms(),
                };
                match self.proposer.propose_for(started).await {
                    Ok((_, Ok(()))) => {}
                    Ok((_, Err(reason))) => {
                        warn!(%id, %reason, "provision not started");
                        lock(&running_here).remove(&id);
                        continue;
                    }
                    Err(err) => {
                        warn!(%id, error = %err, "could not start a provision");
                        retry_at = Some(Instant::now() + RETRY);
                        lock(&running_here).remove(&id);
                        continue;
                    }
                }
                let proposer = self.proposer.clone();
                let running_here = running_here.clone();
                let span = info_span!("provision", %id, provisioner = %spec.name);
                let shutdown = self.shutdown.clone();
                self.tracker.spawn(
                    async move {
                        info!(argv = ?spec.argv, "running the provisioner");
                        let result = tokio::select! {
                            result = run_provisioner(&spec, &id) => result,
                            // Dropping the run kills its process group.
                            () = shutdown.cancelled() => return,
                        };
                        match &result {
                            Ok(_) => info!("provisioner succeeded"),
                            Err(err) => warn!(error = %err, "provisioner failed"),
                        }
                        let command = Command::ProvisionFinished(cmd::ProvisionFinished {
                            id: id.clone(),
                            result,
                            at_ms: now_ms(),
                        });
                        if let Err(err) = proposer.propose(command).await {
                            warn!(error = %err, "could not record the provision's result");
                        }
                        lock(&running_here).remove(&id);
                    }
                    .instrument(span),
                );
            }
            tokio::select! {
                () = stepped_down.cancelled() => break,
                _ = applied.changed() => {}
                () = sleep_until(retry_at) => {}
            }
        }
    }

    /// Commits a provision's end; false when that failed (try again).
    async fn finish(&self, id: &str, result: Result<String, String>) -> bool {
        let command = Command::ProvisionFinished(cmd::ProvisionFinished {
            id: id.to_owned(),
            result,
            at_ms: now_ms(),
        });
        match self.proposer.propose(command).await {
            Ok(_) => true,
            Err(err) => {
                warn!(%id, error = %err, "could not close a provision");
                false
            }
        }
    }
}

/// Kills a process group when dropped, unless disarmed.
struct KillGroup(Option<Pid>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// Runs the provisioner's argv (never through a shell) with its env plus
/// `LEVEE_PROVISION_ID`, `LEVEE_PROVISIONER` and `LEVEE_LABELS`
/// (`k=v,...`), in its own process group, which is killed on timeout.
/// What it starts and leaves running when it exits is its business (a
/// local host it started must not hold its stdout or stderr open).
async fn run_provisioner(spec: &ProvisionerSpec, id: &str) -> Result<String, String> {
    let labels = spec
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut child = tokio::process::Command::new(&spec.argv[0])
        .args(&spec.argv[1..])
        .envs(&spec.env)
        .env("LEVEE_PROVISION_ID", id)
        .env("LEVEE_PROVISIONER", &spec.name)
        .env("LEVEE_LABELS", labels)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot run {:?}: {err}", spec.argv[0]))?;
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    // Whatever ends this run early (a timeout, the node stopping) ends
    // everything the command started in its group too.
    let mut kill_group = KillGroup(group);
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let output = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (_, _) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        (out, err, status)
    };
    let timeout = Duration::from_millis(u64::from(spec.timeout_ms));
    let Ok((out, err, status)) = tokio::time::timeout(timeout, output).await else {
        // Timed out: the command and whatever it started in its group go
        // (KillGroup, on return).
        return Err(format!("timed out after {} ms", spec.timeout_ms));
    };
    kill_group.0 = None;
    let status = status.map_err(|err| format!("waiting for it: {err}"))?;
    if status.success() {
        Ok(tail(&out))
    } else {
        Err(format!("{status}: {}", tail(&err)))
    }
}

fn lock(set: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str, timeout_ms: u32) -> ProvisionerSpec {
        ProvisionerSpec {
            kind: "Provisioner".into(),
            name: "spare".into(),
            description: None,
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: [("SITE".to_owned(), "ams".to_owned())].into(),
            timeout_ms,
            labels: [("role".to_owned(), "worker".to_owned())].into(),
            max_hosts: 1,
        }
    }

    #[tokio::test]
    async fn a_provisioner_sees_its_id_labels_and_env_and_its_output_is_kept() {
        let spec = spec("echo \"$LEVEE_PROVISION_ID $LEVEE_LABELS $SITE\"", 10_000);
        assert_eq!(
            run_provisioner(&spec, "h7").await.unwrap(),
            "h7 role=worker ams"
        );
    }

    #[tokio::test]
    async fn a_failing_provisioner_reports_its_status_and_stderr() {
        let spec = spec("echo 'no quota left' >&2; exit 3", 10_000);
        let err = run_provisioner(&spec, "h1").await.unwrap_err();
        assert!(
            err.contains("exit status: 3") && err.contains("no quota left"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_provisioner_past_its_timeout_is_killed() {
        let started = std::time::Instant::now();
        let err = run_provisioner(&spec("sleep 30", 200), "h1")
            .await
            .unwrap_err();
        assert!(err.contains("timed out after 200 ms"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "it did not wait out the sleep"
        );
    }

    #[tokio::test]
    async fn a_run_dropped_midway_kills_everything_its_command_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        // The command starts a child of its own, then waits.
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let spec = spec(&script, 60_000);
        let mut run = Box::pin(run_provisioner(&spec, "h1"));
        let child: i32 = loop {
            tokio::select! {
                _ = &mut run => panic!("the provisioner ended early"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                break pid;
            }
        };
        // The node stops (or the run is otherwise dropped) midway.
        drop(run);
        let gone = (0..250).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            // Signal 0 probes; a zombie not yet reaped counts as gone too.
            nix::sys::signal::kill(Pid::from_raw(child), None).is_err()
                || std::fs::read_to_string(format!("/proc/{child}/stat"))
                    .is_ok_and(|stat| stat.contains(") Z"))
        });
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        assert!(
            gone,
            "the command's own child {child} outlived the dropped run: {stat}"
        );
    }
}
