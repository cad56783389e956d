//! How old a signed request may be: the replay window. A request says when
//! it was sent (a signed webhook's `x-levee-timestamp`, an SNS message's
//! `Timestamp`); the receiving controller refuses it if that time is more
//! than the endpoint's window behind its own clock, or more than
//! [`MAX_AHEAD_S`] (or the window, if shorter) ahead of it.
//!
//! The window only bounds how long a captured request stays usable; a
//! replay inside it is caught by deduplication, which remembers ids for
//! longer than the longest window (`state::inbound::INBOUND_DEDUP_MS`).
//! Pure: the caller passes its clock.

use std::fmt;

use thiserror::Error;

use crate::state::inbound::INBOUND_DEDUP_MS;

/// The header in which a signed request says when it was signed, in Unix
/// seconds (`signing`).
pub const TIMESTAMP_HEADER: &str = "x-levee-timestamp";
/// The replay window unless an endpoint sets `replay_window_s`.
pub const DEFAULT_REPLAY_WINDOW_S: u64 = 300;
/// The longest window an endpoint may set: ids are remembered for
/// `INBOUND_DEDUP_MS`, which must outlast any replay a window admits.
pub const MAX_REPLAY_WINDOW_S: u64 = 900;
/// How far ahead of the receiving controller's clock a request may say it
/// was sent: the senders' and controllers' clocks differ a little.
pub const MAX_AHEAD_S: u64 = 60;
/// How far apart the controllers' clocks may be for deduplication to
/// cover every replay a window admits: the request is checked against the
/// receiving controller's clock, ids expire by the leader's.
pub const MAX_CONTROLLER_SKEW_S: u64 = 120;

// A request signed at `t` is fresh until `t + window` on the receiver's
// clock, and `t` may be `MAX_AHEAD_S` past the clock of the receiver that
// first accepted it: its id must be remembered that long, plus twice the
// skew between the clocks that check and those that expire.
const _: () = assert!(
    ((MAX_REPLAY_WINDOW_S + MAX_AHEAD_S + 2 * MAX_CONTROLLER_SKEW_S) * 1000) as i64
        <= INBOUND_DEDUP_MS
);

/// How far behind and ahead of the receiver's clock a request's time may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    behind_s: u64,
    ahead_s: u64,
}

impl ReplayWindow {
    /// A window of `seconds` (1 to [`MAX_REPLAY_WINDOW_S`]; config
    /// validation says so first, and this clamps).
    pub fn of(seconds: u64) -> Self {
        let behind_s = seconds.clamp(1, MAX_REPLAY_WINDOW_S);
        Self {
            behind_s,
            ahead_s: behind_s.min(MAX_AHEAD_S),
        }
    }

    pub fn seconds(&self) -> u64 {
        self.behind_s
    }

    /// Admits a request sent at `sent_unix_s` (its own claim) if the
    /// receiver's clock, `now_ms`, is within the window of it. Whole
    /// seconds on both sides, so the edges are exact: a request exactly
    /// `window` seconds old is admitted, one a second older is not.
    pub fn check(&self, what: Sent, sent_unix_s: i64, now_ms: i64) -> Result<(), Stale> {
        let now_s = now_ms.div_euclid(1000);
        let age_s = now_s.saturating_sub(sent_unix_s);
        if age_s > 0 && age_s.unsigned_abs() > self.behind_s {
            return Err(Stale::TooOld {
                what,
                age_s: age_s.unsigned_abs(),
                window_s: self.behind_s,
            });
        }
        if age_s < 0 && age_s.unsigned_abs() > self.ahead_s {
            return Err(Stale::Ahead {
                what,
                ahead_s: age_s.unsigned_abs(),
                allowed_s: self.ahead_s,
            });
        }
        Ok(())
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::of(DEFAULT_REPLAY_WINDOW_S)
    }
}

/// Where a request says when it was sent, to name it in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A signed webhook's `x-levee-timestamp`.
    SignedAt,
    /// An SNS message's `Timestamp` (when SNS published it; it stays the
    /// same on SNS's retries).
    SnsTimestamp,
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SignedAt => write!(
                f,
                "header `{TIMESTAMP_HEADER}` (when the request was signed)"
            ),
            Self::SnsTimestamp => f.write_str("the SNS message's `Timestamp`"),
        }
    }
}

/// A request outside its endpoint's replay window (answer 401: sent again
/// unchanged it can only be older).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Stale {
    #[error(
        "request too old: {what} is {age_s} s behind this controller's clock, outside the \
         endpoint's replay window of {window_s} s (`replay_window_s`); sign every delivery, \
         retries too, with the current time"
    )]
    TooOld {
        what: Sent,
        age_s: u64,
        window_s: u64,
    },
    #[error(
        "request from the future: {what} is {ahead_s} s ahead of this controller's clock, \
         more than the {allowed_s} s allowed; check the sender's clock"
    )]
    Ahead {
        what: Sent,
        ahead_s: u64,
        allowed_s: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: i64 = 1_800_000_000;

    fn check(window: ReplayWindow, sent_s: i64, now_ms: i64) -> Result<(), Stale> {
        window.check(Sent::SignedAt, sent_s, now_ms)
    }

    #[test]
    fn the_window_edges_are_exact_in_whole_seconds() {
        let window = ReplayWindow::of(300);
        // Anywhere within the receiver's current second counts as that second.
        for now_ms in [NOW_S * 1000, NOW_S * 1000 + 999] {
            assert_eq!(check(window, NOW_S, now_ms), Ok(()));
            assert_eq!(
                check(window, NOW_S - 300, now_ms),
                Ok(()),
                "exactly 300 s old"
            );
            assert_eq!(
                check(window, NOW_S - 301, now_ms),
                Err(Stale::TooOld {
                    what: Sent::SignedAt,
                    age_s: 301,
                    window_s: 300
                })
            );
            assert_eq!(check(window, NOW_S + 60, now_ms), Ok(()), "60 s ahead");
            assert_eq!(
                check(window, NOW_S + 61, now_ms),
                Err(Stale::Ahead {
                    what: Sent::SignedAt,
                    ahead_s: 61,
                    allowed_s: 60
                })
            );
        }
    }

    #[test]
    fn a_short_window_also_shortens_how_far_ahead_a_request_may_be() {
        let window = ReplayWindow::of(10);
        assert_eq!(check(window, NOW_S + 10, NOW_S * 1000), Ok(()));
        assert!(matches!(
            check(window, NOW_S + 11, NOW_S * 1000),
            Err(Stale::Ahead { allowed_s: 10, .. })
        ));
        assert!(matches!(
            check(window, NOW_S - 11, NOW_S * 1000),
            Err(Stale::TooOld { window_s: 10, .. })
        ));
    }

    #[test]
    fn windows_are_clamped_to_what_deduplication_covers() {
        assert_eq!(ReplayWindow::of(0).seconds(), 1);
        assert_eq!(ReplayWindow::of(86_400).seconds(), MAX_REPLAY_WINDOW_S);
        assert_eq!(ReplayWindow::default().seconds(), 300);
    }

    #[test]
    fn absurd_times_are_refused_without_overflow() {
        let window = ReplayWindow::default();
        assert!(matches!(
            check(window, i64::MIN, NOW_S * 1000),
            Err(Stale::TooOld { .. })
        ));
        assert!(matches!(
            check(window, i64::MAX, NOW_S * 1000),
            Err(Stale::Ahead { .. })
        ));
        assert!(matches!(
            check(window, 0, NOW_S * 1000),
            Err(Stale::TooOld { .. })
        ));
    }

    #[test]
    fn messages_name_the_window_and_the_header() {
        let too_old = check(ReplayWindow::of(300), NOW_S - 412, NOW_S * 1000).unwrap_err();
        assert_eq!(
            too_old.to_string(),
            "request too old: header `x-levee-timestamp` (when the request was signed) is 412 s \
             behind this controller's clock, outside the endpoint's replay window of 300 s \
             (`replay_window_s`); sign every delivery, retries too, with the current time"
        );
        let sns = ReplayWindow::of(300)
            .check(Sent::SnsTimestamp, NOW_S + 3600, NOW_S * 1000)
            .unwrap_err();
        assert_eq!(
            sns.to_string(),
            "request from the future: the SNS message's `Timestamp` is 3600 s ahead of this \
             controller's clock, more than the 60 s allowed; check the sender's clock"
        );
    }
}
