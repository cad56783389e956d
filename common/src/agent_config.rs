//! The agent's configuration file. It lives here, not in the agent crate,
//! because `levee dev` and the system tests write it too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::allowed_roots::whole_host_roots;
use crate::event::MAX_EVENT_FIELD_BYTES;
use crate::event::types::LOG_MATCHED;
use crate::resource::Probe;
use crate::tls::TlsFiles;

/// The default has no controllers, an empty data directory and no TLS
/// files, so it does not validate: it is the base that `levee dev`, the
/// tests and the system harness fill in with `..Default::default()`, each
/// naming only what it sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Every controller's `host:port`; the agent finds the leader itself.
    pub controllers: Vec<String>,
    /// Pins the certificate names (`levee://controller/<name>`) of the
    /// controllers this agent accepts. Unset, it accepts any controller
    /// certificate of the cluster CA until its first session, and from
    /// then on only the members the leader's welcome lists (kept in its
    /// store, renewed at every session).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controller_names: Vec<String>,
    /// Holds the outbox, the task journal and the services' directories.
    pub data_dir: PathBuf,
    /// Facts this host reports about itself (`levee agents` shows them).
    /// They are not labels: selectors, spreads and rules match only
    /// labels an operator gives (`levee agents label`), and a service
    /// matches facts only through its `placement.facts`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Directories resources may touch. Empty means `<data_dir>/services`.
    /// `/` or a system directory (`/etc`, `/usr`, ...; see
    /// [`crate::allowed_roots`]) is refused unless
    /// `i_know_this_is_the_whole_host` is set.
    #[serde(default)]
    pub allowed_roots: Vec<PathBuf>,
    /// Lets `allowed_roots` name `/` or a system directory, handing tasks
    /// the whole host; the agent warns at every start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub i_know_this_is_the_whole_host: bool,
    /// Where to serve Prometheus metrics, `GET /metrics`, plain HTTP: bind
    /// it to 127.0.0.1 or a private address. Off when unset. Port 0 picks a
    /// free port, written to `<data_dir>/metrics.addr` once bound.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    pub tls: TlsFiles,
    #[serde(default)]
    pub link: LinkConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub drift: DriftConfig,
    /// Thresholds on this host's metrics, each turned into events.
    #[serde(default, rename = "metric")]
    pub metrics: Vec<MetricThreshold>,
    /// Files and directories whose changes become `host.file.changed`.
    #[serde(default, rename = "watch")]
    pub watches: Vec<FileWatch>,
    /// Probes run on a schedule: `host.check.failed` when one starts
    /// failing, `host.check.recovered` when it passes again.
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
    /// Files followed like `tail -F`, whose lines matching a regex become
    /// events.
    #[serde(default, rename = "log_pattern")]
    pub log_patterns: Vec<LogPattern>,
}

/// A health check of something on this host, probed every `interval_ms`.
/// It becomes failing after `unhealthy_threshold` failures in a row, which
/// sends one `host.check.failed`, and recovers after `healthy_threshold`
/// passes in a row, which sends one `host.check.recovered`. A check that is
/// healthy from the start sends nothing. Command probes run in `data_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Names the check in its events (the subject).
    pub name: String,
    /// `{ http = { port, path } }` (2xx or 3xx passes), `{ tcp = { port } }`
    /// (a connection is accepted) or `{ command = { argv } }` (exit 0), all
    /// against 127.0.0.1.
    pub probe: Probe,
    #[serde(default = "default_check_interval_ms")]
    pub interval_ms: u64,
    /// A probe not answered within this fails.
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Failures in a row that make the check failing.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Passes in a row that make a failing check healthy again.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
}

fn default_check_interval_ms() -> u64 {
    10_000
}

fn default_check_timeout_ms() -> u64 {
    2_000
}

fn default_unhealthy_threshold() -> u32 {
    3
}

fn default_healthy_threshold() -> u32 {
    1
}

/// A file followed like `tail -F`: from its end when the agent starts (old
/// lines are not replayed), across rename rotation and truncation, and
/// waited for while it does not exist. Each complete line matching `regex`
/// becomes an event, at most `max_events_per_minute`; matches past that
/// are counted, and the next event carries the count as `suppressed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPattern {
    /// Names the pattern in its events (the subject).
    pub name: String,
    /// The file to follow; absolute.
    pub path: PathBuf,
    /// A Rust `regex`; named groups (`(?P<code>\d+)`) go into the event's
    /// `captures`. Checked when the agent loads its config.
    pub regex: String,
    /// The events' type; must not start with `levee.`.
    #[serde(default = "default_log_event_type")]
    pub event_type: String,
    #[serde(default = "default_max_events_per_minute")]
    pub max_events_per_minute: u32,
    /// How often the file is checked for new lines, rotation and truncation.
    #[serde(default = "default_log_poll_ms")]
    pub poll_ms: u64,
}

fn default_log_event_type() -> String {
    LOG_MATCHED.to_owned()
}

fn default_max_events_per_minute() -> u32 {
    60
}

fn default_log_poll_ms() -> u64 {
    250
}

impl Default for LogPattern {
    /// Every field but `name`, `path` and `regex` as an omitted key would
    /// leave it.
    fn default() -> Self {
        Self {
            name: String::new(),
            path: PathBuf::new(),
            regex: String::new(),
            event_type: default_log_event_type(),
            max_events_per_minute: default_max_events_per_minute(),
            poll_ms: default_log_poll_ms(),
        }
    }
}

/// A file, or a directory's entries (not recursive), to watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWatch {
    pub path: PathBuf,
    /// Changes to one path within this window make one event.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
}

fn default_debounce_ms() -> u64 {
    200
}

impl Default for FileWatch {
    /// Every field but `path` as an omitted key would leave it.
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            debounce_ms: default_debounce_ms(),
        }
    }
}

/// Which host metric a threshold watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Percent of CPU time busy, across all cores, since the last sample.
    Cpu,
    /// Percent of memory in use (total minus available).
    Memory,
    /// Percent of the filesystem at `path` in use.
    Disk,
    /// The one-minute load average.
    Load1,
}

/// One threshold: `host.metric.exceeded` when the metric stays past
/// `above` (or under `below`) for `sustained_ms`, then nothing more until
/// it has come back past `clear` (hysteresis), which sends
/// `host.metric.cleared`. A noisy signal thus makes one event, not many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricThreshold {
    /// Names the threshold in its events (the subject).
    pub name: String,
    pub metric: Metric,
    #[serde(default)]
    pub above: Option<f64>,
    #[serde(default)]
    pub below: Option<f64>,
    /// Where the metric must come back to before the threshold re-arms;
    /// defaults to the threshold itself.
    #[serde(default)]
    pub clear: Option<f64>,
    #[serde(default)]
    pub sustained_ms: u64,
    #[serde(default = "default_metric_interval_ms")]
    pub interval_ms: u64,
    /// For `disk`: a path on the filesystem to watch.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

fn default_metric_interval_ms() -> u64 {
    5_000
}

/// How the agent talks to the controllers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// First reconnect delay; doubles up to `reconnect_max_ms`, with jitter.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Most events sent in one batch.
    pub batch_max_events: usize,
    /// Most unacknowledged events kept on disk; past it the oldest are
    /// dropped and counted.
    pub outbox_max_events: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            batch_max_events: 500,
            outbox_max_events: 1_000_000,
        }
    }
}

/// Where workloads' output goes: `<data_dir>/logs/<process>/stdout.log`
/// and `stderr.log`, rotated so a chatty workload cannot fill the disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Largest size of one log file; past it the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept per stream (`stdout.log.1` .. `stdout.log.<keep>`).
    pub keep: u32,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// The periodic comparison of the host with the desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Between two checks; 0 turns drift detection off.
    pub interval_ms: u64,
    /// Converge a drifted service again, rather than only reporting it.
    pub correct: bool,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            interval_ms: 30_000,
            correct: true,
        }
    }
}

/// Names become event subjects: non-empty, short enough, and unique
/// within their kind so events say which one they are about.
fn check_names(kind: &str, names: &[&str]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if name.is_empty() || name.len() > MAX_EVENT_FIELD_BYTES {
            return Err(format!(
                "{kind} `{name}`: the name must be 1 to {MAX_EVENT_FIELD_BYTES} bytes"
            ));
        }
        if !seen.insert(*name) {
            return Err(format!("{kind} `{name}`: the name is used twice"));
        }
    }
    Ok(())
}

#[derive(Debug, Error)]
pub enum AgentConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, AgentConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: AgentConfig =
            toml::from_str(&text).map_err(|err| AgentConfigError::Invalid {
                path: path.to_owned(),
                message: err.to_string(),
            })?;
        config
            .validate()
            .map_err(|message| AgentConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.controllers.is_empty() {
            return Err("`controllers` must list at least one controller address".into());
        }
        for name in &self.controller_names {
            crate::identity::check_name(name).map_err(|err| format!("controller_names: {err}"))?;
        }
        if self.link.reconnect_min_ms == 0
            || self.link.reconnect_max_ms < self.link.reconnect_min_ms
        {
            return Err(
                "link.reconnect_min_ms must be at least 1 and at most link.reconnect_max_ms".into(),
            );
        }
        if self.link.batch_max_events == 0 || self.link.outbox_max_events == 0 {
            return Err(
                "link.batch_max_events and link.outbox_max_events must be at least 1".into(),
            );
        }
        if self.logs.max_bytes == 0 {
            return Err("logs.max_bytes must be at least 1".into());
        }
        for watch in &self.watches {
            if !watch.path.is_absolute() {
                return Err(format!(
                    "watch `{}`: the path must be absolute",
                    watch.path.display()
                ));
            }
        }
        for threshold in &self.metrics {
            let name = &threshold.name;
            if threshold.above.is_some() == threshold.below.is_some() {
                return Err(format!(
                    "metric `{name}`: give exactly one of `above` or `below`"
                ));
            }
            if threshold.interval_ms == 0 {
                return Err(format!("metric `{name}`: `interval_ms` must be at least 1"));
            }
            if threshold.metric == Metric::Disk && threshold.path.is_none() {
                return Err(format!("metric `{name}`: `disk` needs a `path`"));
            }
            let wrong_side = match (threshold.above, threshold.below, threshold.clear) {
                (Some(above), _, Some(clear)) => clear > above,
                (_, Some(below), Some(clear)) => clear < below,
                _ => false,
            };
            if wrong_side {
                return Err(format!(
                    "metric `{name}`: `clear` must be on the normal side of the threshold"
                ));
            }
        }
        self.validate_checks()?;
        self.validate_log_patterns()?;
        self.validate_allowed_roots()
    }

    /// `/` and system directories only with the flag that says so.
    fn validate_allowed_roots(&self) -> Result<(), String> {
        if self.i_know_this_is_the_whole_host {
            return Ok(());
        }
        let found = whole_host_roots(&self.allowed_roots);
        let Some(first) = found.first() else {
            return Ok(());
        };
        Err(format!(
            "allowed_roots: {first} is {}: every task could then change the system itself; \
             name a directory of its own (such as /srv/levee), or set \
             `i_know_this_is_the_whole_host = true` if that is what you mean",
            if first.resolved == Path::new("/") {
                "the whole filesystem"
            } else {
                "a system directory"
            }
        ))
    }

    fn validate_checks(&self) -> Result<(), String> {
        let names: Vec<&str> = self
            .checks
            .iter()
            .map(|check| check.name.as_str())
            .collect();
        check_names("check", &names)?;
        for check in &self.checks {
            let name = &check.name;
            if check.interval_ms == 0 || check.timeout_ms == 0 {
                return Err(format!(
                    "check `{name}`: `interval_ms` and `timeout_ms` must be at least 1"
                ));
            }
            if check.unhealthy_threshold == 0 || check.healthy_threshold == 0 {
                return Err(format!(
                    "check `{name}`: `unhealthy_threshold` and `healthy_threshold` must be at least 1"
                ));
            }
            match &check.probe {
                Probe::Http { port: 0, .. } | Probe::Tcp { port: 0 } => {
                    return Err(format!("check `{name}`: the probe's port must not be 0"));
                }
                Probe::Command { argv } if argv.is_empty() => {
                    return Err(format!(
                        "check `{name}`: the command probe's `argv` is empty"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Everything but the regex itself, which the agent compiles (this
    /// crate has no regex engine).
    fn validate_log_patterns(&self) -> Result<(), String> {
        let names: Vec<&str> = self
            .log_patterns
            .iter()
            .map(|pattern| pattern.name.as_str())
            .collect();
        check_names("log_pattern", &names)?;
        for pattern in &self.log_patterns {
            let name = &pattern.name;
            if !pattern.path.is_absolute() {
                return Err(format!("log_pattern `{name}`: the path must be absolute"));
            }
            if pattern.regex.is_empty() {
                return Err(format!("log_pattern `{name}`: `regex` is empty"));
            }
            let event_type = &pattern.event_type;
            if event_type.is_empty() || event_type.len() > MAX_EVENT_FIELD_BYTES {
                return Err(format!(
                    "log_pattern `{name}`: `event_type` must be 1 to {MAX_EVENT_FIELD_BYTES} bytes"
                ));
            }
            if event_type.starts_with("levee.") {
                return Err(format!(
                    "log_pattern `{name}`: `event_type` `{event_type}` is reserved (`levee.*`)"
                ));
            }
            if pattern.max_events_per_minute == 0 || pattern.poll_ms == 0 {
                return Err(format!(
                    "log_pattern `{name}`: `max_events_per_minute` and `poll_ms` must be at least 1"
                ));
            }
        }
        Ok(())
    }

    /// Where service `name` keeps its files and runs.
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("services").join(name)
    }

    /// Where workloads' output goes, one owner-only directory per process.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// The roots resources may touch.
    pub fn roots(&self) -> Vec<PathBuf> {
        if self.allowed_roots.is_empty() {
            vec![self.data_dir.join("services")]
        } else {
            self.allowed_roots.clone()
        }
    }

    pub fn to_toml(&self) -> String {
        // Serialising a struct of strings, paths and maps cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_agent_config_in_deploy_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/agent.toml");
        let config = AgentConfig::load(&path).unwrap();
        assert_eq!(config.labels["arch"], "x86_64");
        assert_eq!(
            config.roots(),
            [PathBuf::from("/var/lib/levee-agent/services")]
        );
    }

    #[test]
    fn a_written_config_reads_back_the_same() {
        let config = AgentConfig {
            controllers: vec!["127.0.0.1:1".into()],
            controller_names: vec!["node-1".into(), "node-2".into()],
            data_dir: "/tmp/a".into(),
            labels: BTreeMap::from([("role".into(), "demo".into())]),
            allowed_roots: vec![],
            i_know_this_is_the_whole_host: false,
            metrics_listen: Some("127.0.0.1:9464".parse().unwrap()),
            tls: TlsFiles {
                ca: "ca".into(),
                cert: "c".into(),
                key: "k".into(),
            },
            link: LinkConfig::default(),
            logs: LogsConfig {
                max_bytes: 4096,
                keep: 1,
            },
            drift: DriftConfig {
                interval_ms: 0,
                correct: false,
            },
            metrics: vec![MetricThreshold {
                name: "busy".into(),
                metric: Metric::Cpu,
                above: Some(90.0),
                below: None,
                clear: Some(70.0),
                sustained_ms: 30_000,
                interval_ms: 1_000,
                path: None,
            }],
            watches: vec![FileWatch {
                path: "/etc/app.conf".into(),
                debounce_ms: 100,
            }],
            checks: vec![Check {
                name: "web".into(),
                probe: Probe::Http {
                    port: 8080,
                    path: "/healthz".into(),
                },
                interval_ms: 1_000,
                timeout_ms: 500,
                unhealthy_threshold: 2,
                healthy_threshold: 2,
            }],
            log_patterns: vec![LogPattern {
                name: "oom".into(),
                path: "/var/log/kern.log".into(),
                regex: r"Out of memory: Killed process (?P<pid>\d+)".into(),
                event_type: "app.oom".into(),
                max_events_per_minute: 5,
                poll_ms: 100,
            }],
        };
        assert_eq!(
            toml::from_str::<AgentConfig>(&config.to_toml()).unwrap(),
            config
        );
    }

    const MINIMAL: &str = r#"
        controllers = ["127.0.0.1:1"]
        data_dir = "/tmp/a"
        [tls]
        ca = "ca"
        cert = "c"
        key = "k"
    "#;

    #[test]
    fn logs_and_drift_sections_default_when_absent_and_fill_in_missing_keys() {
        let config: AgentConfig = toml::from_str(MINIMAL).unwrap();
        assert_eq!(
            config.metrics_listen, None,
            "metrics are off unless asked for"
        );
        assert_eq!(config.logs.max_bytes, 10 * 1024 * 1024);
        assert_eq!(config.logs.keep, 3);
        assert_eq!(config.drift.interval_ms, 30_000);
        assert!(config.drift.correct);

        let partial = format!("{MINIMAL}\n[logs]\nkeep = 7\n[drift]\ncorrect = false\n");
        let config: AgentConfig = toml::from_str(&partial).unwrap();
        assert_eq!(
            (config.logs.max_bytes, config.logs.keep),
            (10 * 1024 * 1024, 7)
        );
        assert_eq!(
            (config.drift.interval_ms, config.drift.correct),
            (30_000, false)
        );
    }

    #[test]
    fn unknown_keys_and_a_zero_log_size_are_refused() {
        let typo = format!("{MINIMAL}\n[drift]\ninterval = 5\n");
        let err = toml::from_str::<AgentConfig>(&typo).unwrap_err();
        assert!(err.to_string().contains("interval"), "{err}");

        let zero = format!("{MINIMAL}\n[logs]\nmax_bytes = 0\n");
        let config: AgentConfig = toml::from_str(&zero).unwrap();
        assert!(config.validate().unwrap_err().contains("logs.max_bytes"));
    }

    #[test]
    fn metric_thresholds_must_say_which_way_and_clear_on_the_right_side() {
        for (table, problem) in [
            (
                "name = \"x\"\nmetric = \"cpu\"",
                "exactly one of `above` or `below`",
            ),
            (
                "name = \"x\"\nmetric = \"cpu\"\nabove = 80.0\nbelow = 10.0",
                "exactly one",
            ),
            (
                "name = \"x\"\nmetric = \"disk\"\nabove = 80.0",
                "needs a `path`",
            ),
            (
                "name = \"x\"\nmetric = \"cpu\"\nabove = 80.0\nclear = 90.0",
                "normal side",
            ),
        ] {
            let text = format!("{MINIMAL}\n[[metric]]\n{table}\n");
            let config: AgentConfig = toml::from_str(&text).unwrap();
            let err = config.validate().unwrap_err();
            assert!(err.contains(problem), "{table}: {err}");
        }
        let typo = format!("{MINIMAL}\n[[metric]]\nname = \"x\"\nmetric = \"gpu\"\nabove = 1.0\n");
        assert!(toml::from_str::<AgentConfig>(&typo).is_err());
    }

    #[test]
    fn the_rust_defaults_are_what_omitted_keys_give() {
        let config: AgentConfig = toml::from_str(MINIMAL).unwrap();
        let defaults = AgentConfig {
            controllers: config.controllers.clone(),
            data_dir: config.data_dir.clone(),
            tls: config.tls.clone(),
            ..Default::default()
        };
        assert_eq!(config, defaults);
        let text = format!(
            "{MINIMAL}\n[[watch]]\npath = \"/etc/a\"\n\
             [[log_pattern]]\nname = \"e\"\npath = \"/var/log/a\"\nregex = \"E\"\n"
        );
        let config: AgentConfig = toml::from_str(&text).unwrap();
        assert_eq!(
            config.watches[0],
            FileWatch {
                path: "/etc/a".into(),
                ..Default::default()
            }
        );
        assert_eq!(
            config.log_patterns[0],
            LogPattern {
                name: "e".into(),
                path: "/var/log/a".into(),
                regex: "E".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn checks_and_log_patterns_take_their_defaults() {
        let text = format!(
            "{MINIMAL}\n[[check]]\nname = \"db\"\nprobe = {{ tcp = {{ port = 5432 }} }}\n\
             [[log_pattern]]\nname = \"errors\"\npath = \"/var/log/app.log\"\nregex = \"ERROR\"\n"
        );
        let config: AgentConfig = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        let check = &config.checks[0];
        assert_eq!(check.probe, Probe::Tcp { port: 5432 });
        assert_eq!(
            (
                check.interval_ms,
                check.timeout_ms,
                check.unhealthy_threshold,
                check.healthy_threshold
            ),
            (10_000, 2_000, 3, 1)
        );
        let pattern = &config.log_patterns[0];
        assert_eq!(pattern.event_type, "host.log.matched");
        assert_eq!((pattern.max_events_per_minute, pattern.poll_ms), (60, 250));
    }

    #[test]
    fn bad_checks_and_log_patterns_are_refused_with_their_name() {
        let check = "[[check]]\nname = \"web\"\nprobe = { tcp = { port = 80 } }";
        let pattern = "[[log_pattern]]\nname = \"errors\"\npath = \"/var/log/a\"\nregex = \"E\"";
        for (table, problem) in [
            (format!("{check}\nunhealthy_threshold = 0"), "check `web`"),
            (format!("{check}\ntimeout_ms = 0"), "check `web`"),
            (
                "[[check]]\nname = \"web\"\nprobe = { tcp = { port = 0 } }".into(),
                "port must not be 0",
            ),
            (
                "[[check]]\nname = \"web\"\nprobe = { command = { argv = [] } }".into(),
                "`argv` is empty",
            ),
            (format!("{check}\n{check}"), "`web`: the name is used twice"),
            (
                format!("{pattern}\nevent_type = \"levee.fake\""),
                "log_pattern `errors`: `event_type` `levee.fake` is reserved",
            ),
            (
                pattern.replace("/var/log/a", "log/a"),
                "log_pattern `errors`: the path must be absolute",
            ),
            (
                format!("{pattern}\nmax_events_per_minute = 0"),
                "at least 1",
            ),
            (pattern.replace("\"errors\"", "\"\""), "the name must be"),
        ] {
            let text = format!("{MINIMAL}\n{table}\n");
            let config: AgentConfig = toml::from_str(&text).unwrap();
            let err = config.validate().unwrap_err();
            assert!(err.contains(problem), "{table}: {err}");
        }
        let typo = format!("{MINIMAL}\n{check}\nintervall_ms = 5\n");
        assert!(toml::from_str::<AgentConfig>(&typo).is_err());
    }

    #[test]
    fn whole_host_roots_are_refused_naming_the_root_and_the_flag() {
        for (roots, named) in [
            ("[\"/\"]", "`/` is the whole filesystem"),
            ("[\"/srv/app\", \"/etc\"]", "`/etc` is a system directory"),
            (
                "[\"/srv/../usr\"]",
                "`/srv/../usr` (which resolves to `/usr`) is a system directory",
            ),
        ] {
            let text = format!("allowed_roots = {roots}\n{MINIMAL}");
            let config: AgentConfig = toml::from_str(&text).unwrap();
            let err = config.validate().unwrap_err();
            assert!(err.contains(named), "{roots}: {err}");
            assert!(
                err.contains("i_know_this_is_the_whole_host = true"),
                "{roots}: {err}"
            );

            let allowed = format!("i_know_this_is_the_whole_host = true\n{text}");
            let config: AgentConfig = toml::from_str(&allowed).unwrap();
            config.validate().unwrap();
            assert_eq!(
                toml::from_str::<AgentConfig>(&config.to_toml()).unwrap(),
                config,
                "the flag is written back"
            );
        }
        let own = format!("allowed_roots = [\"/srv/app\", \"/etc/nginx\"]\n{MINIMAL}");
        toml::from_str::<AgentConfig>(&own)
            .unwrap()
            .validate()
            .unwrap();
    }
}
