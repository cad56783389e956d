//! mTLS material for tonic: the CA that anchors trust, and this process's
//! own certificate and key. Every Levee connection is mutually
//! authenticated; there is no plaintext mode.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};

use crate::identity::CONTROLLER_SERVER_NAME;

/// Paths of the three PEM files a process needs. The default (empty
/// paths) exists only so configs holding it can be built with
/// `..Default::default()`; loading it fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// This process's private key.
    pub key: PathBuf,
}

/// The loaded PEM contents of [`TlsFiles`].
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what}")]
    NotPem { what: &'static str, path: PathBuf },
}

impl TlsFiles {
    /// `ca.crt` plus `<stem>.crt` and `<stem>.key`, all in `dir`.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        Self {
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        Ok(TlsMaterial {
            ca_pem: read_pem(&self.ca, "CA certificate", "CERTIFICATE")?,
            cert_pem: read_pem(&self.cert, "certificate", "CERTIFICATE")?,
            key_pem: read_pem(&self.key, "private key", "PRIVATE KEY")?,
        })
    }
}

impl TlsMaterial {
    /// Server side: present our certificate and require a client
    /// certificate signed by the cluster CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(TlsIdentity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .timeout(std::time::Duration::from_secs(10))
    }

    /// Client side: trust only the cluster CA, accept only a controller
    /// certificate, and present ours.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(CONTROLLER_SERVER_NAME)
            .identity(TlsIdentity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

fn read_pem(path: &Path, what: &'static str, label: &str) -> Result<String, TlsError> {
    let content = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    if !content.contains("-----BEGIN ") || !content.contains(label) {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
        });
    }
    Ok(content)
}

/// Selects ring as the process-wide rustls provider. Call first thing in
/// `main`: if two providers end up linked, rustls cannot choose and panics.
pub fn install_crypto_provider() {
    // An Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
