//! Exponential backoff with full jitter, so a fleet of agents that lost
//! their controller does not reconnect in lockstep.

use std::time::Duration;

pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
        }
    }

    /// The next delay: uniformly random in [min, current], then current
    /// doubles up to max.
    pub fn next_delay(&mut self) -> Duration {
        let span = self.current.saturating_sub(self.min).as_millis() as u64;
        let delay = self.min + Duration::from_millis(fastrand::u64(0..=span));
        self.current = (self.current * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_bounds_and_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut backoff = Backoff::new(min, max);
        let mut ceiling = min;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= min && delay <= ceiling.min(max),
                "{delay:?} outside [{min:?}, {ceiling:?}]"
            );
            ceiling *= 2;
        }
        backoff.reset();
        assert_eq!(backoff.next_delay(), min);
    }
}
