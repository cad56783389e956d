//! The pure core of metric thresholds: samples in, at most one event per
//! crossing out. A value must stay past the limit for `sustained_ms`
//! before the threshold fires, and must come back past `clear` before it
//! can fire again (hysteresis), so a noisy signal makes one event.

use levee_common::agent_config::MetricThreshold;

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Exceeded { value: f64, limit: f64 },
    Cleared { value: f64, clear: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Within limits; `since` is when the value first went past the limit
    /// in the current run of samples, if it has.
    Normal {
        since: Option<i64>,
    },
    Exceeded,
}

#[derive(Debug, Clone)]
pub struct Detector {
    above: bool,
    limit: f64,
    clear: f64,
    sustained_ms: i64,
    state: State,
}

impl Detector {
    pub fn new(threshold: &MetricThreshold) -> Self {
        let (above, limit) = match (threshold.above, threshold.below) {
            (Some(limit), _) => (true, limit),
            (None, Some(limit)) => (false, limit),
            (None, None) => (true, f64::INFINITY),
        };
        Self {
            above,
            limit,
            clear: threshold.clear.unwrap_or(limit),
            sustained_ms: threshold.sustained_ms as i64,
            state: State::Normal { since: None },
        }
    }

    fn past(&self, value: f64) -> bool {
        if self.above {
            value > self.limit
        } else {
            value < self.limit
        }
    }

    fn back(&self, value: f64) -> bool {
        if self.above {
            value <= self.clear
        } else {
            value >= self.clear
        }
    }

    /// Feeds one sample taken at `at_ms`.
    pub fn observe(&mut self, at_ms: i64, value: f64) -> Option<Transition> {
        match self.state {
            State::Normal { since } if self.past(value) => {
                let since = since.unwrap_or(at_ms);
                if at_ms - since >= self.sustained_ms {
                    self.state = State::Exceeded;
                    Some(Transition::Exceeded {
                        value,
                        limit: self.limit,
                    })
                } else {
                    self.state = State::Normal { since: Some(since) };
                    None
                }
            }
            State::Normal { .. } => {
                self.state = State::Normal { since: None };
                None
            }
            State::Exceeded if self.back(value) => {
                self.state = State::Normal { since: None };
                Some(Transition::Cleared {
                    value,
                    clear: self.clear,
                })
            }
            State::Exceeded => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use levee_common::agent_config::Metric;

    use super::*;

    fn detector(above: f64, clear: f64, sustained_ms: u64) -> Detector {
        Detector::new(&MetricThreshold {
            name: "busy".into(),
            metric: Metric::Cpu,
            above: Some(above),
            below: None,
            clear: Some(clear),
            sustained_ms,
            interval_ms: 1_000,
            path: None,
        })
    }

    #[test]
    fn a_noisy_signal_fires_once_and_clears_once() {
        let mut busy = detector(80.0, 60.0, 3_000);
        let samples = [
            50.0, 85.0, 90.0, 70.0, 85.0, 86.0, 88.0, 95.0, 79.0, 81.0, 75.0, 59.0, 85.0,
        ];
        let transitions: Vec<(usize, Transition)> = samples
            .iter()
            .enumerate()
            .filter_map(|(n, value)| busy.observe(n as i64 * 1_000, *value).map(|t| (n, t)))
            .collect();
        assert_eq!(
            transitions,
            [
                // 85 at 4 s, held through 7 s: sustained 3 s (the dip to 70
                // at 3 s restarted the clock).
                (
                    7,
                    Transition::Exceeded {
                        value: 95.0,
                        limit: 80.0
                    }
                ),
                // 79, 81, 75 hover around the limit: no new events until 59.
                (
                    11,
                    Transition::Cleared {
                        value: 59.0,
                        clear: 60.0
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_below_threshold_works_the_same_way_round() {
        let mut free = Detector::new(&MetricThreshold {
            name: "low-disk".into(),
            metric: Metric::Disk,
            above: None,
            below: Some(10.0),
            clear: Some(15.0),
            sustained_ms: 0,
            interval_ms: 1_000,
            path: Some("/".into()),
        });
        assert_eq!(free.observe(0, 12.0), None);
        assert_eq!(
            free.observe(1, 9.0),
            Some(Transition::Exceeded {
                value: 9.0,
                limit: 10.0
            })
        );
        assert_eq!(free.observe(2, 12.0), None, "not yet back past clear");
        assert_eq!(
            free.observe(3, 16.0),
            Some(Transition::Cleared {
                value: 16.0,
                clear: 15.0
            })
        );
    }
}
