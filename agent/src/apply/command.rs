//! The `command` applier: runs argv (never through a shell) unless a guard
//! says its work is done, so converging it again changes nothing:
//! `creates` names a path the command makes, `unless` is argv that exits 0
//! when the command is not needed.

use std::path::Path;
use std::time::Duration;

use levee_common::resource::{CommandResource, DEFAULT_COMMAND_TIMEOUT_MS};
use thiserror::Error;

use crate::exec::{self, Exec, ExecError};

#[derive(Debug, Error)]
pub enum CommandError {
    #[error("{0}")]
    Run(ExecError),
    #[error("`unless` guard: {0}")]
    Unless(ExecError),
    #[error("failed with {status}; stderr: {stderr}")]
    Failed { status: String, stderr: String },
}

/// Runs `spec` in `working_dir` unless a guard says not to. `creates` is
/// the guard path, already resolved beneath the roots.
pub async fn converge(
    spec: &CommandResource,
    working_dir: &Path,
    creates: Option<&Path>,
) -> Result<(bool, String), CommandError> {
    if let Some(creates) = creates
        && creates.symlink_metadata().is_ok()
    {
        return Ok((false, format!("skipped: {} exists", creates.display())));
    }
    let timeout = Duration::from_millis(u64::from(if spec.timeout_ms == 0 {
        DEFAULT_COMMAND_TIMEOUT_MS
    } else {
        spec.timeout_ms
    }));
    if let Some(unless) = &spec.unless {
        let guard = exec::run(Exec {
            argv: unless,
            env: &spec.env,
            working_dir,
            timeout,
        })
        .await
        .map_err(CommandError::Unless)?;
        if guard.success() {
            return Ok((false, "skipped: `unless` exited 0".into()));
        }
    }
    let finished = exec::run(Exec {
        argv: &spec.argv,
        env: &spec.env,
        working_dir,
        timeout,
    })
    .await
    .map_err(CommandError::Run)?;
    if !finished.success() {
        return Err(CommandError::Failed {
            status: finished.describe(),
            stderr: finished.stderr_text(),
        });
    }
    let mut detail = "ran, exit code 0".to_owned();
    if let Some(creates) = creates
        && creates.symlink_metadata().is_err()
    {
        // Not an error, but it will run again on the next converge.
        detail.push_str(&format!("; {} is still missing", creates.display()));
    }
    Ok((true, detail))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn command(argv: &[&str]) -> CommandResource {
        CommandResource {
            name: "setup".into(),
            argv: argv.iter().map(|word| word.to_string()).collect(),
            env: BTreeMap::new(),
            working_dir: None,
            creates: None,
            unless: None,
            timeout_ms: 30_000,
        }
    }

    #[tokio::test]
    async fn argv_is_not_a_shell_line_and_env_and_working_dir_apply() {
        let dir = tempfile::tempdir().unwrap();
        let touch = command(&["/usr/bin/touch", "a;touch b"]);
        let (changed, detail) = converge(&touch, dir.path(), None).await.unwrap();
        assert!(changed);
        assert_eq!(detail, "ran, exit code 0");
        assert!(dir.path().join("a;touch b").exists());
        assert!(!dir.path().join("b").exists(), "no shell interpreted `;`");

        let mut echo = command(&["/bin/sh", "-c", "echo \"$GREETING\" > greeting"]);
        echo.env.insert("GREETING".into(), "hello".into());
        converge(&echo, dir.path(), None).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("greeting")).unwrap(),
            "hello\n"
        );
    }

    #[tokio::test]
    async fn guards_skip_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let creates = dir.path().join("done");
        let mut once = command(&["/bin/sh", "-c", "echo run >> runs; touch done"]);
        once.creates = Some("done".into());
        assert!(converge(&once, dir.path(), Some(&creates)).await.unwrap().0);
        let (changed, detail) = converge(&once, dir.path(), Some(&creates)).await.unwrap();
        assert!(!changed);
        assert!(
            detail.starts_with("skipped:") && detail.ends_with("done exists"),
            "{detail}"
        );
        let runs = || std::fs::read_to_string(dir.path().join("runs")).unwrap();
        assert_eq!(runs(), "run\n");

        let mut guarded = command(&["/bin/sh", "-c", "echo run >> runs"]);
        guarded.unless = Some(vec!["/bin/test".into(), "-f".into(), "marker".into()]);
        assert!(
            converge(&guarded, dir.path(), None).await.unwrap().0,
            "marker missing: runs"
        );
        std::fs::write(dir.path().join("marker"), "").unwrap();
        assert_eq!(
            converge(&guarded, dir.path(), None).await.unwrap(),
            (false, "skipped: `unless` exited 0".into())
        );
        assert_eq!(runs(), "run\nrun\n");
    }

    #[tokio::test]
    async fn a_failure_reports_the_exit_code_and_the_end_of_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let failing = command(&[
            "/bin/sh",
            "-c",
            "echo starting; echo 'disk on fire' >&2; exit 4",
        ]);
        let err = converge(&failing, dir.path(), None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed with exit code 4; stderr: disk on fire"
        );
    }

    #[tokio::test]
    async fn a_timeout_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let mut slow = command(&["/bin/sleep", "600"]);
        slow.timeout_ms = 200;
        let err = converge(&slow, dir.path(), None).await.unwrap_err();
        assert!(matches!(
            err,
            CommandError::Run(ExecError::TimedOut { ms: 200, .. })
        ));
        assert!(
            err.to_string().contains("did not finish within 200 ms"),
            "{err}"
        );
    }
}
