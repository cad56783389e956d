//! Waiting on conditions, never on fixed sleeps.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Some`, or panics after `timeout` with a
/// message naming `what` was awaited and the last observation.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    let mut last = String::from("(not checked yet)");
    while start.elapsed() < timeout {
        match check() {
            Ok(value) => return value,
            Err(observation) => last = observation,
        }
        std::thread::sleep(POLL);
    }
    panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}");
}
