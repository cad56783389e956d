//! What a hostile agent or webhook sends reaches the operator's terminal
//! escaped: `levee events` in table mode shows control characters as
//! `\x1b`, `\n`, `\u{202e}`, so they can neither act on the terminal nor
//! add a row, while `--output json` keeps every value intact.

use levee_tests::{TestEnv, wait_until};
use serde_json::Value;

use crate::common::{TIMEOUT, rows};

/// Clears the screen, starts a line that looks like a table row, and
/// reverses what follows.
const HOSTILE_TYPE: &str = "app.\x1b[2J\n│ fake │ row │\u{202e}";
const HOSTILE_SUBJECT: &str = "web\r\x1b]0;owned\x07\u{9b}31m";

#[test]
fn levee_events_shows_a_hostile_type_and_subject_escaped_in_a_table_and_intact_in_json() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let agent = env.start_agent("worker-1", &[], &[&controller]);
    // Until its socket is up, an emit fails and stores nothing.
    wait_until("the agent to take the hostile event", TIMEOUT, || {
        agent.emit_about(HOSTILE_TYPE, HOSTILE_SUBJECT, r#"{"note": "\u001b[31m"}"#)
    });
    agent
        .emit_about("app.plain", "plain", "{}")
        .expect("levee-agent emit");

    // JSON: the values exactly as sent.
    let events = wait_until("both events to be committed", TIMEOUT, || {
        let events = rows(&controller, "events");
        let types: Vec<&Value> = events.iter().map(|event| &event["type"]).collect();
        if types.contains(&&Value::from(HOSTILE_TYPE)) && types.contains(&&Value::from("app.plain"))
        {
            Ok(events)
        } else {
            Err(format!("{events:?}\n{}", agent.log_tail()))
        }
    });
    let hostile = events
        .iter()
        .find(|event| event["type"] == HOSTILE_TYPE)
        .expect("the hostile event");
    assert_eq!(hostile["subject"], HOSTILE_SUBJECT);
    assert_eq!(hostile["data"]["note"], "\x1b[31m");

    // Table: escaped, one line per event.
    let table = controller.run(&["events"]).expect("levee events");
    assert!(
        !table.contains(['\x1b', '\r', '\x07', '\u{9b}', '\u{202e}']),
        "a control character reached the terminal: {table:?}"
    );
    assert!(
        table.contains("app.\\x1b[2J\\n│ fake │ row │\\u{202e}"),
        "{table}"
    );
    assert!(
        table.contains("web\\r\\x1b]0;owned\\x07\\u{9b}31m"),
        "{table}"
    );
    let event_lines = table
        .lines()
        .filter(|line| line.contains("app.") || line.contains("│ fake │"))
        .count();
    assert_eq!(event_lines, 2, "one line per event, no fake row:\n{table}");
}
