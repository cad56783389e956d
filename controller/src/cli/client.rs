//! Connecting the CLI to a controller: endpoint and certificates from
//! flags, environment, or the `cli.toml` that `levee dev` writes.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use levee_common::pb::control_client::ControlClient;
use levee_common::pb::leader_hint;
use levee_common::tls::{TlsFiles, TlsMaterial};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::terminal::escape;

/// Where the CLI finds the controller and its certificate when no flag says.
pub const DEFAULT_CLI_CONFIG: &str = ".levee/cli.toml";

/// How many leader redirects one call follows.
const MAX_REDIRECTS: usize = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Controller address, `host:port`.
    #[arg(long, env = "LEVEE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// CA certificate that signed the controllers' certificates.
    #[arg(long, env = "LEVEE_CA", requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
    /// Operator certificate.
    #[arg(long, env = "LEVEE_CERT", requires_all = ["ca", "key"])]
    pub cert: Option<PathBuf>,
    /// Operator private key.
    #[arg(long, env = "LEVEE_KEY", requires_all = ["ca", "cert"])]
    pub key: Option<PathBuf>,
    /// A file holding all of the above (written by `levee dev`).
    #[arg(long, env = "LEVEE_CLI_CONFIG", default_value = DEFAULT_CLI_CONFIG)]
    pub cli_config: PathBuf,
}

/// The contents of `cli.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    pub endpoint: String,
    pub tls: TlsFiles,
}

impl CliConfig {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).context("encoding cli config")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// An API client that follows leader redirects by itself.
pub struct Client {
    tls: TlsMaterial,
    endpoint: String,
}

impl ClientArgs {
    pub fn connect(&self) -> Result<Client> {
        let file_config = if self.cli_config.exists() {
            let text = std::fs::read_to_string(&self.cli_config)
                .with_context(|| format!("reading {}", self.cli_config.display()))?;
            Some(
                toml::from_str::<CliConfig>(&text)
                    .with_context(|| format!("parsing {}", self.cli_config.display()))?,
            )
        } else {
            None
        };
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| file_config.as_ref().map(|config| config.endpoint.clone()))
            .ok_or_else(|| anyhow!(
                "no controller given: pass --endpoint with --ca/--cert/--key, or run `levee dev` here to create {}",
                self.cli_config.display()
            ))?;
        let files = match (&self.ca, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => file_config.map(|config| config.tls).ok_or_else(|| {
                anyhow!("no operator certificate given: pass --ca, --cert and --key")
            })?,
        };
        CliConfig {
            endpoint,
            tls: files,
        }
        .connect()
    }
}

impl CliConfig {
    /// A client for this endpoint with this operator certificate; `levee
    /// dev` uses it to apply its specs as its operator.
    pub fn connect(&self) -> Result<Client> {
        let tls = self
            .tls
            .load()
            .context("loading the operator certificate")?;
        Ok(Client {
            tls,
            endpoint: self.endpoint.clone(),
        })
    }
}

impl Client {
    fn channel(&self, addr: &str) -> Result<Channel> {
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .with_context(|| format!("bad controller address `{addr}`"))?
            .tls_config(self.tls.client_config())?
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30));
        Ok(endpoint.connect_lazy())
    }

    /// Calls the Control API, following the leader when a follower answers.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(ControlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut addr = self.endpoint.clone();
        for _ in 0..=MAX_REDIRECTS {
            let client = ControlClient::new(self.channel(&addr)?);
            match call(client).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => match leader_hint(&status) {
                    Some(leader) if leader != addr => addr = leader,
                    _ => return Err(describe(status, &addr)),
                },
            }
        }
        bail!("gave up after {MAX_REDIRECTS} leader redirects")
    }
}

/// Turns a status into an error a person can act on. The message may
/// echo what a peer sent (an event type, an agent's report), so it is
/// escaped here, where it enters the CLI, line breaks included.
fn describe(status: Status, addr: &str) -> anyhow::Error {
    let hint = match status.code() {
        Code::Unavailable
            if status.message().contains("connect") || status.message().contains("transport") =>
        {
            format!(" (is a controller running at {addr}?)")
        }
        Code::Unauthenticated | Code::PermissionDenied => {
            " (check --cert/--key: an operator certificate from the cluster CA is required)".into()
        }
        _ => String::new(),
    };
    anyhow!(
        "{}: {}{hint}",
        code_name(status.code()),
        escape(status.message())
    )
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "invalid request",
        Code::Unavailable => "controller unavailable",
        Code::Unauthenticated => "not authenticated",
        Code::PermissionDenied => "permission denied",
        Code::DeadlineExceeded => "timed out",
        _ => "request failed",
    }
}
