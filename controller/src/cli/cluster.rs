//! `levee cluster init | join | leave | status`.

use anyhow::Result;
use levee_common::pb;
use serde_json::{Value, json};

use super::client::ClientArgs;
use super::output::{OutputFormat, Row, print_rows};
use super::query::QueryArgs;
use super::terminal::print_line;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the leader, term, commit and applied index, and each member's replication lag.
    Status(QueryArgs),
    /// Make the controller at --endpoint, started with an empty store, a one-node cluster.
    Init {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add the controller at ADDR: as a learner, then as a voter once it caught up.
    Join {
        /// The new node's advertised `host:port`.
        addr: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a node from the cluster. Its id can never be used again.
    Leave {
        /// The node id to remove.
        node_id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Status(args) => status(args).await,
        ClusterCommand::Init { client } => {
            let client = client.connect()?;
            let members = client
                .call(|mut c| async move { c.init_cluster(pb::InitClusterRequest {}).await })
                .await?;
            print_members("initialised", &members);
            Ok(())
        }
        ClusterCommand::Join { addr, client } => {
            let client = client.connect()?;
            let request = pb::JoinNodeRequest { addr: addr.clone() };
            let members = client
                .call(|mut c| {
                    let request = request.clone();
                    async move { c.join_node(request).await }
                })
                .await?;
            print_members(&format!("{addr} joined"), &members);
            Ok(())
        }
        ClusterCommand::Leave { node_id, client } => {
            let client = client.connect()?;
            let members = client
                .call(|mut c| async move { c.leave_node(pb::LeaveNodeRequest { node_id }).await })
                .await?;
            print_members(&format!("node {node_id} removed"), &members);
            Ok(())
        }
    }
}

fn print_members(what: &str, members: &pb::MembershipResponse) {
    print_line(&format!(
        "{what}; voters: {:?}, learners: {:?}",
        members.voters, members.learners
    ));
}

async fn status(args: QueryArgs) -> Result<()> {
    let client = args.client.connect()?;
    let status = client
        .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
        .await?;
    match args.output {
        OutputFormat::Json => super::json_output::print_json(&status.json())?,
        OutputFormat::Table => {
            print_line(&format!(
                "node {} is {}; leader {} ({}), term {}, committed {}, applied {}, compacted through {}",
                status.node_id,
                status.state,
                status.leader_id,
                if status.leader_addr.is_empty() {
                    "unknown"
                } else {
                    &status.leader_addr
                },
                status.term,
                status.committed,
                status.last_applied,
                status.purged
            ));
            print_rows(&status.members, OutputFormat::Table, "no members");
        }
    }
    Ok(())
}

impl Row for pb::MemberInfo {
    const HEADERS: &'static [&'static str] = &["NODE", "NAME", "ADDRESS", "ROLE", "MATCHED", "LAG"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.node_id.to_string(),
            if self.name.is_empty() {
                "-".into()
            } else {
                self.name.clone()
            },
            self.addr.clone(),
            if self.voter { "voter" } else { "learner" }.into(),
            if self.matched_index == 0 {
                "-".into()
            } else {
                self.matched_index.to_string()
            },
            if self.matched_index == 0 {
                "-".into()
            } else {
                self.lag.to_string()
            },
        ]
    }

    fn json(&self) -> Value {
        json!({"node_id": self.node_id, "name": self.name, "addr": self.addr, "voter": self.voter, "matched_index": self.matched_index, "lag": self.lag})
    }
}
