//! The shipped systemd units are valid, as `systemd-analyze verify` sees them.

use std::path::Path;
use std::process::Command;

use levee_tests::process::{bin_dir, binary};

#[test]
fn the_systemd_units_verify_without_warnings() {
    // The units name the installed paths; point them at the built binaries.
    binary("levee");
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
    let mut checked = 0;
    for entry in std::fs::read_dir(&units).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let local = text.replace("/usr/local/bin/", &format!("{}/", bin_dir().display()));
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, local).unwrap();
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect(
                "systemd-analyze is part of this machine image; install systemd if it is missing",
            );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "{}: {stderr}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "expected the controller and agent units");
}

#[test]
fn the_local_cluster_script_brings_up_three_nodes_and_agents_and_tears_them_down() {
    let env = levee_tests::TestEnv::new();
    binary("levee");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster.sh");
    let dir = env.path().join("local");
    let run = |command: &str| {
        Command::new("bash")
            .arg(&script)
            .arg(command)
            .args(["--nodes", "3", "--agents", "2", "--dir"])
            .arg(&dir)
            .env("LEVEE_BIN_DIR", bin_dir())
            .output()
            .unwrap()
    };
    // Tears the cluster down even if an assertion below fails.
    struct Down<'a>(&'a dyn Fn(&str) -> std::process::Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            (self.0)("down");
        }
    }
    let up = run("up");
    let _down = Down(&run);
    assert!(
        up.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    let cli = |args: &[&str]| {
        let output = Command::new(binary("levee"))
            .args(args)
            .args(["--output", "json"])
            .env("LEVEE_CLI_CONFIG", dir.join("cli.toml"))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    let status = cli(&["cluster", "status"]);
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    levee_tests::wait_until(
        "both agents to connect",
        std::time::Duration::from_secs(60),
        || {
            let agents = cli(&["agents"]);
            let connected = agents.as_array().map_or(0, |agents| {
                agents
                    .iter()
                    .filter(|agent| agent["connected"] == true)
                    .count()
            });
            if connected == 2 {
                Ok(())
            } else {
                Err(format!("{agents}"))
            }
        },
    );

    let pids: Vec<u32> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pid"))
        .map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 5, "3 controllers and 2 agents");
    let down = run("down");
    assert!(
        down.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z "),
            "process {pid} still runs after down"
        );
    }
}
