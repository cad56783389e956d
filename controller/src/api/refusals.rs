//! The controller's trust boundaries, as labels for the one refusal log
//! (`levee_common::refusals`): every refused handshake or call is counted
//! (`levee_refusals_total{boundary,reason}`) and logged at most once per
//! peer, boundary and reason a minute.

use std::time::Instant;

use levee_common::refusals::{Refusal, RefusalLog};

/// The TLS handshake: no, or an untrusted, client certificate.
pub const TLS: &str = "tls";
/// A service's role check: a certificate of a role that may not call it.
pub const ROLE: &str = "role";
/// The Raft transport: a controller certificate that is not a member, or
/// a member speaking for another node, or a join or forwarded call it may
/// not make.
pub const RAFT: &str = "raft";

/// An agent's session: a hello naming another agent or the controllers,
/// or events of types the agent may not send.
pub const AGENT_LINK: &str = "agent_link";

/// Counts and (rate-limited) logs one refusal.
pub fn refuse(
    log: &RefusalLog,
    peer: &str,
    boundary: &'static str,
    reason: &'static str,
    detail: &str,
) {
    log.refuse(
        Refusal {
            peer,
            boundary,
            reason,
            detail,
        },
        Instant::now(),
    );
}
