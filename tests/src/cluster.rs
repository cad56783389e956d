//! Controllers, agents and the CLI, as real processes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use levee_common::agent_config::{AgentConfig, LinkConfig};
use levee_common::tls::TlsFiles;
use serde_json::Value;
use tempfile::TempDir;

use crate::process::{Running, binary, kill_workloads_under};
use crate::proxy::FaultProxy;
use crate::wait::wait_until;

/// How long a controller gets to start and elect itself.
const STARTUP: Duration = Duration::from_secs(60);

/// A test's directory and certificates. Dropped last: it ends any workload
/// left under its directory, then removes the directory.
pub struct TestEnv {
    dir: TempDir,
    pub pki: Pki,
    /// Extra lines for the `[raft]` table of every controller config.
    pub raft_options: String,
    /// Lines for the `[agents]` table of every controller config.
    pub agents_options: String,
    /// Tables appended to every controller config (`[webhooks]`,
    /// `[[mqtt]]`).
    pub controller_options: String,
    /// Top-level keys for every controller config (`metrics_listen`).
    pub controller_keys: String,
    /// Controller names that may add themselves (`raft.join_allowed` of
    /// every controller config): the harness's own nodes, `node-<id>`.
    pub join_allowed: Vec<String>,
}

/// Node ids the harness allows to join by themselves.
const HARNESS_NODES: u64 = 9;

/// The cluster CA and certificates, made with `levee ca`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    fn create(dir: PathBuf) -> Self {
        run_levee(&["ca", "init", "--dir", path_str(&dir)]).expect("levee ca init");
        Self { dir }
    }

    /// Issues a certificate (once) and returns its files.
    pub fn issue(&self, role: &str, name: &str) -> TlsFiles {
        let files = TlsFiles::in_dir(&self.dir, name);
        if !files.cert.exists() {
            let mut args = vec![
                "ca",
                "issue",
                "--dir",
                path_str(&self.dir),
                "--role",
                role,
                "--name",
                name,
            ];
            if role == "controller" {
                args.extend(["--ip", "127.0.0.1"]);
            }
            run_levee(&args).unwrap_or_else(|err| panic!("levee ca issue {role} {name}: {err}"));
        }
        files
    }
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("levee-test-")
            .tempdir()
            .expect("temp dir");
        let pki = Pki::create(dir.path().join("pki"));
        Self {
            dir,
            pki,
            raft_options: String::new(),
            agents_options: String::new(),
            controller_options: String::new(),
            controller_keys: String::new(),
            join_allowed: (1..=HARNESS_NODES)
                .map(|node_id| format!("node-{node_id}"))
                .collect(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a single-node controller that bootstraps its own cluster.
    pub fn start_controller(&self, node_id: u64) -> ControllerProcess {
        let mut controller = self.controller(node_id, &[]);
        controller.start();
        controller
    }

    /// Starts `size` controllers: node 1 bootstraps, the others join it.
    /// Returns once every node is a voter and they agree on a leader.
    pub fn start_cluster(&self, size: u64) -> Cluster {
        let mut first = self.controller(1, &[]);
        first.start();
        let mut nodes = vec![first];
        for node_id in 2..=size {
            let mut node = self.controller(node_id, &[nodes[0].addr.as_str()]);
            node.start();
            nodes.push(node);
        }
        let cluster = Cluster { nodes };
        cluster.wait_for_leader();
        cluster
    }

    /// A controller's config and process guard, not started yet. With no
    /// `join` peers it bootstraps a new cluster.
    pub fn controller(&self, node_id: u64, join: &[&str]) -> ControllerProcess {
        self.controller_config(node_id, join, join.is_empty())
    }

    /// A controller that neither bootstraps nor joins by itself: it waits
    /// for `levee cluster join` (start it with `start_unjoined`).
    pub fn unjoined_controller(&self, node_id: u64) -> ControllerProcess {
        self.controller_config(node_id, &[], false)
    }

    fn controller_config(&self, node_id: u64, join: &[&str], bootstrap: bool) -> ControllerProcess {
        self.controller_with(node_id, join, bootstrap, free_port(), None)
    }

    /// Starts `size` controllers, each behind a [`FaultProxy`] that peers
    /// and agents dial (its advertised address), each dialling its peers
    /// from its own source address 127.0.0.(10 + id), so a test can cut
    /// any link. Returns the cluster and the proxies, by node index.
    pub fn start_cluster_behind_proxies(&self, size: u64) -> (Cluster, Vec<FaultProxy>) {
        let mut nodes = Vec::new();
        let mut proxies: Vec<FaultProxy> = Vec::new();
        for node_id in 1..=size {
            let port = free_port();
            let proxy = FaultProxy::start(format!("127.0.0.1:{port}"));
            let source = source_address(node_id);
            let join: Vec<&str> = if node_id == 1 {
                Vec::new()
            } else {
                vec![proxies[0].addr.as_str()]
            };
            let mut node = self.controller_with(
                node_id,
                &join,
                node_id == 1,
                port,
                Some((&proxy.addr, source)),
            );
            node.start();
            nodes.push(node);
            proxies.push(proxy);
        }
        let cluster = Cluster { nodes };
        cluster.wait_for_leader();
        (cluster, proxies)
    }

    fn controller_with(
        &self,
        node_id: u64,
        join: &[&str],
        bootstrap: bool,
        port: u16,
        routing: Option<(&str, IpAddr)>,
    ) -> ControllerProcess {
        let name = format!("node-{node_id}");
        let tls = self.pki.issue("controller", &name);
        let routing = routing
            .map(|(advertise, source)| {
                format!("advertise = \"{advertise}\"\npeer_source_address = \"{source}\"\n")
            })
            .unwrap_or_default();
        let data_dir = self.path().join(&name);
        let config_path = self.path().join(format!("{name}.toml"));
        let peers = join
            .iter()
            .map(|peer| format!("\"{peer}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "node_id = {node_id}\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\njoin = [{peers}]\n{routing}\n{}\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n[raft]\nbootstrap = {}\njoin_allowed = {:?}\n{}\n\n[agents]\n{}\n\n{}\n",
            data_dir.display(),
            self.controller_keys,
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display(),
            bootstrap,
            self.join_allowed,
            self.raft_options,
            self.agents_options,
            self.controller_options,
        );
        std::fs::write(&config_path, config).expect("write controller config");
        let operator = self.pki.issue("operator", "tester");
        ControllerProcess {
            node_id,
            data_dir,
            addr: format!("127.0.0.1:{port}"),
            config_path,
            log: self.path().join(format!("{name}.log")),
            operator,
            process: None,
        }
    }

    /// Starts an agent named `name`, labelled `labels` by an operator (and
    /// reporting them as its facts too), pointed at `controllers`.
    pub fn start_agent(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        controllers: &[&ControllerProcess],
    ) -> AgentProcess {
        self.start_agent_with(name, labels, controllers, |_| {})
    }

    /// As [`TestEnv::start_agent`], with `configure` changing the config
    /// before it is written (drift checks, log limits...).
    pub fn start_agent_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        controllers: &[&ControllerProcess],
        configure: impl FnOnce(&mut AgentConfig),
    ) -> AgentProcess {
        let (config, config_path) = self.write_agent_config(name, labels, controllers, configure);
        let mut agent = AgentProcess {
            name: name.to_owned(),
            config,
            config_path,
            log: self.path().join(format!("agent-{name}.log")),
            process: None,
        };
        agent.start();
        agent
    }

    /// Writes the config (and issues the certificate) of an agent named
    /// `name` without starting it; returns the config and its path.
    pub fn write_agent_config(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        controllers: &[&ControllerProcess],
        configure: impl FnOnce(&mut AgentConfig),
    ) -> (AgentConfig, PathBuf) {
        let tls = self.pki.issue("agent", name);
        label_agent(name, labels, controllers);
        let config = AgentConfig {
            controllers: controllers
                .iter()
                .map(|controller| controller.addr.clone())
                .collect(),
            data_dir: self.path().join(format!("agent-{name}")),
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>(),
            tls,
            link: LinkConfig {
                reconnect_min_ms: 50,
                reconnect_max_ms: 1000,
                ..LinkConfig::default()
            },
            ..Default::default()
        };
        let mut config = config;
        configure(&mut config);
        let config_path = self.path().join(format!("agent-{name}.toml"));
        std::fs::write(&config_path, config.to_toml()).expect("write agent config");
        (config, config_path)
    }

    /// Writes spec files into a fresh directory and returns it.
    pub fn write_specs(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).expect("spec dir");
        for (file, content) in files {
            std::fs::write(dir.join(file), content).expect("spec file");
        }
        dir
    }
}

/// Gives `agent` its `labels` as an operator would (`levee agents label`),
/// through whichever of `controllers` answers: placement and rules use
/// only labels the cluster gave.
fn label_agent(agent: &str, labels: &[(&str, &str)], controllers: &[&ControllerProcess]) {
    if labels.is_empty() || controllers.is_empty() {
        return;
    }
    let changes: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["agents", "label", agent];
    args.extend(changes.iter().map(String::as_str));
    wait_until(&format!("agent {agent} labelled"), STARTUP, || {
        let mut errors = Vec::new();
        for controller in controllers {
            match controller.run(&args) {
                Ok(_) => return Ok(()),
                Err(err) => errors.push(err),
            }
        }
        Err(errors.join("; "))
    });
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        kill_workloads_under(self.dir.path());
        // Set LEVEE_TEST_KEEP=1 to keep the directory (logs, stores) for a look.
        if std::env::var_os("LEVEE_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("kept the test directory {}", dir.keep().display());
        }
    }
}

/// A `levee server` process.
pub struct ControllerProcess {
    pub node_id: u64,
    pub addr: String,
    /// Its store and bound addresses.
    pub data_dir: PathBuf,
    config_path: PathBuf,
    /// Its stderr (logs).
    pub log: PathBuf,
    operator: TlsFiles,
    process: Option<Running>,
}

impl ControllerProcess {
    /// Starts (or restarts) the node and waits until it is a voter of a
    /// cluster with a known leader.
    pub fn start(&mut self) {
        self.spawn();
        let node_id = self.node_id;
        wait_until(
            &format!("controller {node_id} to be a voter with a known leader"),
            STARTUP,
            || {
                let status = self.status()?;
                let is_voter = status["members"].as_array().is_some_and(|members| {
                    members
                        .iter()
                        .any(|member| member["node_id"] == node_id && member["voter"] == true)
                });
                if status["leader_id"].as_u64().unwrap_or(0) != 0 && is_voter {
                    Ok(())
                } else {
                    Err(format!("status: {status}\nlog:\n{}", self.log_tail()))
                }
            },
        );
    }

    fn spawn(&mut self) {
        let mut command = Command::new(binary("levee"));
        command
            .arg("server")
            .arg("--config")
            .arg(&self.config_path)
            .env("LEVEE_LOG_FORMAT", "json");
        self.process = Some(Running::spawn(
            &format!("controller {}", self.node_id),
            command,
            &self.log,
        ));
    }

    /// The address its metrics listener bound (`metrics_listen` with port
    /// 0), once it has.
    pub fn metrics_addr(&self) -> String {
        let path = self.data_dir.join("metrics.addr");
        wait_until(
            &format!("controller {} to serve metrics", self.node_id),
            STARTUP,
            || std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display())),
        )
    }

    /// The address its webhook receiver bound (`[webhooks] listen` with
    /// port 0), once it has.
    pub fn webhook_addr(&self) -> String {
        let path = self.data_dir.join("webhook.addr");
        wait_until(
            &format!("controller {} to serve webhooks", self.node_id),
            STARTUP,
            || std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display())),
        )
    }

    /// Starts the node without waiting for membership; returns once it
    /// answers.
    pub fn start_unjoined(&mut self) {
        self.spawn();
        wait_until(
            &format!("controller {} to answer", self.node_id),
            STARTUP,
            || self.status().map(drop),
        );
    }

    /// Runs `levee <args>` against this controller; Ok(stdout) or Err(stderr).
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut full: Vec<&str> = args.to_vec();
        full.extend([
            "--endpoint",
            &self.addr,
            "--ca",
            path_str(&self.operator.ca),
            "--cert",
            path_str(&self.operator.cert),
            "--key",
            path_str(&self.operator.key),
        ]);
        run_levee(&full)
    }

    /// Runs `levee <args>` and returns its exit code, stdout and stderr,
    /// whatever the code.
    pub fn run_with_code(&self, args: &[&str]) -> (i32, String, String) {
        let mut full: Vec<&str> = args.to_vec();
        full.extend([
            "--endpoint",
            &self.addr,
            "--ca",
            path_str(&self.operator.ca),
            "--cert",
            path_str(&self.operator.cert),
            "--key",
            path_str(&self.operator.key),
        ]);
        let output = Command::new(binary("levee"))
            .args(&full)
            .env("LEVEE_CLI_CONFIG", "/nonexistent/levee-cli.toml")
            .output()
            .expect("run levee");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Waits until `count` agents have a session to the leader.
    pub fn wait_for_connected_agents(&self, count: usize) {
        wait_until(&format!("{count} agent(s) connected"), STARTUP, || {
            let agents = self.cli(&["agents"])?;
            let connected = agents.as_array().map_or(0, |agents| {
                agents.iter().filter(|a| a["connected"] == true).count()
            });
            if connected >= count {
                Ok(())
            } else {
                Err(format!("{connected} connected: {agents}"))
            }
        });
    }

    /// This node's own view (`levee cluster status`), asked of it directly.
    pub fn status(&self) -> Result<Value, String> {
        self.cli(&["cluster", "status"])
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// SIGSTOP or SIGCONT, to freeze and thaw the node.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.process
            .as_ref()
            .expect("controller is running")
            .signal(signal);
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("controller is running").pid()
    }

    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(Running::log_tail)
            .unwrap_or_default()
    }

    /// How many lines of the node's JSON log contain every one of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> usize {
        lines_with(&self.log, needles)
    }

    /// Runs `levee <args> --output json` against this controller.
    pub fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--output", "json"]);
        let stdout = self.run(&full)?;
        serde_json::from_str(&stdout)
            .map_err(|err| format!("levee {args:?} printed non-JSON ({err}): {stdout}"))
    }

    /// Runs `levee apply -f DIR --no-wait` against this controller: it
    /// returns once the version is committed.
    pub fn apply(&self, dir: &Path) -> Result<String, String> {
        self.run(&["apply", "-f", path_str(dir), "--no-wait"])
    }
}

/// Several controllers forming one cluster.
pub struct Cluster {
    pub nodes: Vec<ControllerProcess>,
}

impl Cluster {
    /// Waits until every node but `cut_off` (frozen, isolated or dead)
    /// names the same leader, other than `cut_off`; returns its node id.
    pub fn wait_for_leader_without(&self, cut_off: usize) -> u64 {
        let old_id = self.nodes[cut_off].node_id;
        wait_until("the other nodes to agree on a new leader", STARTUP, || {
            let mut leaders = BTreeSet::new();
            for (index, node) in self.nodes.iter().enumerate() {
                if index != cut_off && node.is_running() {
                    leaders.insert(node.status()?["leader_id"].as_u64().unwrap_or(0));
                }
            }
            match leaders.iter().next() {
                Some(&leader) if leaders.len() == 1 && leader != 0 && leader != old_id => {
                    Ok(leader)
                }
                _ => Err(format!("leaders named: {leaders:?}")),
            }
        })
    }

    /// Waits until a running node says it leads and every running node
    /// names that node as leader; returns its index in `nodes`.
    pub fn wait_for_leader(&self) -> usize {
        wait_until("the running nodes to agree on one leader", STARTUP, || {
            let mut leaders = Vec::new();
            for node in self.nodes.iter().filter(|node| node.is_running()) {
                let status = node.status()?;
                leaders.push((
                    node.node_id,
                    status["leader_id"].as_u64().unwrap_or(0),
                    status["state"].clone(),
                ));
            }
            let leader_id = leaders.first().map(|(_, leader, _)| *leader).unwrap_or(0);
            let agreed =
                leader_id != 0 && leaders.iter().all(|(_, leader, _)| *leader == leader_id);
            let leads = leaders
                .iter()
                .any(|(node, _, state)| *node == leader_id && state == "leader");
            match self.nodes.iter().position(|node| node.node_id == leader_id) {
                Some(index) if agreed && leads => Ok(index),
                _ => Err(format!("views (node, leader, state): {leaders:?}")),
            }
        })
    }

    /// Any running node, for CLI calls (which follow the leader).
    pub fn any(&self) -> &ControllerProcess {
        self.nodes
            .iter()
            .find(|node| node.is_running())
            .expect("a running node")
    }

    pub fn node_refs(&self) -> Vec<&ControllerProcess> {
        self.nodes.iter().collect()
    }
}

/// A `levee-agent` process.
pub struct AgentProcess {
    pub name: String,
    pub config: AgentConfig,
    config_path: PathBuf,
    /// Its stderr (logs).
    pub log: PathBuf,
    process: Option<Running>,
}

impl AgentProcess {
    pub fn start(&mut self) {
        // A restart binds another port: never read the last one's.
        let _ = std::fs::remove_file(self.config.data_dir.join("metrics.addr"));
        let mut command = Command::new(binary("levee-agent"));
        command
            .arg("--config")
            .arg(&self.config_path)
            .env("LEVEE_LOG_FORMAT", "json");
        self.process = Some(Running::spawn(
            &format!("agent {}", self.name),
            command,
            &self.log,
        ));
    }

    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Rewrites its config file with `configure`'s changes; they apply
    /// from the next start.
    pub fn reconfigure(&mut self, configure: impl FnOnce(&mut AgentConfig)) {
        configure(&mut self.config);
        std::fs::write(&self.config_path, self.config.to_toml()).expect("write agent config");
    }

    /// The address its metrics listener bound (`metrics_listen` with port
    /// 0), once it has.
    pub fn metrics_addr(&self) -> String {
        let path = self.config.data_dir.join("metrics.addr");
        wait_until(
            &format!("agent {} to serve metrics", self.name),
            STARTUP,
            || std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display())),
        )
    }

    /// Runs `levee-agent emit TYPE --data DATA` against this agent's socket.
    pub fn emit(&self, event_type: &str, data: &str) -> Result<String, String> {
        self.emit_about(event_type, "load", data)
    }

    /// As [`AgentProcess::emit`], about `subject`.
    pub fn emit_about(
        &self,
        event_type: &str,
        subject: &str,
        data: &str,
    ) -> Result<String, String> {
        let output = Command::new(binary("levee-agent"))
            .arg("--config")
            .arg(&self.config_path)
            .args(["emit", event_type, "--data", data, "--subject", subject])
            .output()
            .map_err(|err| err.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// The directory of `service` on this agent.
    pub fn service_dir(&self, service: &str) -> PathBuf {
        self.config.service_dir(service)
    }

    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(Running::log_tail)
            .unwrap_or_default()
    }

    /// How many lines of the agent's JSON log contain every one of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> usize {
        lines_with(&self.log, needles)
    }
}

/// How many lines of the log at `path` contain every one of `needles`.
fn lines_with(path: &Path, needles: &[&str]) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

/// The loopback address node `node_id` dials its peers from in proxied
/// clusters.
pub fn source_address(node_id: u64) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + node_id as u8])
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// Runs `levee` with `args`; Ok(stdout) on success, Err(stderr) otherwise.
pub fn run_levee(args: &[&str]) -> Result<String, String> {
    let output = Command::new(binary("levee"))
        .args(args)
        .env_remove("LEVEE_CLI_CONFIG")
        .env("LEVEE_CLI_CONFIG", "/nonexistent/levee-cli.toml")
        .output()
        .map_err(|err| err.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "exit {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
