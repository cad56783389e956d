//! The link to the controllers: one session at a time, with the leader.
//!
//! [`Link::run`] connects to a controller, follows leader redirects, and
//! reconnects with backoff and jitter when a session ends. The session
//! ([`session`]) sends the outbox, receives tasks, and returns updates.
//! Only a member controller that leads is accepted: [`verifier`] checks
//! its certificate in the handshake ([`connect`]), [`trust`] its welcome.

mod backoff;
mod connect;
mod session;
pub mod trust;
mod verifier;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use levee_common::agent_config::AgentConfig;
use levee_common::tls::TlsMaterial;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::backoff::Backoff;
use self::session::{SessionEnd, SessionError};
use self::trust::ControllerTrust;
use crate::journal::Journal;
use crate::outbox::Outbox;
use crate::task::{Task, TaskOutcome};

pub struct Link {
    pub config: AgentConfig,
    pub agent_id: String,
    pub tls: TlsMaterial,
    /// Which controllers are accepted; counts the refusals.
    pub trust: ControllerTrust,
    pub outbox: Outbox,
    pub journal: Journal,
    /// Tasks received, toward the applier.
    pub tasks: mpsc::UnboundedSender<Task>,
    /// Outcomes from the applier, toward the controller.
    pub updates: mpsc::Receiver<TaskOutcome>,
    /// Set while a session with the leader is open (welcomed), for
    /// `/metrics`.
    pub connected: Arc<AtomicBool>,
}

impl Link {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let link = &self.config.link;
        let mut backoff = Backoff::new(
            Duration::from_millis(link.reconnect_min_ms),
            Duration::from_millis(link.reconnect_max_ms),
        );
        let controllers = self.config.controllers.clone();
        let mut next_index = 0;
        let mut leader_hint: Option<String> = None;
        let mut redirects = 0;
        while !shutdown.is_cancelled() {
            let addr = leader_hint.take().unwrap_or_else(|| {
                let addr = controllers[next_index % controllers.len()].clone();
                next_index += 1;
                addr
            });
            let ended = session::run(&mut self, &addr, &shutdown).await;
            self.connected.store(false, Ordering::Relaxed);
            match ended {
                Ok(SessionEnd::Shutdown) => break,
                Ok(SessionEnd::Closed) => {
                    info!(controller = %addr, "session closed by the controller; reconnecting");
                    backoff.reset();
                }
                Err(SessionError::Redirect(leader)) if redirects < controllers.len() + 1 => {
                    info!(controller = %addr, leader = %leader, "following the leader");
                    leader_hint = Some(leader);
                    redirects += 1;
                    continue;
                }
                // Counted and logged (once a minute) by the refusal log.
                Err(SessionError::Refused(reason)) => {
                    debug!(controller = %addr, %reason, "refused the controller")
                }
                Err(err) => warn!(controller = %addr, error = %err, "session failed"),
            }
            redirects = 0;
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        info!("link stopped");
    }
}
