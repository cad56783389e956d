//! What an idle `levee dev` costs: CPU time of the controller and of its
//! agent over a window in which nothing happens, read from
//! `/proc/PID/stat` (user plus system time, in the kernel's fixed 100 Hz
//! clock ticks).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{Running, binary};
use crate::wait_until;

/// /proc reports CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Share of one core used over the window, in percent.
#[derive(Debug, Clone, Copy)]
pub struct IdleCpu {
    pub controller_percent: f64,
    pub agent_percent: f64,
    pub window: Duration,
}

/// Starts `levee dev` in `dir`, waits until its example service ran and
/// its agent is connected, lets it settle for `settle`, then measures both
/// processes over `window`. Ends `levee dev` (and so its agent) after.
pub fn measure_dev(dir: &Path, settle: Duration, window: Duration) -> IdleCpu {
    let mut command = Command::new(binary("levee"));
    command
        .current_dir(dir)
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("dev"))
        .env("LEVEE_LOG_FORMAT", "json");
    let mut dev = Running::spawn("levee dev", command, &dir.join("dev.log"));
    let cli_config = dir.join("dev/cli.toml");
    wait_until(
        "levee dev to run its example and connect its agent",
        START_TIMEOUT,
        || {
            let tasks = levee_json(&cli_config, "tasks")?;
            let agents = levee_json(&cli_config, "agents")?;
            let ran = tasks
                .as_array()
                .is_some_and(|tasks| tasks.iter().any(|task| task["state"] == "succeeded"));
            let connected = agents
                .as_array()
                .is_some_and(|agents| agents.iter().any(|agent| agent["connected"] == true));
            if ran && connected {
                Ok(())
            } else {
                Err(format!("tasks {tasks}, agents {agents}"))
            }
        },
    );
    let agent_pid = wait_until("levee dev's agent process", START_TIMEOUT, || {
        child_named(dev.pid(), "levee-agent").ok_or("not started".to_owned())
    });
    std::thread::sleep(settle);
    let started = Instant::now();
    let controller_before = cpu_ticks(dev.pid());
    let agent_before = cpu_ticks(agent_pid);
    std::thread::sleep(window);
    let controller_used = cpu_ticks(dev.pid()) - controller_before;
    let agent_used = cpu_ticks(agent_pid) - agent_before;
    let elapsed = started.elapsed();
    dev.stop(Duration::from_secs(10));
    let percent = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / elapsed.as_secs_f64() * 100.0;
    IdleCpu {
        controller_percent: percent(controller_used),
        agent_percent: percent(agent_used),
        window: elapsed,
    }
}

fn levee_json(cli_config: &Path, what: &str) -> Result<Value, String> {
    let output = Command::new(binary("levee"))
        .args([what, "--output", "json"])
        .env("LEVEE_CLI_CONFIG", cli_config)
        .output()
        .map_err(|err| err.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|err| err.to_string())
}

/// User plus system CPU ticks of a process (fields 14 and 15 of its stat,
/// counted after the parenthesised command name, which may hold spaces).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|err| panic!("reading /proc/{pid}/stat: {err}"));
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // after_name starts at field 3 (state): utime is field 14, stime 15.
    let field = |n: usize| -> u64 { fields[n - 3].parse().expect("a tick count") };
    field(14) + field(15)
}

/// A child process of `parent` whose command name is `name`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = &stat[open + 1..close];
            let ppid: u32 = stat[close + 2..].split(' ').nth(1)?.parse().ok()?;
            (ppid == parent && comm == name).then_some(pid)
        })
}
