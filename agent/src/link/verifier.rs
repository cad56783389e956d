//! The agent's check of a controller's certificate, in the TLS handshake:
//! the cluster CA's (webpki) first, then the certificate must state a
//! controller identity (`levee://controller/<name>`) whose name this agent
//! accepts. The name (or why it was refused) is left in [`Seen`] for the
//! session, which checks the welcome against it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use levee_common::identity::{Identity, Role};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::trust::Refused;

/// What one handshake's verification found.
#[derive(Debug, Default)]
pub struct Seen {
    /// The verified controller's certificate name.
    pub name: Option<String>,
    pub refused: Option<Refused>,
}

#[derive(Debug)]
pub struct MemberVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// `None`: any controller of the cluster CA (before the first session).
    accepted: Option<BTreeSet<String>>,
    seen: Arc<Mutex<Seen>>,
}

impl MemberVerifier {
    pub fn new(
        webpki: Arc<WebPkiServerVerifier>,
        accepted: Option<BTreeSet<String>>,
        seen: Arc<Mutex<Seen>>,
    ) -> Self {
        Self {
            webpki,
            accepted,
            seen,
        }
    }

    fn judge(&self, end_entity: &CertificateDer<'_>) -> Result<String, Refused> {
        let identity =
            Identity::from_certificate_der(end_entity.as_ref()).map_err(|err| Refused {
                reason: "not_controller",
                detail: err.to_string(),
            })?;
        if identity.role != Role::Controller {
            return Err(Refused {
                reason: "not_controller",
                detail: format!("the server's certificate is for `{identity}`"),
            });
        }
        match &self.accepted {
            Some(accepted) if !accepted.contains(&identity.name) => Err(Refused {
                reason: "not_member",
                detail: format!(
                    "controller `{}` is not one of this agent's cluster's controllers ({})",
                    identity.name,
                    accepted.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
            _ => Ok(identity.name),
        }
    }

    fn record(&self, outcome: Result<String, Refused>) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match outcome {
            Ok(name) => seen.name = Some(name),
            Err(refused) => seen.refused = Some(refused),
        }
    }
}

impl ServerCertVerifier for MemberVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .inspect_err(|err| {
                self.record(Err(Refused {
                    reason: "untrusted_certificate",
                    detail: err.to_string(),
                }));
            })?;
        let judged = self.judge(end_entity);
        let refused = judged.as_ref().err().map(|refused| refused.detail.clone());
        self.record(judged);
        match refused {
            Some(detail) => Err(rustls::Error::General(detail)),
            None => Ok(verified),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use levee_common::identity::CONTROLLER_SERVER_NAME;
    use levee_common::pki::CertificateAuthority;
    use levee_common::tls::TlsMaterial;
    use rustls::pki_types::pem::PemObject;
    use time::OffsetDateTime;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    struct Fixture {
        webpki: Arc<WebPkiServerVerifier>,
        ca: CertificateAuthority,
        now: OffsetDateTime,
    }

    fn fixture() -> Fixture {
        levee_common::tls::install_crypto_provider();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::create("test", now - DAY, 10 * DAY).unwrap();
        let agent = ca
            .issue(
                &Identity::new(Role::Agent, "edge-1"),
                &[],
                now - DAY,
                2 * DAY,
            )
            .unwrap();
        let material = TlsMaterial {
            ca_pem: ca.cert_pem().to_owned(),
            cert_pem: agent.cert_pem,
            key_pem: agent.key_pem,
        };
        Fixture {
            webpki: material.webpki_server_verifier().unwrap(),
            ca,
            now,
        }
    }

    /// Verifies the certificate `ca` issued for `identity`.
    fn verify(
        fixture: &Fixture,
        issuer: &CertificateAuthority,
        identity: Identity,
        accepted: Option<&[&str]>,
    ) -> (Result<(), rustls::Error>, Seen) {
        let issued = issuer
            .issue(&identity, &[], fixture.now - DAY, 2 * DAY)
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let verifier = MemberVerifier::new(
            fixture.webpki.clone(),
            accepted.map(|names| names.iter().map(|name| name.to_string()).collect()),
            seen.clone(),
        );
        let result = verifier
            .verify_server_cert(
                &der,
                &[],
                &ServerName::try_from(CONTROLLER_SERVER_NAME).unwrap(),
                &[],
                UnixTime::since_unix_epoch(
                    Duration::from_secs(fixture.now.unix_timestamp() as u64),
                ),
            )
            .map(drop);
        drop(verifier);
        let seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
        (result, seen)
    }

    fn reason(seen: &Seen) -> Option<&'static str> {
        seen.refused.as_ref().map(|refused| refused.reason)
    }

    #[test]
    fn an_accepted_member_passes_and_its_name_is_seen() {
        let fixture = fixture();
        let member = Identity::new(Role::Controller, "c1");
        let (result, seen) = verify(&fixture, &fixture.ca, member, Some(&["c1", "c2"]));
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(seen.name.as_deref(), Some("c1"));
    }

    #[test]
    fn before_the_first_session_any_controller_of_the_ca_passes() {
        let fixture = fixture();
        let anyone = Identity::new(Role::Controller, "c7");
        let (result, seen) = verify(&fixture, &fixture.ca, anyone, None);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(seen.name.as_deref(), Some("c7"));
    }

    #[test]
    fn a_controller_not_accepted_is_refused_in_the_handshake() {
        let fixture = fixture();
        let stranger = Identity::new(Role::Controller, "rogue");
        let (result, seen) = verify(&fixture, &fixture.ca, stranger, Some(&["c1"]));
        assert!(result.is_err());
        assert_eq!(reason(&seen), Some("not_member"));
        assert_eq!(seen.name, None);
    }

    #[test]
    fn another_ca_or_another_role_is_refused() {
        let fixture = fixture();
        let other_ca = CertificateAuthority::create("other", fixture.now - DAY, 10 * DAY).unwrap();
        let forged = Identity::new(Role::Controller, "c1");
        let (result, seen) = verify(&fixture, &other_ca, forged, Some(&["c1"]));
        assert!(result.is_err());
        assert_eq!(reason(&seen), Some("untrusted_certificate"));

        // Only controller certificates carry the controllers' DNS name.
        let agent = Identity::new(Role::Agent, "c1");
        let (result, seen) = verify(&fixture, &fixture.ca, agent, None);
        assert!(result.is_err());
        assert_eq!(reason(&seen), Some("untrusted_certificate"));
        assert_eq!(seen.name, None);
    }
}
