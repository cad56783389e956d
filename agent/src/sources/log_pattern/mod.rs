//! Log lines as events: one task per `[[log_pattern]]` follows its file
//! ([`follow`]), splits complete lines ([`lines`]), matches them and builds
//! the event from the regex's captures ([`capture`]) and sends matches
//! through a rate limit that counts what it holds back ([`rate`]), into the
//! outbox.

pub mod capture;
pub mod follow;
pub mod lines;
pub mod rate;
pub mod rotation;

use std::time::Duration;

use levee_common::agent_config::AgentConfig;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::capture::{Matcher, MatcherError};
use self::follow::{Change, Follower};
use self::rate::RateLimiter;
use super::{Source, SourceContext, SourceError, SourceRun};

/// Most bytes read from the file in one poll; a bigger backlog is read in
/// steps, without waiting for the next poll.
const READ_BUDGET: usize = 1 << 20;

/// One `[[log_pattern]]`, its regex compiled.
pub struct LogPatternSource {
    pub matcher: Matcher,
}

/// One source per `[[log_pattern]]`; fails on the first regex that does
/// not compile, which is how the config's regexes are checked at load.
pub fn from_config(config: &AgentConfig) -> Result<Vec<Box<dyn Source>>, SourceError> {
    Ok(Matcher::compile_all(&config.log_patterns)?
        .into_iter()
        .map(|matcher| Box::new(LogPatternSource { matcher }) as Box<dyn Source>)
        .collect())
}

impl Source for LogPatternSource {
    fn run(self: Box<Self>, context: SourceContext, shutdown: CancellationToken) -> SourceRun {
        Box::pin(run(self.matcher, context, shutdown))
    }
}

/// Follows `pattern`'s file until `shutdown`, appending an event per
/// matching line, within the pattern's rate limit.
async fn run(pattern: Matcher, context: SourceContext, shutdown: CancellationToken) {
    let config = &pattern.config;
    let poll = Duration::from_millis(config.poll_ms.max(1));
    let mut follower = Follower::new(&config.path);
    let mut limiter = RateLimiter::new(config.max_events_per_minute);
    // The limit's window runs on a monotonic clock.
    let started = Instant::now();
    let mut last_error = None;
    info!(pattern = %config.name, path = %config.path.display(), "watching a log file");
    loop {
        let mut lines = Vec::new();
        let more = match follower.poll(READ_BUDGET, &mut lines) {
            Ok(progress) => {
                last_error = None;
                if let Some(change) = progress.change {
                    log_change(&pattern, change);
                }
                progress.more
            }
            Err(err) => {
                // Once per distinct problem, not once per poll.
                let message = err.to_string();
                if last_error.as_ref() != Some(&message) {
                    warn!(pattern = %config.name, error = %message, "cannot follow the log file");
                    last_error = Some(message);
                }
                false
            }
        };
        let at_ms = started.elapsed().as_millis() as u64;
        for line in lines {
            let Some(found) = pattern.matches(&line) else {
                continue;
            };
            if let Some((found, suppressed)) = limiter.offer(at_ms, found) {
                record(&pattern, &context, pattern.event_data(found, suppressed)).await;
            }
        }
        if let Some((found, suppressed)) = limiter.flush(at_ms) {
            record(&pattern, &context, pattern.event_data(found, suppressed)).await;
        }
        if shutdown.is_cancelled() {
            break;
        }
        if more {
            // A backlog: on at once, but let other tasks run between steps.
            tokio::task::yield_now().await;
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}

fn log_change(pattern: &Matcher, change: Change) {
    let (name, path) = (&pattern.config.name, pattern.config.path.display());
    match change {
        Change::Opened { offset } => {
            info!(pattern = %name, path = %path, offset, "following a log file")
        }
        Change::Truncated => {
            info!(pattern = %name, path = %path, "the log file was truncated; reading it from the start")
        }
        Change::Rotated => {
            info!(pattern = %name, path = %path, "the log file was rotated; following the new one")
        }
    }
}

async fn record(pattern: &Matcher, context: &SourceContext, data: serde_json::Value) {
    let config = &pattern.config;
    if let Err(err) = context.record(&config.event_type, &config.name, data).await {
        warn!(pattern = %pattern.config.name, error = %err, "could not record a log event");
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use levee_common::agent_config::LogPattern;
    use levee_common::event::types::LOG_MATCHED;

    use super::*;
    use crate::outbox::Outbox;
    use crate::sources::validate;
    use crate::testing::{PATIENCE, append, events, fixture, wait_until};

    fn errors(path: PathBuf) -> Matcher {
        Matcher::compile(&LogPattern {
            name: "errors".into(),
            path,
            regex: r"^ERROR code=(?P<code>\d+)".into(),
            event_type: LOG_MATCHED.into(),
            max_events_per_minute: 1_000,
            poll_ms: 10,
        })
        .unwrap()
    }

    /// The `code` captured by each event so far.
    fn codes(outbox: &Outbox) -> Vec<String> {
        events(outbox, LOG_MATCHED)
            .into_iter()
            .map(|(subject, data)| {
                assert_eq!(subject, "errors");
                data["captures"]["code"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn matching_lines_become_events_across_rotation_and_truncation() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "ERROR code=1 (history, not replayed)\n");
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            errors(log.clone()),
            fixture.source_context(),
            stop.clone(),
        ));
        // Following starts asynchronously: write until a line is seen.
        wait_until("the first line to be seen", || {
            append(&log, "ERROR code=0\n");
            !codes(&fixture.outbox).is_empty()
        })
        .await;
        // Lines after the marker lines: one more marker may still come.
        let after = |outbox: &Outbox| -> Vec<String> {
            codes(outbox)
                .into_iter()
                .filter(|code| code != "0")
                .collect()
        };
        append(&log, "INFO code=2 fine\nERROR code=3\n");
        wait_until("code 3", || after(&fixture.outbox).len() == 1).await;
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(&log, "ERROR code=4\n");
        wait_until("code 4, from the new file", || {
            after(&fixture.outbox).len() == 2
        })
        .await;
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        append(&log, "ERROR code=5\n");
        wait_until("code 5, after truncation", || {
            after(&fixture.outbox).len() == 3
        })
        .await;
        stop.cancel();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the task to stop")
            .unwrap();

        assert_eq!(after(&fixture.outbox), ["3", "4", "5"]);
        let (_, data) = events(&fixture.outbox, LOG_MATCHED).pop().unwrap();
        assert_eq!(data["line"], "ERROR code=5");
        assert_eq!(data["path"], log.display().to_string());
        assert_eq!(data["pattern"], "errors");
        assert!(data.get("suppressed").is_none(), "{data}");
    }

    #[test]
    fn a_bad_regex_is_a_config_error_naming_the_entry() {
        let mut config = fixture().config;
        config.log_patterns.push(LogPattern {
            name: "broken".into(),
            path: "/var/log/a".into(),
            regex: "a{2,1}".into(),
            event_type: LOG_MATCHED.into(),
            max_events_per_minute: 60,
            poll_ms: 250,
        });
        let err = validate(&config, Path::new("/etc/levee/agent.toml")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(
                "/etc/levee/agent.toml: log_pattern `broken`: `regex` does not compile"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_example_configs_patterns_compile() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/agent.toml");
        let config = AgentConfig::load(&path).unwrap();
        validate(&config, &path).unwrap();
    }
}
