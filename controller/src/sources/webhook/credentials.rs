//! The credentials of a webhook request and why one is refused: key
//! material kept out of logs, and errors that never echo what the sender
//! presented.

use std::fmt;

use http::{HeaderName, StatusCode};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::freshness::{Stale, TIMESTAMP_HEADER};

/// The `WWW-Authenticate` value to send with a token endpoint's `401`
/// (SNS needs a realm in it).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"levee\"";

/// Key material that must not reach logs: its `Debug` shows `Secret(***)`.
#[derive(Clone, Eq)]
pub struct Secret(Vec<u8>);

/// An empty secret would admit an empty password.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a webhook secret must not be empty")]
pub struct EmptySecret;

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, EmptySecret> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(EmptySecret);
        }
        Ok(Self(bytes))
    }

    pub(super) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which credential an [`AuthError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token,
    Signature(HeaderName),
    Timestamp,
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token => f.write_str(
                "token (send `Authorization: Bearer <token>`, HTTP Basic auth with the token \
                 as the password, or a `token` query parameter)",
            ),
            Self::Signature(header) => write!(
                f,
                "header `{header}` (`v1=` and the HMAC-SHA256, in hex, of the v1 signing string)"
            ),
            Self::Timestamp => write!(
                f,
                "header `{TIMESTAMP_HEADER}` (the Unix time in seconds the request was signed at)"
            ),
        }
    }
}

/// Why a request was not admitted. No message contains the secret or what
/// the sender presented.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing {0}")]
    Missing(Credential),
    #[error("wrong {}", wrong(.0))]
    Wrong(Credential),
    #[error("malformed {place}: {reason}")]
    Malformed { place: String, reason: &'static str },
    #[error(transparent)]
    Stale(#[from] Stale),
}

fn wrong(credential: &Credential) -> String {
    match credential {
        Credential::Token => "token".to_owned(),
        Credential::Signature(header) => format!(
            "signature: header `{header}` does not match the request's v1 signing string \
             (its timestamp, content-type and ce-* headers, and body)"
        ),
        Credential::Timestamp => "timestamp".to_owned(),
    }
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing(_) | Self::Wrong(_) | Self::Stale(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed { .. } => StatusCode::BAD_REQUEST,
        }
    }
}
