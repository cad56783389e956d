//! Running a short-lived command from argv (never through a shell), bounded
//! by a timeout. Used by the `command` applier, its `unless` guard, command
//! health probes and run tasks (which also keep the end of stdout).
//!
//! A command runs in a process group of its own, killed whenever the run
//! ends: at the timeout, once the command exited (what it left in the
//! background would otherwise run on unsupervised and hold its pipes), or
//! when the caller drops the future (a health probe abandoned because the
//! workload died or the start timeout passed).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::group::KillOnDrop;

/// How much of a command's stderr is kept for its error message.
pub const STDERR_TAIL_BYTES: usize = 2048;
/// How much of a command's stdout is kept, when the caller asks for it.
pub const STDOUT_TAIL_BYTES: usize = 2048;
/// How long the end of its output is awaited after the command exited: a
/// child that left its process group (a daemon) may hold a pipe open
/// indefinitely.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// A command to run.
#[derive(Debug, Clone, Copy)]
pub struct Exec<'a> {
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub working_dir: &'a Path,
    pub timeout: Duration,
}

/// How a command that ran to its end ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The last [`STDERR_TAIL_BYTES`] of stderr.
    pub stderr_tail: Vec<u8>,
    /// The last [`STDOUT_TAIL_BYTES`] of stdout, if kept
    /// ([`run_keeping_stdout`]); empty otherwise.
    pub stdout_tail: Vec<u8>,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "exit code 3" or "killed by signal 9".
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended without a status".into(),
        }
    }

    /// The stderr tail as text, trimmed, for an error message.
    pub fn stderr_text(&self) -> String {
        tail_text(&self.stderr_tail)
    }

    /// The stdout tail as text, trimmed.
    pub fn stdout_text(&self) -> String {
        tail_text(&self.stdout_tail)
    }
}

/// A kept tail as text, trimmed; a character cut at its start becomes U+FFFD.
pub fn tail_text(tail: &[u8]) -> String {
    String::from_utf8_lossy(tail).trim().to_owned()
}

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("argv is empty")]
    EmptyArgv,
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("waiting for {program:?}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("{program:?} did not finish within {ms} ms; its process group was killed")]
    TimedOut {
        program: String,
        ms: u128,
        /// What it wrote to stderr before it was killed: often why it hung.
        stderr_tail: Vec<u8>,
    },
}

/// Runs `exec` to its end. Its whole process group is killed when it exits,
/// times out or is dropped, so nothing it started outlives it.
pub async fn run(exec: Exec<'_>) -> Result<Finished, ExecError> {
    run_with(exec, false).await
}

/// [`run`], also keeping the end of stdout (in [`Finished::stdout_tail`]).
pub async fn run_keeping_stdout(exec: Exec<'_>) -> Result<Finished, ExecError> {
    run_with(exec, true).await
}

async fn run_with(exec: Exec<'_>, keep_stdout: bool) -> Result<Finished, ExecError> {
    let (program, args) = exec.argv.split_first().ok_or(ExecError::EmptyArgv)?;
    let mut child = Command::new(program)
        .args(args)
        .envs(exec.env)
        .current_dir(exec.working_dir)
        .stdin(Stdio::null())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        // Its own group, so its children can be stopped with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
    // Declared after `child`, so dropped (and the group killed) first.
    let mut group = KillOnDrop::new(child.id());
    let stderr = Tail::of(child.stderr.take(), STDERR_TAIL_BYTES);
    let stdout = Tail::of(child.stdout.take(), STDOUT_TAIL_BYTES);
    let status = match tokio::time::timeout(exec.timeout, child.wait()).await {
        Ok(status) => {
            // Whatever it left running goes with it, closing its pipes.
            group.kill();
            status.map_err(|source| ExecError::Wait {
                program: program.clone(),
                source,
            })?
        }
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            drop(stdout);
            return Err(ExecError::TimedOut {
                program: program.clone(),
                ms: exec.timeout.as_millis(),
                stderr_tail: stderr.finish().await,
            });
        }
    };
    let (stderr_tail, stdout_tail) = tokio::join!(stderr.finish(), stdout.finish());
    Ok(Finished {
        code: status.code(),
        signal: status.signal(),
        stderr_tail,
        stdout_tail,
    })
}

/// The end of one of a command's output pipes, read as it comes.
struct Tail {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Tail {
    /// Starts reading `stream` (none for an output not piped), keeping its
    /// last `limit` bytes.
    fn of(stream: Option<impl AsyncRead + Unpin + Send + 'static>, limit: usize) -> Self {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let reader = stream.map(|stream| tokio::spawn(keep_tail(stream, limit, bytes.clone())));
        Self { bytes, reader }
    }

    /// What was read, once the pipe closed or [`OUTPUT_DRAIN`] passed.
    async fn finish(mut self) -> Vec<u8> {
        if let Some(reader) = &mut self.reader
            && tokio::time::timeout(OUTPUT_DRAIN, reader).await.is_err()
        {
            self.abort();
        }
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn abort(&self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

impl Drop for Tail {
    /// A tail no one will read stops being read.
    fn drop(&mut self) {
        self.abort();
    }
}

/// Reads `stream` to its end, keeping only its last `limit` bytes in `tail`.
async fn keep_tail(mut stream: impl AsyncRead + Unpin, limit: usize, tail: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buf).await {
        if read == 0 {
            break;
        }
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend_from_slice(&buf[..read]);
        let excess = tail.len().saturating_sub(limit);
        tail.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{process_alive, wait_until};

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    #[tokio::test]
    async fn exit_codes_and_the_end_of_stderr_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([("GREETING".to_string(), "hello".to_string())]);
        // 3000 bytes of 'a', then a marker: only the last 2 KiB are kept.
        let argv = argv(&[
            "/bin/sh",
            "-c",
            "head -c 3000 /dev/zero | tr '\\0' a >&2; echo \"$GREETING-end\" >&2; exit 3",
        ]);
        let finished = run(Exec {
            argv: &argv,
            env: &env,
            working_dir: dir.path(),
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
        assert!(!finished.success());
        assert_eq!(finished.describe(), "exit code 3");
        assert_eq!(finished.stderr_tail.len(), STDERR_TAIL_BYTES);
        assert!(finished.stderr_text().ends_with("hello-end"));
    }

    #[tokio::test]
    async fn the_end_of_stdout_is_kept_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let argv = argv(&[
            "/bin/sh",
            "-c",
            "head -c 3000 /dev/zero | tr '\\0' a; echo out-end; echo err >&2",
        ]);
        let exec = Exec {
            argv: &argv,
            env: &BTreeMap::new(),
            working_dir: dir.path(),
            timeout: Duration::from_secs(30),
        };
        let kept = run_keeping_stdout(exec).await.unwrap();
        assert!(kept.success());
        assert_eq!(kept.stdout_tail.len(), STDOUT_TAIL_BYTES);
        assert!(kept.stdout_text().ends_with("aaaout-end"));
        assert_eq!(kept.stderr_text(), "err");
        let plain = run(exec).await.unwrap();
        assert!(plain.stdout_tail.is_empty());
        assert_eq!(plain.stderr_text(), "err");
    }

    #[tokio::test]
    async fn a_timeout_keeps_what_stderr_said_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let argv = argv(&[
            "/bin/sh",
            "-c",
            "echo waiting for the lock >&2; exec sleep 600",
        ]);
        let err = run(Exec {
            argv: &argv,
            env: &BTreeMap::new(),
            working_dir: dir.path(),
            // Generous, so even a loaded machine gets to `echo` first.
            timeout: Duration::from_millis(2_000),
        })
        .await
        .unwrap_err();
        let ExecError::TimedOut { stderr_tail, .. } = err else {
            panic!("{err}");
        };
        assert_eq!(tail_text(&stderr_tail), "waiting for the lock");
    }

    /// Reads the pid a test command wrote to `path`, once it is there.
    async fn pid_in(path: &Path) -> i32 {
        let read = || {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok())
        };
        wait_until(&format!("a pid in {}", path.display()), || read().is_some()).await;
        read().unwrap()
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let argv = argv(&["/bin/sh", "-c", "sleep 600 & echo $! > bg.pid; wait"]);
        let working_dir = dir.path().to_owned();
        // Generous, so even a loaded machine writes the pid file before
        // the timeout; the test waits for the file, not for a fixed time.
        let running = tokio::spawn(async move {
            run(Exec {
                argv: &argv,
                env: &BTreeMap::new(),
                working_dir: &working_dir,
                timeout: Duration::from_millis(2_000),
            })
            .await
        });
        let pid = pid_in(&dir.path().join("bg.pid")).await;
        let err = running.await.unwrap().unwrap_err();
        assert!(
            matches!(err, ExecError::TimedOut { ms: 2_000, .. }),
            "{err}"
        );
        wait_until(
            "the background child of the timed-out command to die",
            || !process_alive(pid),
        )
        .await;
    }

    #[tokio::test]
    async fn what_a_finished_command_left_running_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let argv = argv(&[
            "/bin/sh",
            "-c",
            "sleep 600 & echo $! > bg.pid; echo done >&2",
        ]);
        let finished = run(Exec {
            argv: &argv,
            env: &BTreeMap::new(),
            working_dir: dir.path(),
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
        assert!(finished.success());
        assert_eq!(finished.stderr_text(), "done");
        let pid = pid_in(&dir.path().join("bg.pid")).await;
        wait_until("the command's background child to die", || {
            !process_alive(pid)
        })
        .await;
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let argv = argv(&[
            "/bin/sh",
            "-c",
            "sleep 600 & echo $! > bg.pid; echo $$ > leader.pid; wait",
        ]);
        let working_dir = dir.path().to_owned();
        let running = tokio::spawn(async move {
            run(Exec {
                argv: &argv,
                env: &BTreeMap::new(),
                working_dir: &working_dir,
                timeout: Duration::from_secs(600),
            })
            .await
        });
        let background = pid_in(&dir.path().join("bg.pid")).await;
        let leader = pid_in(&dir.path().join("leader.pid")).await;
        running.abort();
        assert!(running.await.unwrap_err().is_cancelled());
        wait_until("the leader and its background child to die", || {
            !process_alive(leader) && !process_alive(background)
        })
        .await;
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let argv = argv(&["/nonexistent/levee-test"]);
        let err = run(Exec {
            argv: &argv,
            env: &BTreeMap::new(),
            working_dir: dir.path(),
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/levee-test"), "{err}");
    }
}
