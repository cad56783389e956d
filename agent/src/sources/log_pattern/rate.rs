//! A rate limit that counts what it holds back: at most `per_minute`
//! items pass in any 60 s, and each item that passes says how many were
//! held back since the previous one. The latest held-back item is kept,
//! so when a storm ends it still goes out (with the count) once the limit
//! allows, even if nothing else matches: no count is silently lost.

use std::collections::VecDeque;

const WINDOW_MS: u64 = 60_000;

#[derive(Debug)]
pub struct RateLimiter<T> {
    per_minute: usize,
    /// When the items that passed within the last window passed (ms).
    passed: VecDeque<u64>,
    /// The latest item held back, not yet sent.
    pending: Option<T>,
    /// Items held back and replaced by a later one: never sent.
    dropped: u64,
}

impl<T> RateLimiter<T> {
    /// A limit of 0 counts as 1.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1) as usize;
        Self {
            per_minute,
            passed: VecDeque::with_capacity(per_minute.min(1024)),
            pending: None,
            dropped: 0,
        }
    }

    /// Offers `item` at `now_ms` (a monotonic clock). Returns it with the
    /// number of items held back before it, or holds it back.
    pub fn offer(&mut self, now_ms: u64, item: T) -> Option<(T, u64)> {
        if self.admit(now_ms) {
            let suppressed = self.dropped + u64::from(self.pending.take().is_some());
            self.dropped = 0;
            Some((item, suppressed))
        } else {
            if self.pending.replace(item).is_some() {
                self.dropped += 1;
            }
            None
        }
    }

    /// The held-back item, with the number held back before it, once the
    /// limit allows one more.
    pub fn flush(&mut self, now_ms: u64) -> Option<(T, u64)> {
        if self.pending.is_none() || !self.admit(now_ms) {
            return None;
        }
        let suppressed = std::mem::take(&mut self.dropped);
        self.pending.take().map(|item| (item, suppressed))
    }

    fn admit(&mut self, now_ms: u64) -> bool {
        while self
            .passed
            .front()
            .is_some_and(|at| now_ms.saturating_sub(*at) >= WINDOW_MS)
        {
            self.passed.pop_front();
        }
        if self.passed.len() < self.per_minute {
            self.passed.push_back(now_ms);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_limit_everything_passes_with_nothing_suppressed() {
        let mut limiter = RateLimiter::new(3);
        for n in 0..3 {
            assert_eq!(limiter.offer(n, n), Some((n, 0)));
        }
        assert_eq!(limiter.flush(10), None);
    }

    #[test]
    fn a_storm_is_bounded_and_the_next_event_carries_the_count() {
        let mut limiter = RateLimiter::new(2);
        let passed: Vec<_> = (0..1_000).filter_map(|n| limiter.offer(n, n)).collect();
        assert_eq!(passed, [(0, 0), (1, 0)]);
        // A minute after the first, one more may pass: the last item, 999,
        // saying that 997 (items 2 to 998) were held back.
        assert_eq!(limiter.flush(59_999), None, "not a full minute yet");
        assert_eq!(limiter.flush(60_000), Some((999, 997)));
        assert_eq!(limiter.flush(60_001), None, "nothing left to send");
        // The next match after the storm is sent and owes no count.
        assert_eq!(limiter.offer(60_001, 5_000), Some((5_000, 0)));
        assert_eq!(limiter.offer(60_002, 5_001), None);
    }

    #[test]
    fn a_new_item_passing_counts_the_pending_one_as_suppressed() {
        let mut limiter = RateLimiter::new(1);
        assert_eq!(limiter.offer(0, "a"), Some(("a", 0)));
        assert_eq!(limiter.offer(1, "b"), None);
        assert_eq!(limiter.offer(2, "c"), None);
        // "b" and "c" never get their own event; "d" says so.
        assert_eq!(limiter.offer(60_000, "d"), Some(("d", 2)));
        assert_eq!(limiter.flush(200_000), None);
    }

    #[test]
    fn every_item_is_sent_or_counted_exactly_once() {
        let mut limiter = RateLimiter::new(5);
        let (mut sent, mut counted) = (0u64, 0u64);
        for n in 0..10_000u64 {
            // 10 items a second for 1000 s, flushed between them.
            let now = n * 100;
            for (_, suppressed) in [limiter.offer(now, n), limiter.flush(now + 50)]
                .into_iter()
                .flatten()
            {
                sent += 1;
                counted += suppressed;
            }
        }
        if let Some((_, suppressed)) = limiter.flush(u64::MAX) {
            sent += 1;
            counted += suppressed;
        }
        assert_eq!(sent + counted, 10_000);
        // 5 a minute over 1000 s and the final flush.
        assert!(sent <= 5 * 17 + 1, "{sent}");
    }
}
