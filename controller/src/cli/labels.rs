//! `levee agents label`: the labels the cluster gives an agent, which
//! selectors, spreads and rules match.

use anyhow::Result;
use levee_common::pb;
use serde_json::json;

use super::client::ClientArgs;
use super::output::OutputFormat;

#[derive(Debug, Clone, clap::Args)]
pub struct LabelArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The agent to label; it need not have connected yet.
    pub agent: String,
    /// `key=value` sets a label, `key-` removes one.
    #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
    pub changes: Vec<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// Splits `key=value` and `key-` arguments into labels to set and remove.
pub fn label_changes(changes: &[String]) -> Result<pb::LabelAgentRequest> {
    let mut request = pb::LabelAgentRequest::default();
    for change in changes {
        if let Some((key, value)) = change.split_once('=') {
            request.set.insert(key.to_owned(), value.to_owned());
        } else if let Some(key) = change.strip_suffix('-') {
            request.remove.push(key.to_owned());
        } else {
            anyhow::bail!(
                "`{}`: write `key=value` to set a label or `key-` to remove it",
                change.escape_debug()
            );
        }
    }
    Ok(request)
}

pub async fn label(args: LabelArgs) -> Result<()> {
    let request = pb::LabelAgentRequest {
        agent_id: args.agent.clone(),
        ..label_changes(&args.changes)?
    };
    let client = args.client.connect()?;
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.label_agent(request).await }
        })
        .await?;
    let labels: std::collections::BTreeMap<_, _> = response.labels.into_iter().collect();
    match args.output {
        OutputFormat::Json => {
            super::json_output::print_json(&json!({"agent": args.agent, "labels": labels}))?;
        }
        OutputFormat::Table => {
            let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            super::terminal::print_line(&format!(
                "{} is labelled {}",
                args.agent,
                if shown.is_empty() {
                    "with nothing".to_owned()
                } else {
                    shown.join(", ")
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_changes_set_and_remove_and_refuse_anything_else() {
        let request = label_changes(&["role=web".into(), "zone-".into(), "empty=".into()]).unwrap();
        assert_eq!(request.set.get("role").map(String::as_str), Some("web"));
        assert_eq!(request.set.get("empty").map(String::as_str), Some(""));
        assert_eq!(request.remove, vec!["zone".to_owned()]);
        let err = label_changes(&["role".into()]).unwrap_err().to_string();
        assert!(err.contains("key=value"), "{err}");
    }
}
