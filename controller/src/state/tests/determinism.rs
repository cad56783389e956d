//! Determinism: a recorded log, replayed from an empty state, must give
//! the committed state digest after every entry.
//!
//! The log (`controller/testdata/determinism/log.jsonl`) covers every
//! command kind; it is input, recorded once and kept. The digests beside it
//! (`digests.txt`) say what `apply` decided. A change that alters a
//! decision fails here at the first entry it affects; if the change is
//! meant, record the new digests deliberately:
//!
//! ```sh
//! LEVEE_BLESS_DIGESTS=1 cargo nextest run -p levee-controller determinism
//! ```
//!
//! and say in the commit why decisions changed (nodes running the old code
//! would disagree with the new: see rolling upgrades). To record a new log
//! (when a command kind is added), run the ignored `record_the_log` test.

use std::path::PathBuf;

use levee_common::ids::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::*;
use crate::state::command as cmd;
use crate::state::inbound::InboundEvent;

/// One entry of the recorded log.
#[derive(Debug, Serialize, Deserialize)]
struct Recorded {
    index: u64,
    term: u64,
    command: Command,
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/determinism")
        .join(name)
}

/// Each command kind by name, from one list: `kind` matches without a
/// wildcard, so a new kind does not compile until it is listed here, and
/// then the log must hold it.
macro_rules! command_kinds {
    ($($kind:ident),* $(,)?) => {
        fn kind(command: &Command) -> &'static str {
            match command {
                $(Command::$kind(_) => stringify!($kind),)*
            }
        }
        const ALL_KINDS: &[&str] = &[$(stringify!($kind)),*];
    };
}

command_kinds!(
    AgentHello,
    RecordEvents,
    RecordInbound,
    PutSpecs,
    Rollback,
    Scale,
    RecordTaskReport,
    Answer,
    TimerFired,
    AgentLost,
    SignalSilent,
    ProvisionStarted,
    ProvisionFinished,
    NotificationDone,
    ProvisionAbandoned,
    ProvisionResolved,
    Drain,
    Undrain,
    NodeRemoved,
    LabelAgent,
);

fn read_log() -> Vec<Recorded> {
    let path = testdata("log.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    text.lines()
        .enumerate()
        .map(|(line, json)| {
            serde_json::from_str(json).unwrap_or_else(|err| {
                panic!(
                    "{}:{}: not a log entry this code can read ({err}); a command's \
                     wire form changed, which nodes of the old version could not read",
                    path.display(),
                    line + 1
                )
            })
        })
        .collect()
}

/// The digest after each entry, one `index digest` line per entry.
fn replay(log: Vec<Recorded>) -> Vec<String> {
    let mut state = ClusterState::default();
    log.into_iter()
        .map(|entry| {
            let at = LogPosition {
                index: entry.index,
                term: entry.term,
            };
            state.apply(at, entry.command);
            format!("{} {}", entry.index, state.digest())
        })
        .collect()
}

#[test]
fn the_recorded_log_holds_every_command_kind() {
    let log = read_log();
    let seen: BTreeSet<&str> = log.iter().map(|entry| kind(&entry.command)).collect();
    let missing: Vec<&str> = ALL_KINDS
        .iter()
        .copied()
        .filter(|kind| !seen.contains(kind))
        .collect();
    assert!(
        missing.is_empty(),
        "the recorded log lacks {missing:?}: record it again (see the module doc)"
    );
}

#[test]
fn the_recorded_log_replays_to_the_committed_digests() {
    let digests = replay(read_log());
    let path = testdata("digests.txt");
    if std::env::var_os("LEVEE_BLESS_DIGESTS").is_some() {
        std::fs::write(&path, digests.join("\n") + "\n").expect("write digests");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), digests.len(), "one digest per log entry");
    if let Some((got, want)) = digests
        .iter()
        .zip(&expected)
        .find(|(got, want)| got != want)
    {
        panic!(
            "apply decided differently from the recorded digests, first at entry {got} \
             (expected {want}). If the change of decision is meant, bless the new \
             digests (see the module doc) and say why in the commit"
        );
    }
}

#[test]
fn replaying_twice_gives_the_same_digests() {
    assert_eq!(replay(read_log()), replay(read_log()));
}

/// The recorded log's final state, written flat as releases before the
/// state's parts wrote it, reads back equal (maps keyed by numbers,
/// patterns, tasks and all).
#[test]
fn the_replayed_state_written_flat_reads_back_equal() {
    let mut state = ClusterState::default();
    for entry in read_log() {
        state.apply(
            LogPosition {
                index: entry.index,
                term: entry.term,
            },
            entry.command,
        );
    }
    let nested = serde_json::to_value(&state).unwrap();
    let mut flat = serde_json::Map::new();
    for (_, fields) in nested.as_object().unwrap() {
        flat.extend(fields.as_object().unwrap().clone());
    }
    let flat = serde_json::to_vec(&serde_json::Value::Object(flat)).unwrap();
    let read: ClusterState = serde_json::from_slice(&flat).unwrap();
    assert_eq!(read, state);
    assert_eq!(read.digest(), state.digest());
}

// === Recording ===

/// Base time of the recording: every command time is an offset from it.
const T0: i64 = 1_800_000_000_000;

struct Recorder {
    state: ClusterState,
    entries: Vec<Recorded>,
    term: u64,
    now: i64,
}

impl Recorder {
    fn apply(&mut self, command: Command) -> Response {
        let index = self.entries.len() as u64 + 1;
        let at = LogPosition {
            index,
            term: self.term,
        };
        self.entries.push(Recorded {
            index,
            term: self.term,
            command: command.clone(),
        });
        self.state.apply(at, command)
    }

    fn tick(&mut self, ms: i64) -> i64 {
        self.now += ms;
        self.now
    }

    fn hello(&mut self, agent: &str, epoch: u64, labels: &[(&str, &str)], term_seen: u64) {
        let at_ms = self.tick(100);
        self.apply(Command::AgentHello(cmd::AgentHello {
            agent_id: agent.into(),
            boot_epoch: epoch,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            facts: Default::default(),
            cpu_millis: 2000,
            memory_bytes: 4 << 30,
            highest_term_seen: term_seen,
            at_ms,
        }));
    }

    fn put_specs(&mut self, yaml: &str, reason: &str) {
        let at_ms = self.tick(1000);
        self.apply(Command::PutSpecs(cmd::PutSpecs {
            specs: SpecSet::parse([("fleet.yaml", yaml)]).expect("recording specs parse"),
            reason: reason.into(),
            applied_by: "operator/alice".into(),
            at_ms,
        }));
    }

    fn event(&mut self, agent: &str, seq: u64, event_type: &str, subject: &str, data: Value) {
        let at_ms = self.tick(500);
        let event = Event {
            key: EventKey {
                agent_id: agent.into(),
                boot_epoch: 1,
                seq,
            },
            source: format!("agent/{agent}"),
            event_type: event_type.into(),
            subject: subject.into(),
            time_unix_ms: at_ms - 20,
            data,
        };
        self.apply(Command::RecordEvents(cmd::RecordEvents {
            agent_id: agent.into(),
            events: vec![event],
            at_ms,
            strict: true,
        }));
    }

    fn inbound(&mut self, source: &str, event_type: &str, subject: &str, data: Value, id: &str) {
        let at_ms = self.tick(500);
        self.apply(Command::RecordInbound(cmd::RecordInbound {
            source: source.into(),
            events: vec![InboundEvent {
                event_type: event_type.into(),
                subject: subject.into(),
                data,
                dedup_id: Some(id.into()),
                time_unix_ms: Some(at_ms - 50),
                remember: None,
            }],
            at_ms,
            names_hosts: true,
        }));
    }

    /// Reports every pending task, failing the `fail`-th one (if any).
    fn report_pending(&mut self, fail: Option<usize>) {
        let pending: Vec<(AgentId, TaskId, Vec<String>)> = self
            .state
            .work
            .tasks
            .values()
            .filter(|task| task.state == TaskState::Pending)
            .map(|task| {
                let keys = task.resources.iter().map(|r| r.key()).collect();
                (task.agent_id.clone(), task.task_id.clone(), keys)
            })
            .collect();
        for (n, (agent_id, task_id, keys)) in pending.into_iter().enumerate() {
            let failed = Some(n) == fail;
            let finished_ms = self.tick(300);
            self.apply(Command::RecordTaskReport(cmd::RecordTaskReport {
                agent_id,
                report: TaskReport {
                    task_id,
                    state: if failed {
                        TaskState::Failed
                    } else {
                        TaskState::Succeeded
                    },
                    outcomes: keys
                        .into_iter()
                        .map(|resource| ResourceOutcome {
                            resource,
                            changed: true,
                            detail: "converged".into(),
                        })
                        .collect(),
                    error: if failed {
                        "exit status 1".into()
                    } else {
                        String::new()
                    },
                    finished_ms,
                },
            }));
        }
    }
}

const FLEET_V1: &str = r#"
kind: Service
name: web
replicas: { min: 1, max: 6, initial: 2 }
placement: { selector: { role: web } }
update: { max_parallel: 1, auto_rollback: true }
process: { argv: [/usr/bin/web, --port, "8080"] }
files: [{ path: web.conf, content: "port = 8080\n" }]
---
kind: Service
name: db
replicas: 3
placement: { selector: { role: db } }
process: { argv: [/usr/bin/db] }
---
kind: Provisioner
name: spare
argv: [/usr/local/bin/make-host]
max_hosts: 3
---
kind: Timer
name: morning
cron: "0 7 * * *"
data: { shift: day }
---
kind: Rule
name: repair-web
match: { type: [host.process.exited], subject: [web] }
action: { repair: { service: web } }
---
kind: Rule
name: busy
match: { type: [app.load] }
window: { count: 2, within_ms: 60000 }
action: { scale: { service: web, by: 1 } }
guardrails: { cooldown_ms: 5000 }
---
kind: Rule
name: quiet
match: { type: [app.load] }
action: { scale: { service: web, by: -1 } }
guardrails: { dry_run: true }
---
kind: Rule
name: morning-scale
match: { type: [timer.fired], subject: [morning] }
action: { scale: { service: web, to: 3 } }
---
kind: Rule
name: drain-on-disk
match: { type: [alert.firing], subject: [DiskFull] }
agent_from: data.labels.instance
action: { drain: {} }
---
kind: Rule
name: more-hosts
match: { type: [levee.service.unplaced], subject: [db] }
action: { provision: { provisioner: spare, count: 2 } }
---
kind: Rule
name: careful
match: { type: [app.grow] }
action: { scale: { service: web, by: 1 } }
guardrails: { approval: true }
---
kind: Rule
name: vacuum
match: { type: [app.vacuum] }
action: { run: { argv: [/usr/bin/vacuumdb, --all], timeout_ms: 5000, selector: { role: db } } }
---
kind: Rule
name: tell
match: { type: [app.notify] }
action: { webhook: { url: "https://hooks.example.org/levee" } }
---
kind: Rule
name: heartbeat
match: { type: [app.heartbeat] }
signal: { silent_after_ms: 10000, on_silent: alert }
action: { repair: { service: web } }
"#;

#[test]
#[ignore = "records the determinism log; run it only to record a new one"]
fn record_the_log() {
    let mut r = Recorder {
        state: ClusterState::default(),
        entries: Vec::new(),
        term: 1,
        now: T0,
    };
    r.hello("a1", 1, &[("role", "web"), ("zone", "a")], 1);
    r.hello("a2", 1, &[("role", "web"), ("zone", "b")], 1);
    r.hello("a3", 1, &[("role", "db"), ("zone", "a")], 1);
    r.hello("a5", 1, &[("role", "web"), ("zone", "c")], 1);
    r.put_specs(FLEET_V1, "first fleet");
    r.report_pending(None);

    // Provisions for the db shortfall: one finishes, one is abandoned by a
    // new leader and resolved by an operator.
    let provisions: Vec<String> = r.state.effects.provisions.keys().cloned().collect();
    assert_eq!(provisions.len(), 2, "the shortfall asked for two hosts");
    let at_ms = r.tick(50);
    r.apply(Command::ProvisionStarted(cmd::ProvisionStarted {
        id: provisions[0].clone(),
        term: 1,
        at_ms,
    }));
    let at_ms = r.tick(4000);
    r.apply(Command::ProvisionFinished(cmd::ProvisionFinished {
        id: provisions[0].clone(),
        result: Ok("made db-4".into()),
        at_ms,
    }));
    let at_ms = r.tick(50);
    r.apply(Command::ProvisionStarted(cmd::ProvisionStarted {
        id: provisions[1].clone(),
        term: 1,
        at_ms,
    }));
    r.hello("a4", 1, &[("role", "db"), ("zone", "b")], 0);
    r.report_pending(None);

    // Events: a crash repaired, a load window acting, a redelivery.
    r.event(
        "a1",
        1,
        "host.process.exited",
        "web",
        json!({"service": "web", "code": 1}),
    );
    r.report_pending(None);
    r.event("a1", 2, "app.load", "web", json!({"rps": 900}));
    r.event("a2", 1, "app.load", "web", json!({"rps": 950}));
    r.event("a2", 1, "app.load", "web", json!({"rps": 950}));
    r.report_pending(Some(0));
    r.event("a1", 3, "app.heartbeat", "web", json!({}));

    // An operator scales, ships a new version, and rolls it back.
    let at_ms = r.tick(2000);
    r.apply(Command::Scale(cmd::Scale {
        service: "web".into(),
        replicas: 4,
        reason: "sale".into(),
        requested_by: "operator/alice".into(),
        at_ms,
    }));
    r.report_pending(None);
    r.put_specs(&FLEET_V1.replace("\"8080\"", "\"8081\""), "new port");
    r.report_pending(None);
    r.report_pending(None);
    let at_ms = r.tick(1000);
    r.apply(Command::Rollback(cmd::Rollback {
        version: 1,
        reason: String::new(),
        requested_by: "operator/bob".into(),
        at_ms,
    }));
    r.report_pending(None);

    // From outside: an alert drains a host; a reserved type is refused.
    r.inbound(
        "webhook/am",
        "alert.firing",
        "DiskFull",
        json!({"labels": {"alertname": "DiskFull", "instance": "a2"}}),
        "fp-1",
    );
    r.inbound("webhook/am", "timer.fired", "morning", json!({}), "fp-2");
    r.report_pending(None);
    let at_ms = r.tick(1000);
    r.apply(Command::Undrain(cmd::Undrain {
        agent_id: "a2".into(),
        by: "operator/alice".into(),
        at_ms,
    }));
    let at_ms = r.tick(1000);
    r.apply(Command::Drain(cmd::Drain {
        agent_id: "a1".into(),
        service: Some("web".into()),
        by: "operator/alice".into(),
        at_ms,
    }));
    r.report_pending(None);

    // Approvals, one approved and one rejected.
    for (n, (agent, approve)) in [("a1", true), ("a2", false)].into_iter().enumerate() {
        r.event(agent, 4 + n as u64, "app.grow", "web", json!({}));
        let asked: Vec<String> = r.state.rule_book.approvals.keys().cloned().collect();
        assert_eq!(asked.len(), 1, "one action awaits approval");
        let at_ms = r.tick(1000);
        r.apply(Command::Answer(cmd::Answer {
            id: asked[0].clone(),
            approve,
            by: "operator/alice".into(),
            at_ms,
        }));
    }
    r.report_pending(None);

    // The leader's clock: a timer, a silent signal, a run and a webhook.
    let scheduled_ms = r.tick(1000);
    r.apply(Command::TimerFired(cmd::TimerFired {
        timer: "morning".into(),
        scheduled_ms,
        at_ms: scheduled_ms + 3,
    }));
    r.report_pending(None);
    let last_signal_ms = r.state.rule_book.rule_state["heartbeat"]
        .last_signal_ms
        .expect("the heartbeat rule saw its signal");
    let at_ms = r.tick(20_000);
    r.apply(Command::SignalSilent(cmd::SignalSilent {
        rule: "heartbeat".into(),
        last_signal_ms,
        at_ms,
    }));
    r.event("a3", 1, "app.vacuum", "db", json!({}));
    r.report_pending(None);
    r.event("a3", 2, "app.notify", "db", json!({"why": "nightly"}));
    let calls: Vec<String> = r.state.effects.notifications.keys().cloned().collect();
    let at_ms = r.tick(700);
    r.apply(Command::NotificationDone(cmd::NotificationDone {
        id: calls[0].clone(),
        result: Ok(200),
        attempts: 2,
        at_ms,
    }));

    // A new leader: it abandons the provision its predecessor started,
    // declares a host lost, and the host comes back with no memory.
    r.term = 2;
    let at_ms = r.tick(1500);
    r.apply(Command::ProvisionAbandoned(cmd::ProvisionAbandoned {
        id: provisions[1].clone(),
        term: 2,
        at_ms,
    }));
    let at_ms = r.tick(500);
    r.apply(Command::ProvisionResolved(cmd::ProvisionResolved {
        id: provisions[1].clone(),
        host_made: false,
        by: "operator/alice".into(),
        at_ms,
    }));
    let last_hello_ms = r.state.fleet.agents[&AgentId::from("a2")].last_hello_ms;
    let at_ms = r.tick(3000);
    r.apply(Command::AgentLost(cmd::AgentLost {
        agent_id: "a2".into(),
        silent_ms: 3000,
        last_hello_ms,
        at_ms,
    }));
    r.report_pending(None);
    r.hello("a2", 2, &[("role", "web"), ("zone", "b")], 0);
    r.report_pending(None);
    let at_ms = r.tick(1000);
    r.apply(Command::NodeRemoved(cmd::NodeRemoved {
        node_id: 3,
        name: String::new(),
        at_ms,
    }));

    // Labels are the cluster's: an operator labels a host before it
    // connects, the host's own claims are facts, and relabelling moves
    // work. An agent's forged controller event is refused, and an event
    // naming another host through `agent_from` is held.
    let at_ms = r.tick(1000);
    r.apply(Command::LabelAgent(cmd::LabelAgent {
        agent_id: "a6".into(),
        set: [
            ("role".to_owned(), "web".to_owned()),
            ("zone".to_owned(), "c".to_owned()),
        ]
        .into(),
        remove: Default::default(),
        by: "operator/alice".into(),
        at_ms,
    }));
    let at_ms = r.tick(100);
    r.apply(Command::AgentHello(cmd::AgentHello {
        agent_id: "a6".into(),
        boot_epoch: 1,
        labels: Default::default(),
        facts: [("role".to_owned(), "db".to_owned())].into(),
        cpu_millis: 2000,
        memory_bytes: 4 << 30,
        highest_term_seen: 0,
        at_ms,
    }));
    r.report_pending(None);
    let at_ms = r.tick(1000);
    r.apply(Command::LabelAgent(cmd::LabelAgent {
        agent_id: "a6".into(),
        set: [("zone".to_owned(), "a".to_owned())].into(),
        remove: ["role".to_owned()].into(),
        by: "operator/alice".into(),
        at_ms,
    }));
    r.report_pending(None);
    r.event("a6", 1, "timer.fired", "morning", json!({}));
    r.event(
        "a6",
        2,
        "alert.firing",
        "DiskFull",
        json!({"labels": {"instance": "a1"}}),
    );

    let failed = r
        .state
        .work
        .tasks
        .values()
        .filter(|task| task.state == TaskState::Failed)
        .count();
    assert!(failed > 0, "the log holds a failed task");
    let lines: Vec<String> = r
        .entries
        .iter()
        .map(|entry| serde_json::to_string(entry).expect("entries serialise"))
        .collect();
    std::fs::create_dir_all(testdata("")).expect("create testdata");
    std::fs::write(testdata("log.jsonl"), lines.join("\n") + "\n").expect("write the log");
    let digests = replay(read_log());
    std::fs::write(testdata("digests.txt"), digests.join("\n") + "\n").expect("write digests");
}
