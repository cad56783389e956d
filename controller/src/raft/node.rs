//! What the membership records of each controller: where to dial it, and
//! the name its certificate carries (`levee://controller/<name>`), so a
//! peer's certificate maps to exactly one member.

use std::fmt;

use openraft::async_runtime::WatchReceiver;
use serde::{Deserialize, Serialize};

use super::{ClusterMembership, LeveeRaft};

/// A member controller. Serialised like openraft's `BasicNode` plus
/// `name`, so memberships an earlier release stored (`{"addr": ...}`)
/// still load, with an empty name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerNode {
    /// The `host:port` peers and agents dial.
    pub addr: String,
    /// Its certificate's name: from the verified certificate at join time
    /// or from the node's own at initialisation, never from a message.
    /// Empty for a member an earlier release added, until it is named
    /// (`levee cluster join <addr>` again).
    #[serde(default)]
    pub name: String,
}

impl ControllerNode {
    pub fn new(addr: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ControllerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            f.write_str(&self.addr)
        } else {
            write!(f, "{} at {}", self.name, self.addr)
        }
    }
}

/// The member whose certificate name is `name`, if any.
pub fn member_named(membership: &ClusterMembership, name: &str) -> Option<u64> {
    membership
        .nodes()
        .find(|(_, node)| !name.is_empty() && node.name == name)
        .map(|(node_id, _)| *node_id)
}

/// Every member's certificate name (voters and learners), unnamed ones
/// left out, in node id order.
pub fn member_names(membership: &ClusterMembership) -> Vec<String> {
    membership
        .nodes()
        .filter(|(_, node)| !node.name.is_empty())
        .map(|(_, node)| node.name.clone())
        .collect()
}

/// What a welcome tells an agent: every member's name, and this node's
/// (the leader's, since only the leader welcomes).
pub fn names_for_agents(raft: &LeveeRaft, node_id: u64) -> (Vec<String>, String) {
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    let membership = metrics.membership_config.membership();
    let own = membership
        .get_node(&node_id)
        .map(|node| node.name.clone())
        .unwrap_or_default();
    (member_names(membership), own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_stored_by_an_earlier_release_loads_without_a_name() {
        let stored = r#"{"addr":"10.0.0.1:7400"}"#;
        let node: ControllerNode = serde_json::from_str(stored).unwrap();
        assert_eq!(node, ControllerNode::new("10.0.0.1:7400", ""));
    }

    #[test]
    fn an_earlier_release_reads_the_address_of_a_named_node() {
        let written = serde_json::to_string(&ControllerNode::new("10.0.0.1:7400", "c1")).unwrap();
        let basic: openraft::BasicNode = serde_json::from_str(&written).unwrap();
        assert_eq!(basic.addr, "10.0.0.1:7400");
    }
}
