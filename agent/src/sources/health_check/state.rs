//! The pure core of `[[check]]`s: probe results in, at most one event per
//! change of state out. A check is failing after `unhealthy_threshold`
//! failures in a row and healthy again after `healthy_threshold` passes in
//! a row; a flapping probe below either threshold changes nothing.

/// A change of state, to be reported as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The check became failing; `error` is the last probe's failure.
    Failed { failures: u32, error: String },
    /// The check passes again after `failures` failed probes over
    /// `failing_ms`.
    Recovered { failures: u32, failing_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Failures in a row so far. A new check starts here: passing from the
    /// start is not news, failing from the start is.
    Healthy { failures: u32 },
    /// Since when (ms), failed probes in all, passes in a row so far.
    Failing {
        since_ms: i64,
        failures: u32,
        passes: u32,
    },
}

#[derive(Debug, Clone)]
pub struct CheckState {
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    state: State,
}

impl CheckState {
    /// Thresholds below 1 count as 1.
    pub fn new(unhealthy_threshold: u32, healthy_threshold: u32) -> Self {
        Self {
            unhealthy_threshold: unhealthy_threshold.max(1),
            healthy_threshold: healthy_threshold.max(1),
            state: State::Healthy { failures: 0 },
        }
    }

    pub fn is_failing(&self) -> bool {
        matches!(self.state, State::Failing { .. })
    }

    /// Feeds one probe's result, finished at `at_ms`.
    pub fn observe(&mut self, at_ms: i64, result: Result<(), String>) -> Option<Transition> {
        match (&mut self.state, result) {
            (State::Healthy { failures }, Ok(())) => {
                *failures = 0;
                None
            }
            (State::Healthy { failures }, Err(error)) => {
                *failures += 1;
                if *failures < self.unhealthy_threshold {
                    return None;
                }
                let failures = *failures;
                self.state = State::Failing {
                    since_ms: at_ms,
                    failures,
                    passes: 0,
                };
                Some(Transition::Failed { failures, error })
            }
            (
                State::Failing {
                    failures, passes, ..
                },
                Err(_),
            ) => {
                *failures += 1;
                *passes = 0;
                None
            }
            (
                State::Failing {
                    since_ms,
                    failures,
                    passes,
                },
                Ok(()),
            ) => {
                *passes += 1;
                if *passes < self.healthy_threshold {
                    return None;
                }
                let transition = Transition::Recovered {
                    failures: *failures,
                    failing_ms: at_ms - *since_ms,
                };
                self.state = State::Healthy { failures: 0 };
                Some(transition)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: Result<(), &str> = Ok(());
    const FAIL: Result<(), &str> = Err("refused");

    /// The transitions of feeding `results`, one per 1000 ms, with the
    /// index of the probe that caused each.
    fn run(state: &mut CheckState, results: &[Result<(), &str>]) -> Vec<(usize, Transition)> {
        results
            .iter()
            .enumerate()
            .filter_map(|(n, result)| {
                let result = result.map_err(str::to_owned);
                state.observe(n as i64 * 1_000, result).map(|t| (n, t))
            })
            .collect()
    }

    #[test]
    fn starting_healthy_says_nothing_and_a_short_blip_says_nothing() {
        let mut check = CheckState::new(3, 1);
        assert_eq!(run(&mut check, &[PASS, PASS, FAIL, FAIL, PASS, FAIL]), []);
        assert!(!check.is_failing());
    }

    #[test]
    fn starting_failing_is_one_failed_event_after_the_threshold() {
        let mut check = CheckState::new(3, 1);
        let failed = Transition::Failed {
            failures: 3,
            error: "refused".into(),
        };
        assert_eq!(run(&mut check, &[FAIL; 10]), [(2, failed)]);
        assert!(check.is_failing());
    }

    #[test]
    fn one_event_per_transition_never_per_probe() {
        let mut check = CheckState::new(2, 2);
        let results = [
            PASS, FAIL, FAIL, FAIL, FAIL, // failing at probe 2
            PASS, FAIL, // one pass is not enough to recover
            PASS, PASS, // recovered at probe 8
            PASS, FAIL, PASS, FAIL, FAIL, // failing again at probe 13
        ];
        assert_eq!(
            run(&mut check, &results),
            [
                (
                    2,
                    Transition::Failed {
                        failures: 2,
                        error: "refused".into()
                    }
                ),
                (
                    8,
                    Transition::Recovered {
                        failures: 5,
                        failing_ms: 6_000
                    }
                ),
                (
                    13,
                    Transition::Failed {
                        failures: 2,
                        error: "refused".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_failed_event_carries_the_last_error() {
        let mut check = CheckState::new(2, 1);
        assert_eq!(check.observe(0, Err("timeout".into())), None);
        assert_eq!(
            check.observe(1, Err("status 503".into())),
            Some(Transition::Failed {
                failures: 2,
                error: "status 503".into()
            })
        );
    }

    #[test]
    fn zero_thresholds_count_as_one() {
        let mut check = CheckState::new(0, 0);
        assert!(matches!(
            check.observe(0, Err("x".into())),
            Some(Transition::Failed { failures: 1, .. })
        ));
        assert!(matches!(
            check.observe(5, Ok(())),
            Some(Transition::Recovered {
                failures: 1,
                failing_ms: 5
            })
        ));
    }
}
