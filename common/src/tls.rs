//! mTLS material for tonic: the CA that anchors trust, and this process's
//! own certificate and key. Every Levee connection is mutually
//! authenticated; there is no plaintext mode.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
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
    #[error("the TLS material does not make a configuration: {0}")]
    Config(String),
}

/// The ALPN protocol gRPC speaks; set on configs built here, as tonic
/// sets it on its own.
const ALPN_H2: &[u8] = b"h2";

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

    /// Server side, for a listener that does its own handshakes (to see
    /// and log the ones that fail): what [`Self::server_config`] does,
    /// as a rustls config.
    pub fn rustls_server_config(&self) -> Result<ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder(Arc::new(self.roots()?))
            .build()
            .map_err(config_error)?;
        let mut config = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, self.key()?)
            .map_err(config_error)?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }

    /// The cluster CA's check of a server certificate, for a verifier
    /// that checks more on top (see [`Self::rustls_client_config`]).
    pub fn webpki_server_verifier(&self) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
        WebPkiServerVerifier::builder(Arc::new(self.roots()?))
            .build()
            .map_err(config_error)
    }

    /// Client side, checking the server with `verifier`, which should
    /// wrap [`Self::webpki_server_verifier`]; dial with the server name
    /// [`CONTROLLER_SERVER_NAME`].
    pub fn rustls_client_config(
        &self,
        verifier: Arc<dyn ServerCertVerifier>,
    ) -> Result<ClientConfig, TlsError> {
        let mut config = ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain()?, self.key()?)
            .map_err(config_error)?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(certificate.map_err(config_error)?)
                .map_err(config_error)?;
        }
        Ok(roots)
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(config_error)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(config_error)
    }
}

fn config_error(err: impl std::fmt::Display) -> TlsError {
    TlsError::Config(err.to_string())
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
