//! Signalling process groups. Workloads, commands, guards and probes each
//! run in a group of their own (its id is the leader's pid), so one signal
//! reaches everything they started.
//!
//! `killpg(0)` signals the caller's own group, which would be the agent
//! itself, and a pid that is unknown (`Child::id()` is `None` once the
//! child was reaped) must never turn into 0, so only real group ids are
//! ever signalled.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Sends `signal` to process group `pgid`. Returns whether it was sent:
/// `false` for an id that cannot be a workload's group (0, 1, or beyond
/// `pid_t`) or a group that no longer exists.
pub fn signal(pgid: u32, signal: Signal) -> bool {
    match i32::try_from(pgid) {
        Ok(raw) if raw > 1 => killpg(Pid::from_raw(raw), signal).is_ok(),
        _ => false,
    }
}

/// SIGKILLs a process group when dropped, unless disarmed: however a
/// command's future ends (finished, timed out, or dropped by its caller),
/// nothing it started outlives it.
#[derive(Debug)]
pub struct KillOnDrop {
    pgid: Option<u32>,
}

impl KillOnDrop {
    /// Guards group `pgid`; `None` (no known pid) guards nothing.
    pub fn new(pgid: Option<u32>) -> Self {
        Self { pgid }
    }

    /// Kills the group now, once.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            signal(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{process_alive, wait_until};

    #[test]
    fn group_zero_one_and_ids_beyond_pid_t_are_never_signalled() {
        // SIGCONT would be harmless if it were sent; it must not be.
        assert!(!signal(0, Signal::SIGCONT));
        assert!(!signal(1, Signal::SIGCONT));
        assert!(!signal(u32::MAX, Signal::SIGCONT));
        let mut guard = KillOnDrop::new(None);
        guard.kill();
    }

    #[tokio::test]
    async fn a_dropped_guard_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", "sleep 600 & echo $! > bg.pid; wait"])
            .current_dir(dir.path())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid_file = dir.path().join("bg.pid");
        let read_pid = || {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok())
        };
        wait_until("the background child's pid", || read_pid().is_some()).await;
        let background = read_pid().unwrap();
        drop(KillOnDrop::new(child.id()));
        child.wait().await.unwrap();
        wait_until("the background child to die with its group", || {
            !process_alive(background)
        })
        .await;
    }
}
