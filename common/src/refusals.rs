//! Refusals at a trust boundary: every one is counted, and each
//! (peer, boundary, reason) is logged at most once per interval, the line
//! saying how many repeats the previous interval swallowed. A flood of bad
//! clients costs a counter, not the log.
//!
//! The caller passes `now`, so this stays pure (no clock) and its tests
//! need no sleeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

/// How often one peer's refusals for one reason reach the log.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Peers tracked at once. Past it, windows that ran out are dropped; if
/// none did, further peers share one window (`peer = "*"`), so a flood
/// from many addresses cannot grow memory or the log.
const MAX_WINDOWS: usize = 1024;
const MANY_PEERS: &str = "*";

/// One refused handshake or call.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// Who was refused: an address, or the name its certificate states.
    pub peer: &'a str,
    /// Where: `tls`, `role`, `raft`, `controller`, …
    pub boundary: &'static str,
    /// Why, as a short label for metrics: `untrusted_certificate`, …
    pub reason: &'static str,
    /// The specifics, for the log line only.
    pub detail: &'a str,
}

/// Counts and rate-limited log lines of refusals; shared by every
/// boundary of a process.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    windows: HashMap<(String, &'static str, &'static str), Window>,
    totals: BTreeMap<(&'static str, &'static str), u64>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    logged_at: Instant,
    suppressed: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(DEFAULT_LOG_INTERVAL)
    }
}

impl RefusalLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            inner: Mutex::default(),
        }
    }

    /// Counts `refusal` and logs it at WARN unless its peer was logged for
    /// the same boundary and reason within the interval.
    pub fn refuse(&self, refusal: Refusal<'_>, now: Instant) {
        if let Some(suppressed) = self.record(refusal, now) {
            warn!(
                peer = %refusal.peer,
                boundary = %refusal.boundary,
                reason = %refusal.reason,
                suppressed,
                detail = %refusal.detail,
                "refused a peer (one line per peer and reason a minute; `suppressed` counts the repeats since the last)"
            );
        }
    }

    /// Counts `refusal`; `Some(repeats suppressed since the last line)`
    /// when it is due a log line.
    pub fn record(&self, refusal: Refusal<'_>, now: Instant) -> Option<u64> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *inner
            .totals
            .entry((refusal.boundary, refusal.reason))
            .or_default() += 1;
        let key = inner.key_for(refusal, now, self.interval);
        match inner.windows.get_mut(&key) {
            Some(window) if now.duration_since(window.logged_at) < self.interval => {
                window.suppressed += 1;
                None
            }
            Some(window) => {
                let suppressed = window.suppressed;
                *window = Window {
                    logged_at: now,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            None => {
                inner.windows.insert(
                    key,
                    Window {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Every refusal counted so far, by (boundary, reason).
    pub fn totals(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.totals.clone()
    }
}

impl Inner {
    /// The window `refusal` falls in; makes room when the table is full.
    fn key_for(
        &mut self,
        refusal: Refusal<'_>,
        now: Instant,
        interval: Duration,
    ) -> (String, &'static str, &'static str) {
        let key = (refusal.peer.to_owned(), refusal.boundary, refusal.reason);
        if self.windows.len() < MAX_WINDOWS || self.windows.contains_key(&key) {
            return key;
        }
        self.windows
            .retain(|_, window| now.duration_since(window.logged_at) < interval);
        if self.windows.len() < MAX_WINDOWS {
            key
        } else {
            (MANY_PEERS.to_owned(), refusal.boundary, refusal.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn refusal(peer: &str) -> Refusal<'_> {
        Refusal {
            peer,
            boundary: "tls",
            reason: "untrusted_certificate",
            detail: "unknown issuer",
        }
    }

    #[test]
    fn a_flood_from_one_peer_logs_once_per_interval_and_counts_every_refusal() {
        let log = RefusalLog::new(MINUTE);
        let start = Instant::now();
        let logged: Vec<Option<u64>> = (0..200)
            .map(|second| log.record(refusal("10.0.0.9"), start + Duration::from_millis(second)))
            .collect();
        assert_eq!(logged[0], Some(0));
        assert!(logged[1..].iter().all(Option::is_none), "{logged:?}");
        assert_eq!(log.totals()[&("tls", "untrusted_certificate")], 200);

        // The next interval's first refusal is logged, with the repeats.
        assert_eq!(log.record(refusal("10.0.0.9"), start + MINUTE), Some(199));
        assert_eq!(
            log.record(refusal("10.0.0.9"), start + MINUTE + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn peers_boundaries_and_reasons_each_have_their_own_window() {
        let log = RefusalLog::new(MINUTE);
        let now = Instant::now();
        assert_eq!(log.record(refusal("10.0.0.9"), now), Some(0));
        assert_eq!(log.record(refusal("10.0.0.10"), now), Some(0));
        let other_reason = Refusal {
            reason: "no_certificate",
            ..refusal("10.0.0.9")
        };
        assert_eq!(log.record(other_reason, now), Some(0));
        let other_boundary = Refusal {
            boundary: "raft",
            ..refusal("10.0.0.9")
        };
        assert_eq!(log.record(other_boundary, now), Some(0));
        assert_eq!(log.record(refusal("10.0.0.9"), now), None);
        let totals = log.totals();
        assert_eq!(totals[&("tls", "untrusted_certificate")], 3);
        assert_eq!(totals[&("tls", "no_certificate")], 1);
        assert_eq!(totals[&("raft", "untrusted_certificate")], 1);
    }

    #[test]
    fn many_peers_share_one_window_once_the_table_is_full() {
        let log = RefusalLog::new(MINUTE);
        let now = Instant::now();
        let peers: Vec<String> = (0..MAX_WINDOWS + 50).map(|n| format!("peer-{n}")).collect();
        let lines = peers
            .iter()
            .filter(|peer| log.record(refusal(peer), now).is_some())
            .count();
        // One line per tracked peer, then one for all the rest.
        assert_eq!(lines, MAX_WINDOWS + 1);
        assert_eq!(
            log.totals()[&("tls", "untrusted_certificate")],
            peers.len() as u64
        );
        // Once the windows ran out, new peers get their own again.
        assert_eq!(log.record(refusal("late"), now + MINUTE), Some(0));
    }
}
