//! Who is on the other end of a connection: a role and a name, read from
//! the peer's certificate, never from the request.
//!
//! Certificates carry them as a URI subject alternative name,
//! `levee://<role>/<name>`, so one CA can issue every kind of certificate
//! and a handler can authorise by role.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// URI scheme of identity names in certificates.
pub const IDENTITY_URI_SCHEME: &str = "levee://";

/// DNS name every controller certificate carries and every client checks,
/// so a certificate of another role cannot pose as a controller.
pub const CONTROLLER_SERVER_NAME: &str = "controller.levee";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A controller node: Raft peer and server.
    Controller,
    /// A host agent: may only open its own AgentLink session.
    Agent,
    /// A person or tool using the API.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Agent => "agent",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "controller" => Ok(Role::Controller),
            "agent" => Ok(Role::Agent),
            "operator" => Ok(Role::Operator),
            other => Err(IdentityError::UnknownRole(other.to_owned())),
        }
    }
}

/// A verified peer: the role and name its certificate states.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

impl Identity {
    pub fn new(role: Role, name: impl Into<String>) -> Self {
        Self {
            role,
            name: name.into(),
        }
    }

    /// The URI form written into certificates.
    pub fn to_uri(&self) -> String {
        format!("{IDENTITY_URI_SCHEME}{}/{}", self.role, self.name)
    }

    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri
            .strip_prefix(IDENTITY_URI_SCHEME)
            .ok_or_else(|| IdentityError::NotLevee(uri.to_owned()))?;
        let (role, name) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::NotLevee(uri.to_owned()))?;
        check_name(name)?;
        Ok(Self {
            role: role.parse()?,
            name: name.to_owned(),
        })
    }

    /// Reads the identity from a DER certificate that TLS already verified.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, certificate) = X509Certificate::from_der(der)
            .map_err(|err| IdentityError::Unparsable(err.to_string()))?;
        let names = certificate
            .subject_alternative_name()
            .map_err(|err| IdentityError::Unparsable(err.to_string()))?
            .ok_or(IdentityError::Missing)?;
        let mut found = names
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with(IDENTITY_URI_SCHEME) => Some(*uri),
                _ => None,
            });
        let uri = found.next().ok_or(IdentityError::Missing)?;
        if found.next().is_some() {
            return Err(IdentityError::Ambiguous);
        }
        Self::from_uri(uri)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role, self.name)
    }
}

/// Names are what agents and nodes are called everywhere: in events, in
/// file paths on the controller, in tables. Keep them boring.
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['.', '-']);
    if valid {
        Ok(())
    } else {
        Err(IdentityError::BadName(name.to_owned()))
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum IdentityError {
    #[error("certificate has no `{IDENTITY_URI_SCHEME}<role>/<name>` subject alternative name")]
    Missing,
    #[error("certificate carries more than one Levee identity")]
    Ambiguous,
    #[error("`{0}` is not a Levee identity URI (`{IDENTITY_URI_SCHEME}<role>/<name>`)")]
    NotLevee(String),
    #[error("unknown role `{0}` (expected controller, agent or operator)")]
    UnknownRole(String),
    #[error(
        "name `{0}` must be 1-128 characters of letters, digits, `-`, `_` and `.`, not starting with `.` or `-`"
    )]
    BadName(String),
    #[error("certificate cannot be parsed: {0}")]
    Unparsable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_its_uri() {
        let identity = Identity::new(Role::Agent, "edge-7.shop-12");
        assert_eq!(identity.to_uri(), "levee://agent/edge-7.shop-12");
        assert_eq!(Identity::from_uri(&identity.to_uri()).unwrap(), identity);
    }

    #[test]
    fn malformed_identities_are_refused() {
        assert_eq!(
            Identity::from_uri("spiffe://x/y"),
            Err(IdentityError::NotLevee("spiffe://x/y".into()))
        );
        assert_eq!(
            Identity::from_uri("levee://root/x"),
            Err(IdentityError::UnknownRole("root".into()))
        );
        assert!(matches!(
            Identity::from_uri("levee://agent/../../etc"),
            Err(IdentityError::BadName(_))
        ));
        assert!(matches!(
            Identity::from_uri("levee://agent/"),
            Err(IdentityError::BadName(_))
        ));
    }
}
