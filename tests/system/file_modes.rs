//! Secrets and state are owner-only whatever the umask: `levee dev` run
//! under `umask 022` leaves every store, key, token and log 0600 in 0700
//! directories, while its workloads keep the umask they were given; a
//! restart tightens what an earlier release left readable, and `levee
//! state save` writes 0600 even over a readable file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use levee_tests::process::{Running, binary};
use levee_tests::{TestEnv, wait_until};
use nix::sys::signal::Signal;

use crate::common::TIMEOUT;
use crate::dev::{clock_running, dev_with};

/// `levee dev` started by a shell that sets `umask 022` first.
fn dev_under_umask_022(env: &TestEnv) -> Running {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "umask 022; exec \"$0\" \"$@\""])
        .arg(binary("levee"));
    dev_with(env, command)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
}

/// Every directory and file that holds secrets or state, with the mode it
/// must have.
fn private_paths(dev: &Path) -> Vec<(PathBuf, u32)> {
    let mut paths: Vec<(PathBuf, u32)> = ["", "pki", "controller", "agent", "agent/logs"]
        .iter()
        .map(|dir| (dev.join(dir), 0o700))
        .collect();
    for file in [
        "webhook.token",
        "pki/ca.key",
        "pki/node-1.key",
        "pki/local.key",
        "pki/dev-operator.key",
        "controller/levee.redb",
        "agent/agent.redb",
    ] {
        paths.push((dev.join(file), 0o600));
    }
    // One directory per workload process, holding its stdout and stderr.
    let logs = std::fs::read_dir(dev.join("agent/logs")).expect("the agent's logs directory");
    for process in logs.flatten() {
        let dir = process.path();
        for stream in ["stdout.log", "stderr.log"] {
            paths.push((dir.join(stream), 0o600));
        }
        paths.push((dir, 0o700));
    }
    paths
}

fn assert_owner_only(dev: &Path) {
    let paths = private_paths(dev);
    assert!(
        paths.iter().any(|(path, _)| path.ends_with("stdout.log")),
        "the clock's logs are among the checked paths: {paths:?}"
    );
    let wrong: Vec<String> = paths
        .iter()
        .filter(|(path, expected)| mode(path) != *expected)
        .map(|(path, expected)| format!("{} is {:o}, not {expected:o}", path.display(), mode(path)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn stop(dev: &mut Running) {
    dev.signal(Signal::SIGINT);
    let status = wait_until("levee dev to exit after SIGINT", TIMEOUT, || {
        dev.try_status().ok_or("still running".to_owned())
    });
    assert!(
        status.success(),
        "levee dev exited with {status}:\n{}",
        dev.log_tail()
    );
}

#[test]
fn levee_dev_under_umask_022_keeps_secrets_and_state_owner_only() {
    let env = TestEnv::new();
    let dir = env.path().join("dev");
    let services = dir.join("agent/services/clock");

    let mut first = dev_under_umask_022(&env);
    clock_running(&env, &first);
    wait_until("the clock to write now.txt", TIMEOUT, || {
        std::fs::metadata(services.join("now.txt")).map_err(|err| err.to_string())
    });
    assert_owner_only(&dir);
    // The workload kept the umask it was started with, and the spec's file
    // its declared mode.
    assert_eq!(mode(&services.join("now.txt")), 0o644);
    assert_eq!(mode(&services.join("banner.txt")), 0o644);

    // `levee state save` over a file others could read.
    let saved = env.path().join("state.json");
    std::fs::write(&saved, "old").expect("write");
    set_mode(&saved, 0o644);
    let output = Command::new(binary("levee"))
        .args(["state", "save"])
        .arg(&saved)
        .env("LEVEE_CLI_CONFIG", dir.join("cli.toml"))
        .output()
        .expect("run levee state save");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(mode(&saved), 0o600);
    assert!(
        std::fs::read_to_string(&saved)
            .expect("read")
            .starts_with('{')
    );

    // What an earlier release left behind under a 022 umask is tightened
    // at the next start, with a warning.
    stop(&mut first);
    for (path, private) in private_paths(&dir) {
        set_mode(&path, if private == 0o700 { 0o755 } else { 0o644 });
    }
    let second = dev_under_umask_022(&env);
    clock_running(&env, &second);
    assert_owner_only(&dir);
    let log = std::fs::read_to_string(&second.log).expect("the dev log");
    assert!(
        log.contains("made it owner-only") && log.contains("agent.redb"),
        "{log}"
    );
}
