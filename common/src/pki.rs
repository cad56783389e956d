//! The cluster's certificate authority: creating it, and issuing
//! certificates that carry a Levee identity.
//!
//! The clock is a parameter: callers pass `now`, so this module stays pure
//! and testable.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use thiserror::Error;
use time::OffsetDateTime;

use crate::identity::{CONTROLLER_SERVER_NAME, Identity, Role};

/// How far back `not_before` is set, so hosts with a slightly slow clock
/// accept a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A PEM certificate with its PEM private key.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA able to issue certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("identity name: {0}")]
    Identity(#[from] crate::identity::IdentityError),
}

impl CertificateAuthority {
    /// Creates a new self-signed CA valid for `validity` from `now`.
    pub fn create(
        cluster_name: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&format!("Levee CA {cluster_name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now, validity);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        Ok(Self {
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a certificate for `identity` with a fresh key.
    ///
    /// Controllers get the shared server name, `localhost`, the given IP
    /// addresses, and both server and client usage (they dial each other).
    /// Agents and operators are clients only.
    pub fn issue(
        &self,
        identity: &Identity,
        ips: &[IpAddr],
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<CertifiedKey, PkiError> {
        crate::identity::check_name(&identity.name)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&identity.name);
        params
            .subject_alt_names
            .push(SanType::URI(identity.to_uri().try_into()?));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if identity.role == Role::Controller {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
            params
                .subject_alt_names
                .push(SanType::DnsName(CONTROLLER_SERVER_NAME.try_into()?));
            params
                .subject_alt_names
                .push(SanType::DnsName("localhost".try_into()?));
            params
                .subject_alt_names
                .extend(ips.iter().copied().map(SanType::IpAddress));
        }
        set_validity(&mut params, now, validity);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl CertifiedKey {
    /// Writes `<stem>.crt` and `<stem>.key` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(), PkiError> {
        write_file(&dir.join(format!("{stem}.crt")), &self.cert_pem, 0o644)?;
        write_file(&dir.join(format!("{stem}.key")), &self.key_pem, 0o600)
    }
}

/// Writes a PEM file with exactly the given permission bits, whatever the
/// umask and whatever mode a file already there had (a key rewritten over
/// a world-readable one must not stay readable). Missing parents are
/// created owner-only: they will hold private keys.
pub fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::private_files::DIR_MODE)
            .create(parent)
            .map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    std::io::Write::write_all(&mut file, content.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Levee");
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, now: OffsetDateTime, validity: Duration) {
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn der(pem: &str) -> Vec<u8> {
        rustls_pem(pem)
    }

    fn rustls_pem(pem: &str) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn issued_certificates_carry_their_identity() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = CertificateAuthority::create("test", now, 10 * DAY).unwrap();
        for identity in [
            Identity::new(Role::Agent, "edge-1"),
            Identity::new(Role::Controller, "node-1"),
        ] {
            let issued = ca
                .issue(&identity, &["127.0.0.1".parse().unwrap()], now, DAY)
                .unwrap();
            assert_eq!(
                Identity::from_certificate_der(&der(&issued.cert_pem)).unwrap(),
                identity
            );
        }
    }

    #[test]
    fn a_ca_reloaded_from_pem_issues_the_same_way() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = CertificateAuthority::create("test", now, DAY).unwrap();
        let reloaded = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let issued = reloaded
            .issue(&Identity::new(Role::Operator, "alice"), &[], now, DAY)
            .unwrap();
        assert_eq!(
            Identity::from_certificate_der(&der(&issued.cert_pem))
                .unwrap()
                .role,
            Role::Operator
        );
    }

    #[test]
    fn a_bad_name_is_refused_before_signing() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = CertificateAuthority::create("test", now, DAY).unwrap();
        assert!(
            ca.issue(&Identity::new(Role::Agent, "../x"), &[], now, DAY)
                .is_err()
        );
    }

    #[test]
    fn keys_are_owner_only_even_over_a_readable_file_and_in_new_directories() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        let now = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = CertificateAuthority::create("test", now, DAY).unwrap();
        let issued = ca
            .issue(&Identity::new(Role::Agent, "edge-1"), &[], now, DAY)
            .unwrap();
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("pki");
        issued.write(&dir, "edge-1").unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("edge-1.key")), 0o600);
        assert_eq!(mode(&dir.join("edge-1.crt")), 0o644);

        std::fs::set_permissions(
            dir.join("edge-1.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        issued.write(&dir, "edge-1").unwrap();
        assert_eq!(mode(&dir.join("edge-1.key")), 0o600);
    }
}
