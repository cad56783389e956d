//! `levee dev`: a one-node cluster plus a local agent, with example specs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use levee_common::agent_config::{AgentConfig, DriftConfig};
use levee_common::identity::{Identity, Role};
use levee_common::pb;
use levee_common::private_files;
use levee_common::tls::TlsFiles;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ca;
use super::client::{CliConfig, Client};
use super::desired::apply_specs;
use super::server::shutdown_signal;
use super::specs::{parse_specs, read_spec_files};
use crate::config::{NodeConfig, RaftConfig};
use crate::node::{self, RunningNode};
use crate::sources::config::{EndpointConfig, WebhooksConfig};
use crate::sources::webhook::Format;

/// The example specs, built in so `levee dev` works from any directory.
const EMBEDDED_SPECS: [(&str, &str); 2] = [
    (
        "clock.yaml",
        include_str!("../../../deploy/examples/specs/clock.yaml"),
    ),
    (
        "repair-clock.yaml",
        include_str!("../../../deploy/examples/specs/repair-clock.yaml"),
    ),
];

const NODE_NAME: &str = "node-1";
const AGENT_NAME: &str = "local";
/// What the example specs select on (`role: demo`).
const DEV_AGENT_LABELS: [(&str, &str); 1] = [("role", "demo")];
const OPERATOR_NAME: &str = "dev-operator";

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Where all state lives: certificates, the Raft store, the agent's
    /// outbox and its services. Starting again with the same directory
    /// keeps everything.
    #[arg(long, default_value = ".levee", env = "LEVEE_DEV_DIR")]
    pub data_dir: PathBuf,
    /// The controller's listen address (agents and API).
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Spec files to load instead of the built-in examples.
    #[arg(long)]
    pub specs: Option<PathBuf>,
    /// The levee-agent binary; by default the one next to this `levee`.
    #[arg(long, env = "LEVEE_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,
}

pub async fn run(args: DevArgs) -> Result<()> {
    let data_dir = absolute(&args.data_dir)?;
    let pki = data_dir.join("pki");
    let agent_bin = find_agent_binary(args.agent_bin.as_deref())?;
    ensure_certificates(&pki)?;

    let shutdown = CancellationToken::new();
    let node_config = NodeConfig {
        node_id: 1,
        listen: args.listen,
        advertise: None,
        data_dir: data_dir.join("controller"),
        tls: TlsFiles::in_dir(&pki, NODE_NAME),
        join: Vec::new(),
        peer_source_address: None,
        raft: RaftConfig {
            bootstrap: true,
            ..RaftConfig::default()
        },
        agents: Default::default(),
        // Free ports, named in the banner: dev should start wherever.
        webhooks: Some(dev_webhooks(&data_dir)?),
        mqtt: Vec::new(),
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        secrets_dir: Some(dev_secrets_dir(&data_dir)?),
    };
    let node = node::start(node_config, shutdown.clone()).await?;
    wait_for_leadership(&node).await?;
    let cli_config = CliConfig {
        endpoint: node.addr.to_string(),
        tls: TlsFiles::in_dir(&pki, OPERATOR_NAME),
    };
    cli_config.write(&data_dir.join("cli.toml"))?;
    let client = cli_config.connect()?;
    // Labels are the cluster's to give, not the agent's to claim: label
    // the local agent as an operator would before it first connects.
    label_local_agent(&client).await?;
    load_specs(&client, args.specs.as_deref()).await?;

    let agent_config = AgentConfig {
        controllers: vec![node.addr.to_string()],
        data_dir: data_dir.join("agent"),
        tls: TlsFiles::in_dir(&pki, AGENT_NAME),
        // Short, so a hand edit of the example's files is undone quickly.
        drift: DriftConfig {
            interval_ms: 5_000,
            correct: true,
        },
        ..Default::default()
    };
    let agent_config_path = data_dir.join("agent.toml");
    std::fs::write(&agent_config_path, agent_config.to_toml()).context("writing agent.toml")?;
    let agent = spawn_agent(&agent_bin, &agent_config_path)?;

    print_banner(&data_dir, &node, &agent_config);
    shutdown_signal().await;
    info!("shutting down");
    stop_agent(agent).await;
    shutdown.cancel();
    node.wait().await
}

/// The data directory, created (or made) owner-only: it holds the CA key,
/// the webhook token and both stores. `pki` marks one an earlier `levee
/// dev` made, which may be tightened.
fn absolute(path: &Path) -> Result<PathBuf> {
    private_files::prepare_dir(path, "pki")?;
    path.canonicalize()
        .with_context(|| format!("resolving {}", path.display()))
}

fn find_agent_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidate = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .with_file_name("levee-agent"),
    };
    if !candidate.is_file() {
        bail!(
            "levee-agent not found at {}: build it with `cargo build --workspace`, or pass --agent-bin",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// A CloudEvents endpoint, `POST /hooks/dev`, with a token made on first
/// start and kept in `<data_dir>/webhook.token`.
fn dev_webhooks(data_dir: &Path) -> Result<WebhooksConfig> {
    let token_file = data_dir.join("webhook.token");
    if !token_file.exists() {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
            .context("reading /dev/urandom for the webhook token")?;
        let token: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        private_files::write(&token_file, token.as_bytes())?;
    } else {
        // One an earlier release wrote under a 022 umask is tightened.
        private_files::ensure_file(&token_file)?;
    }
    Ok(WebhooksConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        cert: None,
        key: None,
        max_body_bytes: 1024 * 1024,
        endpoints: vec![EndpointConfig {
            name: "dev".into(),
            format: Format::CloudEvents,
            token_file: Some(token_file),
            hmac_secret_file: None,
            hmac_header: "x-levee-signature".into(),
            may_name_hosts: false,
            replay_window_s: None,
        }],
    })
}

/// Creates the development CA and certificates on first start; on later
/// ones makes its directory and keys owner-only, as an earlier release may
/// have left the directory readable.
fn ensure_certificates(pki: &Path) -> Result<()> {
    if pki.join("ca.key").exists() {
        private_files::ensure_dir(pki)?;
        for name in ["ca", NODE_NAME, AGENT_NAME, OPERATOR_NAME] {
            let key = pki.join(format!("{name}.key"));
            if key.exists() {
                private_files::ensure_file(&key)?;
            }
        }
        return Ok(());
    }
    info!(dir = %pki.display(), "creating a development CA and certificates");
    let authority = ca::init_ca(pki, "levee-dev", 3650)?;
    let loopback = ["127.0.0.1".parse()?, "::1".parse()?];
    ca::issue(
        &authority,
        &Identity::new(Role::Controller, NODE_NAME),
        &loopback,
        365,
        pki,
    )?;
    ca::issue(
        &authority,
        &Identity::new(Role::Agent, AGENT_NAME),
        &[],
        365,
        pki,
    )?;
    ca::issue(
        &authority,
        &Identity::new(Role::Operator, OPERATOR_NAME),
        &[],
        365,
        pki,
    )?;
    Ok(())
}

async fn wait_for_leadership(node: &RunningNode) -> Result<()> {
    node.raft
        .wait(Some(Duration::from_secs(30)))
        .state(
            openraft::ServerState::Leader,
            "single-node cluster elects itself",
        )
        .await
        .context("the node did not become leader within 30 s")?;
    Ok(())
}

/// Applies the dev specs through the Control API, as `levee apply` does,
/// as the dev operator; the specs the cluster already holds make no new
/// version, so a restart changes nothing.
async fn load_specs(client: &Client, dir: Option<&Path>) -> Result<()> {
    let files: Vec<(String, String)> = match dir {
        Some(dir) => read_spec_files(dir)?,
        None => EMBEDDED_SPECS
            .iter()
            .map(|(name, content)| (format!("<built-in>/{name}"), (*content).to_owned()))
            .collect(),
    };
    // Checked here first, as `levee apply` does, so a bad --specs directory
    // fails with exit code 2 and every problem listed.
    parse_specs(&files)?;
    let response = apply_specs(client, files, "levee dev".into())
        .await
        .context("committing the dev specs")?;
    if response.unchanged {
        info!(
            version = response.version,
            "the cluster already holds these specs"
        );
    } else {
        info!(version = response.version, "dev specs committed");
    }
    Ok(())
}

/// Where `levee dev` reads secrets specs name: `<data dir>/secrets`, one
/// file per secret, owner-only.
fn dev_secrets_dir(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("secrets");
    private_files::ensure_dir(&dir)?;
    Ok(dir)
}

async fn label_local_agent(client: &Client) -> Result<()> {
    let request = pb::LabelAgentRequest {
        agent_id: AGENT_NAME.into(),
        set: DEV_AGENT_LABELS
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        remove: Vec::new(),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.label_agent(request).await }
        })
        .await
        .context("labelling the local agent")?;
    Ok(())
}

fn spawn_agent(binary: &Path, config: &Path) -> Result<Child> {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Asks the agent to stop (SIGTERM) and waits; kills it after a grace period.
async fn stop_agent(mut agent: Child) {
    if let Some(pid) = agent.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(15), agent.wait()).await {
        Ok(Ok(status)) => info!(%status, "agent stopped"),
        _ => {
            warn!("agent did not stop within 15 s; killing it");
            let _ = agent.kill().await;
        }
    }
}

fn print_banner(data_dir: &Path, node: &RunningNode, agent: &AgentConfig) {
    let cli = data_dir.join("cli.toml");
    let default_cli = Path::new(".levee/cli.toml");
    let env_hint = if default_cli.canonicalize().ok().as_deref() == Some(cli.as_path()) {
        String::new()
    } else {
        format!(
            "\n  (from another directory: export LEVEE_CLI_CONFIG={})",
            cli.display()
        )
    };
    let bound = |file: &str| {
        std::fs::read_to_string(data_dir.join("controller").join(file))
            .unwrap_or_else(|_| "(not serving)".into())
    };
    eprintln!(
        "\nLevee dev is running.\n\
         \x20 controller   https://{addr} (one-node Raft cluster, store in {data}/controller)\n\
         \x20 agent        `{agent_name}`, services under {services}\n\
         \x20 certificates {data}/pki\n\
         \x20 metrics      http://{metrics}/metrics\n\
         \x20 webhooks     https://{webhooks}/hooks/dev (CloudEvents; token in {data}/webhook.token)\n\n\
         Try, in another terminal:\n\
         \x20 levee status        levee agents        levee events        levee tasks{env_hint}\n\
         \x20 pkill -KILL -f 'now.txt'   # crash the clock service; Levee repairs it\n\
         \x20 levee plan -f deploy/examples/specs   # what applying the specs would change\n\
         \x20 curl --cacert {data}/pki/ca.crt -H \"Authorization: Bearer $(cat {data}/webhook.token)\" \\\n\
         \x20      -H 'ce-specversion: 1.0' -H 'ce-id: 1' -H 'ce-source: /me' -H 'ce-type: app.hello' \\\n\
         \x20      -H 'Content-Type: application/json' -d '{{\"hi\": 1}}' https://{webhooks}/hooks/dev\n\n\
         Ctrl-C stops everything; starting again keeps all state.\n",
        addr = node.addr,
        data = data_dir.display(),
        agent_name = AGENT_NAME,
        services = agent.data_dir.join("services").display(),
        metrics = bound("metrics.addr"),
        webhooks = bound("webhook.addr"),
    );
}
