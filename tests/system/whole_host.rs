//! An agent whose `allowed_roots` give tasks the whole host (`/` or a
//! system directory, however written) refuses to start with a config
//! error naming the root and the flag; with
//! `i_know_this_is_the_whole_host = true` it starts and warns.

use std::path::PathBuf;
use std::process::Command;

use levee_tests::process::{Running, binary};
use levee_tests::{TestEnv, wait_until};

use crate::common::TIMEOUT;

/// Writes the config of an agent with `roots`, pointed at a controller
/// that is not there (it never gets that far, or need not).
fn agent_config(env: &TestEnv, roots: Vec<PathBuf>, whole_host: bool) -> PathBuf {
    let (_, path) = env.write_agent_config("edge", &[], &[], |config| {
        config.controllers = vec!["127.0.0.1:1".into()];
        config.allowed_roots = roots;
        config.i_know_this_is_the_whole_host = whole_host;
    });
    path
}

#[test]
fn an_agent_refuses_roots_that_are_the_whole_host_unless_told_it_knows() {
    let env = TestEnv::new();
    let own = env.path().join("srv");
    // `..` out of the test directory, down into /etc.
    let sneaky = env.path().join("srv/../../../etc");

    let config = agent_config(&env, vec![own.clone(), sneaky.clone()], false);
    let output = Command::new(binary("levee-agent"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run levee-agent");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "allowed_roots: `{}` (which resolves to `/etc`) is a system directory",
            sneaky.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("i_know_this_is_the_whole_host = true"),
        "{stderr}"
    );
    assert!(
        !env.path().join("agent-edge").exists(),
        "refused before touching anything"
    );

    // With the flag, a link to `/` is accepted, and named at start.
    let everything = env.path().join("everything");
    std::os::unix::fs::symlink("/", &everything).expect("symlink");
    let config = agent_config(&env, vec![own, everything.clone()], true);
    let mut command = Command::new(binary("levee-agent"));
    command
        .arg("--config")
        .arg(&config)
        .env("LEVEE_LOG_FORMAT", "json");
    let agent = Running::spawn("agent edge", command, &env.path().join("agent-edge.log"));
    wait_until("the agent to warn of its whole-host roots", TIMEOUT, || {
        let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
        let warned = log.lines().any(|line| {
            line.contains("allowed_roots hand tasks the whole host")
                && line.contains(&format!(
                    "`{}` (which resolves to `/`)",
                    everything.display()
                ))
        });
        if warned { Ok(()) } else { Err(log) }
    });
}
