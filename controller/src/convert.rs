//! Where the controller's domain records meet the wire: the `levee.v1`
//! messages the API answers with and the tasks the leader sends, made from
//! the replicated state's records in one place.

use levee_common::ids::TaskId;
use levee_common::pb;
use levee_common::secret::{self, SecretError, SecretSource};

use crate::engine::planner::Action;
use crate::raft::membership::Members;
use crate::state::records::{
    EventRecord, PlanRecord, ResourceOutcome, SpecVersion, TaskRecord, TaskReport, TaskState,
};

pub fn members_response(members: Members) -> pb::MembershipResponse {
    pb::MembershipResponse {
        voters: members.voters.into_iter().collect(),
        learners: members.learners.into_iter().collect(),
    }
}

pub fn event_info(record: &EventRecord) -> pb::EventInfo {
    pb::EventInfo {
        id: record.event.id(),
        source: record.event.source.clone(),
        r#type: record.event.event_type.clone(),
        subject: record.event.subject.clone(),
        time_unix_ms: record.event.time_unix_ms,
        data_json: record.event.data.to_string(),
        log_index: record.log_index,
        rules: record.rules.clone(),
        plan_ids: record.plan_ids.iter().map(ToString::to_string).collect(),
        outcomes: record.outcomes.clone(),
    }
}

pub fn cause_chain(chain: crate::state::why::Chain) -> pb::CauseChain {
    pb::CauseChain {
        plan_id: chain.plan_id.to_string(),
        reason: chain.reason,
        log_index: chain.log_index,
        created_unix_ms: chain.created_ms,
        event: chain.event.map(|event| pb::EventInfo {
            id: event.id,
            source: event.source,
            r#type: event.event_type,
            subject: event.subject,
            time_unix_ms: event.time_ms,
            data_json: event.data.to_string(),
            ..Default::default()
        }),
        rule: chain.rule.unwrap_or_default(),
        rule_outcome: chain.rule_outcome.unwrap_or_default(),
        tasks: chain
            .tasks
            .into_iter()
            .map(|task| pb::ChainTask {
                task_id: task.task_id,
                agent_id: task.agent_id,
                action: task.action,
                state: task.state,
                result: task.result,
            })
            .collect(),
    }
}

pub fn task_info(task: &TaskRecord) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: task.task_id.to_string(),
        plan_id: task.plan_id.to_string(),
        agent_id: task.agent_id.to_string(),
        service: task.service.clone(),
        state: task.state.as_str().to_owned(),
        action: task.action.as_str().to_owned(),
        batch: task.batch,
        created_term: task.created.term,
        cause_event_id: task.cause.event_id.clone().unwrap_or_default(),
        rule: task.cause.rule.clone().unwrap_or_default(),
        error: task.error.clone(),
        outcomes: task
            .outcomes
            .iter()
            .map(|outcome| {
                format!(
                    "{} {}: {}",
                    if outcome.changed { "changed" } else { "ok" },
                    outcome.resource,
                    outcome.detail
                )
            })
            .collect(),
        created_unix_ms: task.created_ms,
        finished_unix_ms: task.finished_ms,
    }
}

pub fn plan_info(plan: &PlanRecord) -> pb::PlanInfo {
    pb::PlanInfo {
        plan_id: plan.plan_id.to_string(),
        reason: plan.cause.reason.clone(),
        cause_event_id: plan.cause.event_id.clone().unwrap_or_default(),
        rule: plan.cause.rule.clone().unwrap_or_default(),
        task_ids: plan.task_ids.iter().map(ToString::to_string).collect(),
        log_index: plan.created.index,
        term: plan.created.term,
        spec_version: plan.spec_version,
        problems: plan.problems.clone(),
        rolled_back_by: plan.rolled_back_by.unwrap_or_default(),
    }
}

pub fn version_info(version: &SpecVersion, current: u64) -> pb::VersionInfo {
    pb::VersionInfo {
        version: version.version,
        applied_by: version.applied_by.clone(),
        reason: version.reason.clone(),
        applied_unix_ms: version.at_ms,
        origin: version.origin.describe(),
        services: version.specs.services.keys().cloned().collect(),
        rules: version.specs.rules.keys().cloned().collect(),
        plan_ids: version.plan_ids.iter().map(ToString::to_string).collect(),
        current: version.version == current,
    }
}

/// A task as the leader of `term` sends it to its agent.
///
/// Secrets the task's resources name are read from `secrets` into the
/// message, and only there: a task the planner made for this agent is the
/// one place a secret's value travels.
pub fn task_message(
    task: &TaskRecord,
    term: u64,
    secrets: &dyn SecretSource,
) -> Result<pb::ControllerMessage, SecretError> {
    let resources = task
        .resources
        .iter()
        .map(|resource| {
            secret::resolve(resource, secrets).map(|resolved| pb::Resource::from(&resolved))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let task = pb::Task {
        task_id: task.task_id.to_string(),
        term,
        plan_id: task.plan_id.to_string(),
        service: task.service.clone(),
        resources,
        remove: task.action == Action::Remove,
        run: task.run.as_ref().map(|run| pb::RunCommand {
            argv: run.argv.clone(),
            env: run.env.clone().into_iter().collect(),
            timeout_ms: run.timeout_ms,
        }),
    };
    Ok(pb::ControllerMessage {
        body: Some(pb::controller_message::Body::Task(task)),
    })
}

/// An agent's report on a task as the state records it; refused when the
/// agent names a state a report cannot have.
pub fn task_report(update: pb::TaskUpdate) -> Result<TaskReport, String> {
    let state = match pb::TaskState::try_from(update.state) {
        Ok(pb::TaskState::Succeeded) => TaskState::Succeeded,
        Ok(pb::TaskState::Failed) => TaskState::Failed,
        Ok(pb::TaskState::Refused) => TaskState::Refused,
        _ => {
            return Err(format!(
                "task {}: unknown state {}",
                update.task_id, update.state
            ));
        }
    };
    Ok(TaskReport {
        task_id: TaskId::new(update.task_id),
        state,
        outcomes: update
            .outcomes
            .into_iter()
            .map(|outcome| ResourceOutcome {
                resource: outcome.resource,
                changed: outcome.changed,
                detail: outcome.detail,
            })
            .collect(),
        error: update.error,
        finished_ms: update.finished_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_report_keeps_its_outcomes_and_an_unknown_state_is_refused() {
        let update = |state: i32| pb::TaskUpdate {
            task_id: "t7.0.1".into(),
            state,
            outcomes: vec![pb::ResourceOutcome {
                resource: "file:web.conf".into(),
                changed: true,
                detail: "written".into(),
            }],
            error: String::new(),
            finished_unix_ms: 1234,
            ..Default::default()
        };
        let report = task_report(update(pb::TaskState::Succeeded as i32)).unwrap();
        assert_eq!(report.state, TaskState::Succeeded);
        assert_eq!(report.task_id, TaskId::new("t7.0.1"));
        assert_eq!(report.outcomes[0].resource, "file:web.conf");
        assert_eq!(report.finished_ms, 1234);
        let refused = task_report(update(99)).unwrap_err();
        assert!(refused.contains("unknown state 99"), "{refused}");
    }
}
