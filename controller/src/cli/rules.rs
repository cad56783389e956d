//! `levee rules test --events FILE.jsonl [-f SPECS]`: what the rules and
//! the planner would have done with recorded events, against the current
//! state. Nothing is committed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use levee_common::pb;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::ClientArgs;
use super::output::{OutputFormat, Row, listed, print_rows};
use super::specs::{parse_specs, read_spec_files, wire_files};
use super::terminal::print_line;
use crate::api::trial::{self, SavedState};
use crate::state::records::LogPosition;

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Each rule: its action, how often it acted or held back, its signal
    /// and window.
    List(super::query::QueryArgs),
    /// Run recorded events through the rules and the planner, changing
    /// nothing, and print what would have happened.
    ///
    /// Each line of the file is one JSON event:
    /// `{"agent": "edge-1", "type": "app.load", "subject": "web",
    /// "data": {"cpu": 93}, "time_ms": 1795930693114}` (`subject`, `data`
    /// and `time_ms` are optional).
    Test(TestArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Events, one JSON object per line.
    #[arg(long)]
    pub events: PathBuf,
    /// Try the rules in these specs instead of the committed ones.
    #[arg(long = "file", short = 'f')]
    pub specs: Option<PathBuf>,
    /// Run against a state saved by `levee state save` instead of the
    /// cluster's (no controller is contacted).
    #[arg(long)]
    pub state: Option<PathBuf>,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    agent: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    time_ms: i64,
}

pub async fn run(command: RulesCommand) -> Result<()> {
    let args = match command {
        RulesCommand::List(args) => return super::automation::rules(args).await,
        RulesCommand::Test(args) => args,
    };
    let text = std::fs::read_to_string(&args.events)
        .with_context(|| format!("reading {}", args.events.display()))?;
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not an event", args.events.display(), number + 1))?;
        events.push(pb::TrialEvent {
            agent_id: line.agent,
            r#type: line.event_type,
            subject: line.subject,
            data_json: line.data.to_string(),
            time_unix_ms: line.time_ms,
        });
    }
    if events.is_empty() {
        bail!("{} holds no events", args.events.display());
    }
    let files = match &args.specs {
        Some(path) => {
            let files = read_spec_files(path)?;
            parse_specs(&files)?;
            wire_files(files)
        }
        None => Vec::new(),
    };
    let request = pb::TestRulesRequest {
        events,
        files,
        stale: false,
    };
    let response = match &args.state {
        Some(path) => {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let saved: SavedState = serde_json::from_slice(&text).with_context(|| {
                format!(
                    "{} is not a state saved by `levee state save`",
                    path.display()
                )
            })?;
            let after = LogPosition {
                index: saved.applied_index,
                term: saved.applied_term,
            };
            let now = crate::clock::now_ms();
            trial::run(saved.state, after, request, now)?
        }
        None => {
            let client = args.client.connect()?;
            client
                .call(|mut c| {
                    let request = request.clone();
                    async move { c.test_rules(request).await }
                })
                .await?
        }
    };
    match args.output {
        OutputFormat::Json => out!(
            "{}",
            super::json_output::to_json(&json!({
                "events": response.events.iter().map(Row::json).collect::<Vec<_>>(),
                "targets": response.targets.iter().map(|t| json!({
                    "service": t.service, "from": t.from, "to": t.to,
                })).collect::<Vec<_>>(),
            }))?
        ),
        OutputFormat::Table => {
            print_rows(&response.events, OutputFormat::Table, "no events");
            for target in &response.targets {
                print_line(&format!(
                    "{}: {} -> {} replicas",
                    target.service, target.from, target.to
                ));
            }
            out!("Nothing was changed: this ran on a copy of the state.");
        }
    }
    Ok(())
}

impl Row for pb::TrialOutcome {
    const HEADERS: &'static [&'static str] = &["TYPE", "AGENT", "OUTCOMES", "CHANGES"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.r#type.clone(),
            self.agent_id.clone(),
            listed(&self.outcomes, "; "),
            listed(&self.changes, "; "),
        ]
    }

    fn json(&self) -> Value {
        json!({ "type": self.r#type, "agent_id": self.agent_id, "rules": self.rules,
                "outcomes": self.outcomes, "changes": self.changes })
    }
}
