//! The leader delivers rules' webhook calls: each pending call is POSTed
//! with its `Idempotency-Key`, retried with backoff on network errors and
//! 5xx answers, and its result committed (`NotificationDone`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::http_client::post_json;
use crate::clock::now_ms;
use crate::raft::proposer::Proposer;
use crate::raft::state_machine::SharedState;
use crate::state::command as cmd;
use crate::state::command::Command;
use crate::state::records::NotificationRecord;

/// Attempts before a call is given up: with the backoff doubling from
/// 500 ms up to a minute, about ten minutes of retrying.
const ATTEMPTS: u32 = 16;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls under way at once, so a burst cannot open thousands of sockets on
/// the node that also serves Raft.
const MAX_IN_FLIGHT: usize = 32;

#[derive(Clone)]
pub struct Notifier {
    pub state: SharedState,
    pub proposer: Proposer,
}

impl Notifier {
    /// Delivers pending calls while this node leads; woken by applied
    /// entries (new calls) and by deliveries ending (room for more).
    pub async fn lead(self, _term: u64, stepped_down: CancellationToken) {
        // Dropping the set when leadership ends aborts deliveries under
        // way; they stay pending and the next leader sends them again,
        // with the same `Idempotency-Key`.
        let mut deliveries: JoinSet<()> = JoinSet::new();
        let in_flight: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let mut applied = self.state.subscribe();
        loop {
            for record in self.state.read(|state| state.pending_notifications()) {
                if deliveries.len() >= MAX_IN_FLIGHT {
                    break;
                }
                let fresh = in_flight
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(record.id.clone());
                if !fresh {
                    continue;
                }
                let proposer = self.proposer.clone();
                let in_flight = in_flight.clone();
                let span = info_span!("webhook_call", id = %record.id, rule = %record.rule);
                deliveries.spawn(
                    async move {
                        let (result, attempts) = deliver(&record).await;
                        match &result {
                            Ok(status) => info!(status, attempts, "webhook call delivered"),
                            Err(error) => warn!(%error, attempts, "webhook call failed"),
                        }
                        let command = Command::NotificationDone(cmd::NotificationDone {
                            id: record.id.clone(),
                            result,
                            attempts,
                            at_ms: now_ms(),
                        });
                        if let Err(err) = proposer.propose(command).await {
                            warn!(error = %err, "could not record the call's result");
                            // Held in flight a moment, so the call is not
                            // sent again at once while proposals fail.
                            tokio::time::sleep(FIRST_BACKOFF).await;
                        }
                        in_flight
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .remove(&record.id);
                    }
                    .instrument(span),
                );
            }
            tokio::select! {
                () = stepped_down.cancelled() => break,
                _ = applied.changed() => {}
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
        }
    }
}

/// Sends one call, retrying what may succeed later; returns the final
/// result and how many attempts it took.
async fn deliver(record: &NotificationRecord) -> (Result<u16, String>, u32) {
    let mut headers = vec![("idempotency-key", record.id.clone())];
    if let Some(path) = &record.token_file {
        match std::fs::read_to_string(Path::new(path)) {
            Ok(token) => headers.push(("authorization", format!("Bearer {}", token.trim()))),
            Err(err) => return (Err(format!("reading token_file {path}: {err}")), 0),
        }
    }
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match post_json(&record.url, &headers, record.body.clone(), CALL_TIMEOUT).await {
            Ok(status) if (200..300).contains(&status) => return (Ok(status), attempt),
            // The receiver refused the call itself: sending it again
            // would be refused again.
            Ok(status) if (400..500).contains(&status) && status != 408 && status != 429 => {
                return (Err(format!("{} answered {status}", record.url)), attempt);
            }
            Ok(status) => last = format!("{} answered {status}", record.url),
            Err(err) => last = err,
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    (
        Err(format!("gave up after {ATTEMPTS} attempts: {last}")),
        ATTEMPTS,
    )
}
