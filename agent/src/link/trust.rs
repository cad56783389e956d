//! Which controllers this agent accepts: the names pinned in its config
//! (`controller_names`), else the members the leader's last welcome
//! listed (kept in the journal), else, before any session, any controller
//! certificate of the cluster CA. A welcome must come from the leader it
//! names. Refusals are counted and logged once per controller and reason
//! a minute.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use levee_common::pb;
use levee_common::refusals::{Refusal, RefusalLog};
use tracing::info;

use crate::journal::Journal;
use crate::store::StoreError;
use crate::util::blocking;

/// The boundary the agent's refusals are counted under.
pub const BOUNDARY: &str = "controller";

/// A refused controller: a metrics label and the specifics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
    pub detail: String,
}

#[derive(Clone)]
pub struct ControllerTrust {
    /// From the config; wins over what welcomes say.
    pinned: Option<BTreeSet<String>>,
    journal: Journal,
    refusals: Arc<RefusalLog>,
}

impl ControllerTrust {
    pub fn new(pinned: &[String], journal: Journal, refusals: Arc<RefusalLog>) -> Self {
        Self {
            pinned: (!pinned.is_empty()).then(|| pinned.iter().cloned().collect()),
            journal,
            refusals,
        }
    }

    /// The names accepted now; `None` before the first session (nothing
    /// pinned or remembered yet).
    pub async fn accepted(&self) -> Result<Option<BTreeSet<String>>, StoreError> {
        if let Some(pinned) = &self.pinned {
            return Ok(Some(pinned.clone()));
        }
        let journal = self.journal.clone();
        let remembered = blocking(move || journal.trusted_controllers()).await?;
        Ok((!remembered.is_empty()).then_some(remembered))
    }

    /// Checks the welcome of the controller whose verified certificate
    /// is `name`, and remembers the members it lists (unless pinned).
    pub async fn check_welcome(
        &self,
        addr: &str,
        name: &str,
        welcome: &pb::Welcome,
    ) -> Result<Result<(), Refused>, StoreError> {
        let members = match judge_welcome(name, welcome) {
            Ok(members) => members,
            Err(refused) => {
                self.refuse(addr, &refused);
                return Ok(Err(refused));
            }
        };
        if self.pinned.is_none()
            && let Some(members) = members
            && self.accepted().await?.as_ref() != Some(&members)
        {
            info!(controllers = ?members, "remembering the cluster's controllers; only they are accepted from now on");
            let journal = self.journal.clone();
            blocking(move || journal.trust_controllers(&members)).await?;
        }
        Ok(Ok(()))
    }

    /// Counts and (rate-limited) logs a refusal of the controller at `addr`.
    pub fn refuse(&self, addr: &str, refused: &Refused) {
        self.refusals.refuse(
            Refusal {
                peer: addr,
                boundary: BOUNDARY,
                reason: refused.reason,
                detail: &refused.detail,
            },
            Instant::now(),
        );
    }
}

/// A welcome from controller `name` is taken only if it names `name` as
/// the leader and lists it among the members. Returns the members to
/// remember; `None` from a controller that lists none (an earlier
/// release).
pub fn judge_welcome(
    name: &str,
    welcome: &pb::Welcome,
) -> Result<Option<BTreeSet<String>>, Refused> {
    if !welcome.leader_name.is_empty() && welcome.leader_name != name {
        return Err(Refused {
            reason: "not_leader",
            detail: format!(
                "controller `{name}` welcomed this agent, but says `{}` leads",
                welcome.leader_name
            ),
        });
    }
    if welcome.controller_names.is_empty() {
        return Ok(None);
    }
    let members: BTreeSet<String> = welcome.controller_names.iter().cloned().collect();
    if !members.contains(name) {
        return Err(Refused {
            reason: "not_member",
            detail: format!("controller `{name}` is not among the members its welcome lists"),
        });
    }
    Ok(Some(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(leader: &str, members: &[&str]) -> pb::Welcome {
        pb::Welcome {
            leader_name: leader.into(),
            controller_names: members.iter().map(|name| name.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_leaders_welcome_gives_the_members_to_remember() {
        let members = judge_welcome("c1", &welcome("c1", &["c1", "c2"])).unwrap();
        assert_eq!(members, Some(["c1".into(), "c2".into()].into()));
    }

    #[test]
    fn a_welcome_from_a_controller_that_is_not_the_leader_it_names_is_refused() {
        let refused = judge_welcome("c2", &welcome("c1", &["c1", "c2"])).unwrap_err();
        assert_eq!(refused.reason, "not_leader");
    }

    #[test]
    fn a_welcome_that_does_not_list_its_sender_is_refused() {
        let refused = judge_welcome("rogue", &welcome("rogue", &["c1"])).unwrap_err();
        assert_eq!(refused.reason, "not_member");
    }

    #[test]
    fn an_earlier_releases_welcome_changes_nothing() {
        assert_eq!(judge_welcome("c1", &pb::Welcome::default()), Ok(None));
    }

    #[tokio::test]
    async fn pinned_names_win_over_the_welcome_and_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(crate::store::open(&dir.path().join("a.redb")).unwrap());
        let refusals = Arc::new(RefusalLog::default());

        let learning = ControllerTrust::new(&[], journal.clone(), refusals.clone());
        assert_eq!(learning.accepted().await.unwrap(), None);
        learning
            .check_welcome("h1:7400", "c1", &welcome("c1", &["c1", "c2"]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            learning.accepted().await.unwrap(),
            Some(["c1".into(), "c2".into()].into())
        );

        let pinned = ControllerTrust::new(&["c9".into()], journal, refusals.clone());
        pinned
            .check_welcome("h9:7400", "c9", &welcome("c9", &["c9", "c8"]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pinned.accepted().await.unwrap(), Some(["c9".into()].into()));

        let refused = pinned
            .check_welcome("h8:7400", "c8", &welcome("c9", &["c9", "c8"]))
            .await
            .unwrap();
        assert!(refused.is_err());
        assert_eq!(refusals.totals()[&(BOUNDARY, "not_leader")], 1);
    }
}
