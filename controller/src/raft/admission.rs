//! Which controller certificates this node's Raft transport serves: only a
//! current member's (voter or learner, in the latest membership this node
//! knows), and a Raft message only from the node that certificate maps
//! to. A refused call never reaches openraft, so it changes no term and
//! no log.

use thiserror::Error;

use super::ClusterMembership;
use super::node::member_named;

/// Why a controller certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("controller `{name}` is not a member of this cluster")]
    NotMember { name: String },
    #[error("controller `{name}` speaks as node {node_id}, which was removed from this cluster")]
    Removed { name: String, node_id: u64 },
    #[error("controller `{name}` is node {member}, but the message is from node {claimed}")]
    WrongSender {
        name: String,
        member: u64,
        claimed: u64,
    },
}

impl Refusal {
    /// The label the refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotMember { .. } => "not_member",
            Refusal::Removed { .. } => "removed",
            Refusal::WrongSender { .. } => "wrong_sender",
        }
    }
}

/// The node a call from certificate `name` speaks for. `claimed` is the
/// sender id a Raft message states (the vote's leader or candidate), and
/// must be that node; `removed` tells the ids removed from the cluster
/// (asked only to say why a call is refused).
///
/// A node that belongs to no cluster yet (no voters) admits any
/// controller: the leader that adds it as a learner replicates to it
/// before its log holds the membership. A member an earlier release
/// recorded without a name is admitted by the id it claims until it is
/// named.
pub fn admit(
    membership: &ClusterMembership,
    removed: impl Fn(u64) -> bool,
    name: &str,
    claimed: Option<u64>,
) -> Result<Option<u64>, Refusal> {
    if membership.voter_ids().next().is_none() {
        return Ok(claimed);
    }
    if let Some(member) = member_named(membership, name) {
        return match claimed {
            Some(claimed) if claimed != member => Err(Refusal::WrongSender {
                name: name.to_owned(),
                member,
                claimed,
            }),
            _ => Ok(Some(member)),
        };
    }
    match claimed {
        Some(claimed) if removed(claimed) => Err(Refusal::Removed {
            name: name.to_owned(),
            node_id: claimed,
        }),
        Some(claimed)
            if membership
                .get_node(&claimed)
                .is_some_and(|node| node.name.is_empty()) =>
        {
            Ok(Some(claimed))
        }
        _ => Err(Refusal::NotMember {
            name: name.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::raft::node::ControllerNode;

    /// Voters 1 (c1) and 2 (c2), learner 3 (c3), and voter 4 recorded by
    /// an earlier release, without a name.
    fn membership() -> ClusterMembership {
        let nodes = BTreeMap::from([
            (1, ControllerNode::new("h1:7400", "c1")),
            (2, ControllerNode::new("h2:7400", "c2")),
            (3, ControllerNode::new("h3:7400", "c3")),
            (4, ControllerNode::new("h4:7400", "")),
        ]);
        ClusterMembership::new(vec![BTreeSet::from([1, 2, 4])], nodes).unwrap()
    }

    fn removed() -> impl Fn(u64) -> bool {
        |node_id| node_id == 9
    }

    #[test]
    fn members_are_admitted_as_the_node_their_certificate_maps_to() {
        let membership = membership();
        assert_eq!(admit(&membership, removed(), "c1", Some(1)), Ok(Some(1)));
        assert_eq!(admit(&membership, removed(), "c3", Some(3)), Ok(Some(3)));
        assert_eq!(admit(&membership, removed(), "c2", None), Ok(Some(2)));
    }

    #[test]
    fn a_member_may_not_speak_for_another_node() {
        assert_eq!(
            admit(&membership(), removed(), "c2", Some(1)),
            Err(Refusal::WrongSender {
                name: "c2".into(),
                member: 2,
                claimed: 1
            })
        );
    }

    #[test]
    fn unknown_and_removed_certificates_are_refused() {
        let membership = membership();
        for claimed in [None, Some(1), Some(7)] {
            let refused = admit(&membership, removed(), "stranger", claimed).unwrap_err();
            assert_eq!(refused.reason(), "not_member", "{claimed:?}");
        }
        let refused = admit(&membership, removed(), "c9", Some(9)).unwrap_err();
        assert_eq!(refused.reason(), "removed");
        // A removed node's name is a stranger's once it left the membership.
        assert_eq!(
            admit(&membership, removed(), "c9", None)
                .unwrap_err()
                .reason(),
            "not_member"
        );
    }

    #[test]
    fn an_unnamed_member_is_admitted_only_by_its_own_id() {
        let membership = membership();
        assert_eq!(admit(&membership, removed(), "c4", Some(4)), Ok(Some(4)));
        assert!(admit(&membership, removed(), "c4", None).is_err());
        // A named member's id cannot be claimed that way.
        assert!(admit(&membership, removed(), "c4", Some(1)).is_err());
    }

    #[test]
    fn a_node_in_no_cluster_yet_admits_the_leader_that_adds_it() {
        let empty = ClusterMembership::default();
        assert_eq!(admit(&empty, removed(), "c1", Some(1)), Ok(Some(1)));
    }
}
