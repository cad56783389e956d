//! Rules' `webhook` calls. The call is recorded when the rule acts, with
//! its body fixed then; the leader delivers it (`leader::notifier`) and
//! commits the result. Delivery is at least once: a leader that dies
//! after sending but before committing leaves it pending, and the next
//! leader sends it again with the same `Idempotency-Key`.

use serde_json::json;

use super::ClusterState;
use super::command::Response;
use super::reactions::act::Acted;
use super::records::{NotificationRecord, NotificationState, PendingApproval};
use crate::state::Entry;

/// Finished calls kept for `levee notifications`; pending ones are never
/// dropped.
pub const NOTIFICATION_HISTORY: usize = 1000;

impl ClusterState {
    pub(super) fn notify(
        &mut self,
        entry: &mut Entry,
        pending: &PendingApproval,
        url: &str,
        token_file: Option<String>,
    ) -> Acted {
        self.effects.notifications_made += 1;
        let id = format!("n{}", self.effects.notifications_made);
        let event = pending.event.as_ref().map(|event| {
            json!({
                "id": event.id(),
                "type": event.event_type,
                "source": event.source,
                "subject": event.subject,
                "time_ms": event.time_unix_ms,
                "data": event.data,
            })
        });
        let body = json!({
            "id": id,
            "rule": pending.rule,
            "reason": pending.cause.reason,
            "host": pending.agent.as_str(),
            "event": event,
            "at_ms": entry.at_ms,
        });
        self.effects.notifications.insert(
            id.clone(),
            NotificationRecord {
                id: id.clone(),
                rule: pending.rule.clone(),
                url: url.to_owned(),
                token_file,
                body: body.to_string(),
                requested_ms: entry.at_ms,
                state: NotificationState::Pending,
            },
        );
        self.prune_notifications();
        Acted {
            outcome: format!("calling {url} ({id})"),
            plan_id: None,
            counted: true,
        }
    }

    pub(super) fn notification_done(
        &mut self,
        id: &str,
        result: Result<u16, String>,
        attempts: u32,
        entry: &mut Entry,
    ) -> Response {
        let Some(record) = self.effects.notifications.get_mut(id) else {
            return Response::Nothing;
        };
        if record.state != NotificationState::Pending {
            return Response::Nothing;
        }
        record.state = match result {
            Ok(status) => NotificationState::Delivered {
                status,
                attempts,
                at_ms: entry.at_ms,
            },
            Err(error) => NotificationState::Failed {
                error,
                attempts,
                at_ms: entry.at_ms,
            },
        };
        self.prune_notifications();
        Response::Nothing
    }

    /// Calls waiting for the leader, oldest first.
    pub fn pending_notifications(&self) -> Vec<NotificationRecord> {
        let mut pending: Vec<NotificationRecord> = self
            .effects
            .notifications
            .values()
            .filter(|record| record.state == NotificationState::Pending)
            .cloned()
            .collect();
        pending.sort_by_key(|record| record.requested_ms);
        pending
    }

    fn prune_notifications(&mut self) {
        let finished: Vec<(i64, String)> = {
            let mut finished: Vec<(i64, String)> = self
                .effects
                .notifications
                .values()
                .filter(|record| record.state != NotificationState::Pending)
                .map(|record| (record.requested_ms, record.id.clone()))
                .collect();
            finished.sort();
            finished
        };
        let excess = finished.len().saturating_sub(NOTIFICATION_HISTORY);
        for (_, id) in finished.into_iter().take(excess) {
            self.effects.notifications.remove(&id);
        }
    }
}
