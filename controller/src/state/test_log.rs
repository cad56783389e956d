//! A log to apply commands through in tests: positions counted for you,
//! and the commands most tests start with (hellos, specs).

use std::collections::BTreeMap;

use levee_common::spec::SpecSet;

use super::command::{self as cmd, Command, Response};
use super::{ClusterState, LogPosition};

pub(crate) struct Log {
    pub(crate) state: ClusterState,
    pub(crate) index: u64,
    pub(crate) term: u64,
}

impl Log {
    pub(crate) fn new() -> Self {
        Self {
            state: ClusterState::default(),
            index: 0,
            term: 1,
        }
    }

    /// Applies `command` as the next entry.
    pub(crate) fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        self.state.apply(
            LogPosition {
                index: self.index,
                term: self.term,
            },
            command,
        )
    }

    /// An agent's hello in `epoch`, with no labels.
    pub(crate) fn hello(&mut self, agent: &str, epoch: u64) -> Response {
        self.apply(Command::AgentHello(hello_in(agent, epoch)))
    }

    /// An agent labelled `labels` by an operator, then its first hello.
    pub(crate) fn hello_with(&mut self, agent: &str, labels: &[(&str, &str)]) {
        if !labels.is_empty() {
            self.label(agent, labels);
        }
        self.hello(agent, 1);
    }

    /// An operator sets `labels` on `agent`.
    pub(crate) fn label(&mut self, agent: &str, labels: &[(&str, &str)]) -> Response {
        self.apply(Command::LabelAgent(cmd::LabelAgent {
            agent_id: agent.into(),
            set: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            remove: Default::default(),
            by: "operator/test".into(),
            at_ms: 1,
        }))
    }

    /// A new spec version from `yaml`, which must parse.
    pub(crate) fn put_specs(&mut self, yaml: &str) -> Response {
        let specs = SpecSet::parse([("specs.yaml", yaml)]).unwrap();
        self.apply(Command::PutSpecs(cmd::PutSpecs {
            specs,
            reason: "test".into(),
            applied_by: "operator/test".into(),
            at_ms: 2,
        }))
    }
}

/// The hello [`Log::hello`] applies, for a test to change a field of
/// (`cmd::AgentHello { facts, ..hello_in("a1", 1) }`).
pub(crate) fn hello_in(agent: &str, epoch: u64) -> cmd::AgentHello {
    cmd::AgentHello {
        agent_id: agent.into(),
        boot_epoch: epoch,
        labels: BTreeMap::new(),
        facts: BTreeMap::new(),
        cpu_millis: 1000,
        memory_bytes: 1 << 30,
        highest_term_seen: epoch,
        at_ms: 1,
    }
}
