//! The `Timer` kind: a cron schedule, in UTC, on which the controllers
//! raise `timer.fired` events for rules to act on (scale up before the
//! morning rush, down at night).

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimerSpec {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Five fields (minute hour day month weekday) or six, with seconds
    /// first; in UTC.
    pub cron: String,
    /// Put in each event's data, beside `timer` and `scheduled`.
    #[serde(default)]
    pub data: serde_json::Value,
}

fn parse(cron: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(cron)
        .map_err(|err| format!("`cron` {cron:?}: {err}"))
}

impl TimerSpec {
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        match parse(&self.cron) {
            Ok(_) => Vec::new(),
            Err(err) => vec![("cron", format!("timer `{}`: {err}", self.name))],
        }
    }

    /// The latest scheduled time in `(after_ms, now_ms]`, if any: what is
    /// due now. Missed earlier times are not made up for (one event, not
    /// a burst, after an outage).
    pub fn due(&self, after_ms: i64, now_ms: i64) -> Option<i64> {
        let cron = parse(&self.cron).ok()?;
        let now = DateTime::<Utc>::from_timestamp_millis(now_ms)?;
        let latest = cron.find_previous_occurrence(&now, true).ok()?;
        let latest_ms = latest.timestamp_millis();
        (latest_ms > after_ms).then_some(latest_ms)
    }

    /// The first scheduled time after `now_ms`: when to look again.
    pub fn next_after(&self, now_ms: i64) -> Option<i64> {
        let cron = parse(&self.cron).ok()?;
        let now = DateTime::<Utc>::from_timestamp_millis(now_ms)?;
        let next = cron.find_next_occurrence(&now, false).ok()?;
        Some(next.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(cron: &str) -> TimerSpec {
        TimerSpec {
            kind: "Timer".into(),
            name: "t".into(),
            description: None,
            cron: cron.into(),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_latest_due_time_fires_once_and_missed_ones_are_not_replayed() {
        let every_five_minutes = timer("*/5 * * * *");
        let minute = 60_000;
        // 00:07: 00:05 is due after 00:02.
        assert_eq!(
            every_five_minutes.due(2 * minute, 7 * minute),
            Some(5 * minute)
        );
        // Already fired at 00:05: nothing until 00:10.
        assert_eq!(every_five_minutes.due(5 * minute, 9 * minute), None);
        // An outage from 00:05 to 00:31: one event, for 00:30.
        assert_eq!(
            every_five_minutes.due(5 * minute, 31 * minute),
            Some(30 * minute)
        );
        let with_seconds = timer("*/10 * * * * *");
        assert_eq!(with_seconds.due(0, 25_000), Some(20_000));
        assert!(!timer("61 * * * *").problems().is_empty());
    }

    #[test]
    fn the_next_time_is_strictly_after_now() {
        let every_five_minutes = timer("*/5 * * * *");
        let minute = 60_000;
        assert_eq!(every_five_minutes.next_after(7 * minute), Some(10 * minute));
        assert_eq!(
            every_five_minutes.next_after(10 * minute),
            Some(15 * minute)
        );
        assert_eq!(timer("not a cron").next_after(0), None);
    }
}
