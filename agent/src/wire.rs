//! Where `levee.v1` meets the agent's own types: a received `pb::Task`
//! becomes a [`Task`], a [`TaskOutcome`] becomes the `pb::TaskUpdate` that
//! is sent. Only this module and `link` name protobuf task types.
//!
//! The journal keeps each outcome as the encoded `pb::TaskUpdate` it
//! reports ([`encode_outcome`], [`decode_outcome`]): the bytes are the
//! same as those of agents from before the domain types, so their data
//! directories load, and a redelivered task gets exactly the update sent
//! the first time.

use levee_common::pb;
use levee_common::resource::Resource;
use prost::Message;
use thiserror::Error;

use crate::task::{ResourceOutcome, RunCommand, Task, TaskOutcome, TaskState};

/// Why a recorded outcome cannot be read back.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("not a task update: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("task update with unknown state {0}")]
    UnknownState(i32),
}

impl From<pb::Task> for Task {
    fn from(task: pb::Task) -> Self {
        let resources = task
            .resources
            .into_iter()
            .map(Resource::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| err.to_string());
        Task {
            task_id: task.task_id,
            term: task.term,
            plan_id: task.plan_id,
            service: task.service,
            resources,
            remove: task.remove,
            run: task.run.map(|run| RunCommand {
                argv: run.argv,
                env: run.env.into_iter().collect(),
                timeout_ms: run.timeout_ms,
            }),
        }
    }
}

impl From<TaskState> for pb::TaskState {
    fn from(state: TaskState) -> Self {
        match state {
            TaskState::Succeeded => pb::TaskState::Succeeded,
            TaskState::Failed => pb::TaskState::Failed,
            TaskState::Refused => pb::TaskState::Refused,
        }
    }
}

impl TryFrom<i32> for TaskState {
    type Error = WireError;

    fn try_from(state: i32) -> Result<Self, WireError> {
        match pb::TaskState::try_from(state) {
            Ok(pb::TaskState::Succeeded) => Ok(TaskState::Succeeded),
            Ok(pb::TaskState::Failed) => Ok(TaskState::Failed),
            Ok(pb::TaskState::Refused) => Ok(TaskState::Refused),
            _ => Err(WireError::UnknownState(state)),
        }
    }
}

impl From<TaskOutcome> for pb::TaskUpdate {
    fn from(outcome: TaskOutcome) -> Self {
        pb::TaskUpdate {
            task_id: outcome.task_id,
            term: outcome.term,
            state: pb::TaskState::from(outcome.state) as i32,
            outcomes: outcome
                .outcomes
                .into_iter()
                .map(|resource| pb::ResourceOutcome {
                    resource: resource.resource,
                    changed: resource.changed,
                    detail: resource.detail,
                })
                .collect(),
            error: outcome.error,
            finished_unix_ms: outcome.finished_unix_ms,
        }
    }
}

impl TryFrom<pb::TaskUpdate> for TaskOutcome {
    type Error = WireError;

    fn try_from(update: pb::TaskUpdate) -> Result<Self, WireError> {
        Ok(TaskOutcome {
            task_id: update.task_id,
            term: update.term,
            state: TaskState::try_from(update.state)?,
            outcomes: update
                .outcomes
                .into_iter()
                .map(|resource| ResourceOutcome {
                    resource: resource.resource,
                    changed: resource.changed,
                    detail: resource.detail,
                })
                .collect(),
            error: update.error,
            finished_unix_ms: update.finished_unix_ms,
        })
    }
}

/// The journal's bytes for `outcome`: the encoded update.
pub fn encode_outcome(outcome: &TaskOutcome) -> Vec<u8> {
    pb::TaskUpdate::from(outcome.clone()).encode_to_vec()
}

/// An outcome the journal recorded, by this agent or an older one.
pub fn decode_outcome(bytes: &[u8]) -> Result<TaskOutcome, WireError> {
    TaskOutcome::try_from(pb::TaskUpdate::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use levee_common::resource::FileResource;

    use super::*;

    fn update() -> pb::TaskUpdate {
        pb::TaskUpdate {
            task_id: "t1".into(),
            term: 3,
            state: pb::TaskState::Failed as i32,
            outcomes: vec![pb::ResourceOutcome {
                resource: "file:a.txt".into(),
                changed: true,
                detail: "written".into(),
            }],
            error: "process:web: not healthy".into(),
            finished_unix_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn an_outcome_recorded_as_a_task_update_reads_back_and_encodes_the_same() {
        // What agents wrote before the domain types existed.
        let recorded = update().encode_to_vec();
        let outcome = decode_outcome(&recorded).unwrap();
        assert_eq!(outcome.state, TaskState::Failed);
        assert_eq!(outcome.outcomes[0].detail, "written");
        assert_eq!(encode_outcome(&outcome), recorded);
        assert_eq!(pb::TaskUpdate::from(outcome), update());
    }

    #[test]
    fn an_unknown_state_or_garbage_is_an_error_not_a_guess() {
        let unspecified = pb::TaskUpdate {
            state: pb::TaskState::Unspecified as i32,
            ..update()
        };
        assert!(matches!(
            decode_outcome(&unspecified.encode_to_vec()),
            Err(WireError::UnknownState(0))
        ));
        assert!(matches!(
            decode_outcome(b"\xff\xff\xff"),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn a_task_keeps_its_fields_and_an_unreadable_resource_becomes_its_reason() {
        let file = Resource::File(FileResource {
            path: "a.txt".into(),
            content: "a".into(),
            secret: None,
            mode: 0o644,
        });
        let task = Task::from(pb::Task {
            task_id: "t1".into(),
            term: 2,
            plan_id: "p1.0".into(),
            service: "web".into(),
            resources: vec![pb::Resource::from(&file)],
            remove: false,
            run: None,
        });
        assert_eq!(task.resources, Ok(vec![file]));
        assert!(task.lists_resources());
        assert_eq!((task.task_id.as_str(), task.term), ("t1", 2));

        let unreadable = Task::from(pb::Task {
            resources: vec![pb::Resource { kind: None }],
            ..Default::default()
        });
        assert!(unreadable.resources.is_err());
        assert!(unreadable.lists_resources());

        let run = Task::from(pb::Task {
            run: Some(pb::RunCommand {
                argv: vec!["/bin/true".into()],
                env: [("A".to_owned(), "1".to_owned())].into(),
                timeout_ms: 5,
            }),
            ..Default::default()
        });
        assert!(!run.lists_resources());
        let run = run.run.unwrap();
        assert_eq!(run.env["A"], "1");
        assert_eq!(run.timeout_ms, 5);
    }
}
