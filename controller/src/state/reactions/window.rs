//! Rule windows: matching events gathered over time, per key, until a
//! count or an average says to act. Pure: samples and times in, a
//! decision out.

use std::collections::VecDeque;

use levee_common::spec::{Window, WindowScope};
use serde_json::Value;

use crate::state::records::AgentRecord;

/// Where the window stands after one more event.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// The condition holds: act. Says what held, e.g. `5 events in 60000 ms`.
    Ready(String),
    /// Not yet: what the window holds so far.
    Gathering(String),
}

/// The key of the window an event falls in, or why it falls in none.
pub fn key(window: &Window, agent: Option<&AgentRecord>) -> Result<String, String> {
    match &window.per {
        WindowScope::All => Ok("*".into()),
        WindowScope::Agent => agent
            .map(|agent| agent.agent_id.to_string())
            .ok_or_else(|| "the event names no agent for a per-agent window".into()),
        WindowScope::Label(label) => agent
            .and_then(|agent| agent.labels.get(label))
            .cloned()
            .ok_or_else(|| format!("the event's agent has no label `{label}` for its window")),
    }
}

/// The value at a dotted path (`data.load`) of an event document.
pub fn field<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(document, |value, part| value.get(part))
}

/// Adds one event (with its `document`) at `at_ms` to `samples`, drops
/// samples older than the window, and says whether to act. A missing or
/// non-numeric field is an error, never a zero.
pub fn observe(
    window: &Window,
    samples: &mut VecDeque<(i64, f64)>,
    document: &Value,
    at_ms: i64,
) -> Result<Progress, String> {
    let value = match &window.average {
        Some(path) => field(document, path)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("`{path}` is missing or not a number in this event"))?,
        None => 1.0,
    };
    samples.push_back((at_ms, value));
    let since = at_ms.saturating_sub(window.within_ms as i64);
    while samples.front().is_some_and(|(time, _)| *time <= since) {
        samples.pop_front();
    }
    let within = window.within_ms;
    let n = samples.len();
    if let Some(count) = window.count {
        return Ok(if n >= count as usize {
            Progress::Ready(format!("{n} events in {within} ms"))
        } else {
            Progress::Gathering(format!("{n} of {count} events in {within} ms"))
        });
    }
    let average = samples.iter().map(|(_, value)| value).sum::<f64>() / n as f64;
    let (held, bound) = match (window.above, window.below) {
        (Some(above), _) => (average > above, format!("above {above}")),
        (None, Some(below)) => (average < below, format!("below {below}")),
        (None, None) => (false, "with no bound".into()),
    };
    let summary = format!("average {average:.3} over {n} samples in {within} ms");
    Ok(if held && n >= window.min_samples.max(1) as usize {
        Progress::Ready(format!("{summary}, {bound}"))
    } else {
        Progress::Gathering(format!(
            "{summary}, not {bound} over {} samples",
            window.min_samples.max(1)
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn count(count: u32, within_ms: u64) -> Window {
        Window {
            count: Some(count),
            average: None,
            above: None,
            below: None,
            min_samples: 1,
            within_ms,
            per: WindowScope::All,
        }
    }

    fn average_above(above: f64, min_samples: u32, within_ms: u64) -> Window {
        Window {
            count: None,
            average: Some("data.load".into()),
            above: Some(above),
            min_samples,
            ..count(1, within_ms)
        }
    }

    #[test]
    fn a_count_window_acts_on_the_nth_event_within_its_time() {
        let window = count(3, 1000);
        let mut samples = VecDeque::new();
        let doc = json!({});
        assert!(matches!(
            observe(&window, &mut samples, &doc, 0),
            Ok(Progress::Gathering(_))
        ));
        assert!(matches!(
            observe(&window, &mut samples, &doc, 500),
            Ok(Progress::Gathering(_))
        ));
        assert_eq!(
            observe(&window, &mut samples, &doc, 900),
            Ok(Progress::Ready("3 events in 1000 ms".into()))
        );
    }

    #[test]
    fn events_older_than_the_window_do_not_count() {
        let window = count(3, 1000);
        let mut samples = VecDeque::new();
        let doc = json!({});
        for at in [0, 100, 1200] {
            let progress = observe(&window, &mut samples, &doc, at).unwrap();
            assert!(
                matches!(progress, Progress::Gathering(_)),
                "{at}: {progress:?}"
            );
        }
        assert_eq!(samples.len(), 1, "only the event at 1200 is within 1000 ms");
    }

    #[test]
    fn an_average_acts_only_with_enough_samples_over_the_bound() {
        let window = average_above(0.8, 3, 10_000);
        let mut samples = VecDeque::new();
        let at = |load: f64| json!({ "data": { "load": load } });
        // One spike is not a trend.
        assert!(matches!(
            observe(&window, &mut samples, &at(5.0), 0),
            Ok(Progress::Gathering(_))
        ));
        assert!(matches!(
            observe(&window, &mut samples, &at(0.1), 1),
            Ok(Progress::Gathering(_))
        ));
        // 5.0, 0.1, 0.1 average 1.73 over 3 samples: above 0.8.
        match observe(&window, &mut samples, &at(0.1), 2).unwrap() {
            Progress::Ready(why) => assert!(why.contains("average 1.733 over 3 samples"), "{why}"),
            other => panic!("expected to act, got {other:?}"),
        }
        // Low readings bring it under.
        let mut samples = VecDeque::new();
        for (i, load) in [0.5, 0.6, 0.7].into_iter().enumerate() {
            let progress = observe(&window, &mut samples, &at(load), i as i64).unwrap();
            assert!(matches!(progress, Progress::Gathering(_)), "{progress:?}");
        }
    }

    #[test]
    fn a_missing_or_non_numeric_field_is_an_error_not_a_zero() {
        let window = average_above(0.8, 1, 1000);
        let mut samples = VecDeque::new();
        let missing = observe(&window, &mut samples, &json!({ "data": {} }), 0).unwrap_err();
        assert!(
            missing.contains("`data.load` is missing or not a number"),
            "{missing}"
        );
        let text = json!({ "data": { "load": "high" } });
        assert!(observe(&window, &mut samples, &text, 0).is_err());
        assert!(samples.is_empty(), "no sample was taken from either");
    }

    #[test]
    fn window_keys_follow_the_scope() {
        let agent = AgentRecord {
            agent_id: "edge-1".into(),
            boot_epoch: 1,
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            facts: Default::default(),
            cpu_millis: 0,
            memory_bytes: 0,
            first_seen_ms: 0,
            last_hello_ms: 0,
            events_committed: 0,
            lost: false,
            avoid: Default::default(),
        };
        let mut window = count(1, 1);
        assert_eq!(key(&window, None).unwrap(), "*");
        window.per = WindowScope::Agent;
        assert_eq!(key(&window, Some(&agent)).unwrap(), "edge-1");
        assert!(key(&window, None).is_err());
        window.per = WindowScope::Label("zone".into());
        assert_eq!(key(&window, Some(&agent)).unwrap(), "a");
        window.per = WindowScope::Label("rack".into());
        assert!(
            key(&window, Some(&agent))
                .unwrap_err()
                .contains("no label `rack`")
        );
    }
}
