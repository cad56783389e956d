//! Who may post to a webhook endpoint: the holder of its token, or of the
//! key that signs its bodies. Checked before the body is parsed.
//!
//! Answer [`AuthError::Missing`] and [`AuthError::Wrong`] with `401` and,
//! for token endpoints, `WWW-Authenticate: ` [`BASIC_CHALLENGE`]: AWS SNS
//! sends the Basic credentials from its subscription URL only after such a
//! challenge. Answer [`AuthError::Malformed`] with `400`.

use std::fmt;

use hmac::{Hmac, Mac};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::encoding::{base64_decode, hex_decode, percent_decode};

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

    fn expose(&self) -> &[u8] {
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

/// How an endpoint authenticates its senders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    /// A shared token: `Authorization: Bearer <token>`, HTTP Basic auth
    /// with the token as the password (any user name), or `?token=<token>`.
    Token(Secret),
    /// HMAC-SHA256 of the raw body under `secret`, in hex, in `header`,
    /// optionally prefixed `sha256=` (GitHub's `X-Hub-Signature-256`).
    Hmac { secret: Secret, header: HeaderName },
}

/// Which credential an [`AuthError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token,
    Signature(HeaderName),
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token => f.write_str(
                "token (send `Authorization: Bearer <token>`, HTTP Basic auth with the token \
                 as the password, or a `token` query parameter)",
            ),
            Self::Signature(header) => {
                write!(f, "header `{header}` (the body's HMAC-SHA256, in hex)")
            }
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
}

fn wrong(credential: &Credential) -> String {
    match credential {
        Credential::Token => "token".to_owned(),
        Credential::Signature(header) => {
            format!("signature: header `{header}` does not match the body")
        }
    }
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing(_) | Self::Wrong(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// Admits a request or says why not. `query` is the URL's query string,
/// without the `?`.
pub fn check(
    auth: &WebhookAuth,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<(), AuthError> {
    match auth {
        WebhookAuth::Token(secret) => check_token(secret, headers, query),
        WebhookAuth::Hmac { secret, header } => check_hmac(secret, header, headers, body),
    }
}

/// Every token the request presents is tried, so a proxy's own
/// `Authorization` header does not hide a good `?token=`.
fn check_token(secret: &Secret, headers: &HeaderMap, query: Option<&str>) -> Result<(), AuthError> {
    let presented = [header_token(headers), query.and_then(query_token)];
    let mut malformed = None;
    let mut any = false;
    let mut matched = false;
    for candidate in presented.into_iter().flatten() {
        match candidate {
            Ok(token) => {
                any = true;
                matched |= equal_in_constant_time(&token, secret.expose());
            }
            Err(err) => malformed = malformed.or(Some(err)),
        }
    }
    match (matched, any, malformed) {
        (true, _, _) => Ok(()),
        (false, true, _) => Err(AuthError::Wrong(Credential::Token)),
        (false, false, Some(err)) => Err(err),
        (false, false, None) => Err(AuthError::Missing(Credential::Token)),
    }
}

/// Hashing both sides first makes the comparison's time independent of
/// the lengths too.
fn equal_in_constant_time(presented: &[u8], secret: &[u8]) -> bool {
    let presented = Sha256::digest(presented);
    let secret = Sha256::digest(secret);
    presented.ct_eq(&secret).into()
}

/// The token in `Authorization`, if the header is there.
fn header_token(headers: &HeaderMap) -> Option<Result<Vec<u8>, AuthError>> {
    let malformed = |reason| AuthError::Malformed {
        place: "`Authorization` header".to_owned(),
        reason,
    };
    let value = headers.get(AUTHORIZATION)?;
    let parsed = (|| {
        let text = value.to_str().map_err(|_| malformed("not visible ASCII"))?;
        let (scheme, credentials) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| malformed("expected `Bearer <token>` or `Basic <base64>`"))?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if credentials.is_empty() {
                return Err(malformed("the Bearer token is empty"));
            }
            Ok(credentials.as_bytes().to_vec())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64_decode(credentials)
                .ok_or_else(|| malformed("the Basic credentials are not base64"))?;
            let colon = decoded.iter().position(|&b| b == b':').ok_or_else(|| {
                malformed("the Basic credentials have no `:` before the password")
            })?;
            Ok(decoded[colon + 1..].to_vec())
        } else {
            Err(malformed("only the Bearer and Basic schemes are accepted"))
        }
    })();
    Some(parsed)
}

/// The first `token` parameter of the query string, percent-decoded.
fn query_token(query: &str) -> Option<Result<Vec<u8>, AuthError>> {
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == "token").then_some(value))?;
    Some(percent_decode(value).ok_or(AuthError::Malformed {
        place: "`token` query parameter".to_owned(),
        reason: "a `%` is not followed by two hex digits",
    }))
}

fn check_hmac(
    secret: &Secret,
    header: &HeaderName,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AuthError> {
    let malformed = |reason| AuthError::Malformed {
        place: format!("header `{header}`"),
        reason,
    };
    let value = headers
        .get(header)
        .ok_or_else(|| AuthError::Missing(Credential::Signature(header.clone())))?;
    let text = value
        .to_str()
        .map_err(|_| malformed("not visible ASCII"))?
        .trim();
    let hex = match text.split_once('=') {
        Some((algorithm, hex)) if algorithm.eq_ignore_ascii_case("sha256") => hex,
        Some(_) => return Err(malformed("only `sha256=` signatures are accepted")),
        None => text,
    };
    let signature = hex_decode(hex).ok_or_else(|| malformed("the signature is not hex"))?;
    if signature.len() != <Sha256 as Digest>::output_size() {
        return Err(malformed(
            "the signature is not 64 hex digits (an HMAC-SHA256)",
        ));
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| AuthError::Wrong(Credential::Signature(header.clone())))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const TOKEN: &str = "s3cret+token/42";

    fn token_auth() -> WebhookAuth {
        WebhookAuth::Token(Secret::new(TOKEN).unwrap())
    }

    fn authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn check_token_with(headers: &HeaderMap, query: Option<&str>) -> Result<(), AuthError> {
        check(&token_auth(), headers, query, b"{}")
    }

    #[test]
    fn secrets_do_not_print() {
        let auth = token_auth();
        assert_eq!(format!("{:?}", Secret::new("x").unwrap()), "Secret(***)");
        let shown = format!("{auth:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(Secret::new(Vec::new()), Err(EmptySecret));
    }

    #[test]
    fn a_bearer_token_is_accepted_and_a_wrong_one_refused() {
        assert_eq!(
            check_token_with(&authorization("Bearer s3cret+token/42"), None),
            Ok(())
        );
        assert_eq!(
            check_token_with(&authorization("bearer s3cret+token/42"), None),
            Ok(())
        );
        assert_eq!(
            check_token_with(&authorization("Bearer s3cret+token/43"), None),
            Err(AuthError::Wrong(Credential::Token))
        );
        // A prefix of the token is not the token.
        assert_eq!(
            check_token_with(&authorization("Bearer s3cret"), None),
            Err(AuthError::Wrong(Credential::Token))
        );
    }

    #[test]
    fn basic_auth_takes_the_password_as_the_token_for_any_user() {
        // base64("levee:s3cret+token/42") and base64("sns:s3cret+token/42")
        for encoded in [
            "bGV2ZWU6czNjcmV0K3Rva2VuLzQy",
            "c25zOnMzY3JldCt0b2tlbi80Mg==",
        ] {
            let headers = authorization(&format!("Basic {encoded}"));
            assert_eq!(check_token_with(&headers, None), Ok(()), "{encoded}");
        }
        // base64("levee:wrong"); and a user with no password at all.
        for encoded in ["bGV2ZWU6d3Jvbmc=", "bGV2ZWU6"] {
            let headers = authorization(&format!("Basic {encoded}"));
            assert_eq!(
                check_token_with(&headers, None),
                Err(AuthError::Wrong(Credential::Token))
            );
        }
    }

    #[test]
    fn malformed_authorization_headers_say_what_is_wrong() {
        let cases = [
            ("Basic not*base64", "the Basic credentials are not base64"),
            // base64("s3cret+token/42"): no user part.
            (
                "Basic czNjcmV0K3Rva2VuLzQy",
                "the Basic credentials have no `:` before the password",
            ),
            (
                "Digest username=\"levee\"",
                "only the Bearer and Basic schemes are accepted",
            ),
            (
                "s3cret+token/42",
                "expected `Bearer <token>` or `Basic <base64>`",
            ),
        ];
        for (value, reason) in cases {
            let err = check_token_with(&authorization(value), None).unwrap_err();
            assert_eq!(
                err,
                AuthError::Malformed {
                    place: "`Authorization` header".to_owned(),
                    reason
                },
                "{value}"
            );
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn a_query_token_is_percent_decoded() {
        let empty = HeaderMap::new();
        assert_eq!(
            check_token_with(&empty, Some("source=ci&token=s3cret%2Btoken%2F42")),
            Ok(())
        );
        // Unescaped `+` and `/` are taken literally.
        assert_eq!(
            check_token_with(&empty, Some("token=s3cret+token/42")),
            Ok(())
        );
        assert_eq!(
            check_token_with(&empty, Some("token=nope")),
            Err(AuthError::Wrong(Credential::Token))
        );
        assert_eq!(
            check_token_with(&empty, Some("token=s3cret%2")),
            Err(AuthError::Malformed {
                place: "`token` query parameter".to_owned(),
                reason: "a `%` is not followed by two hex digits",
            })
        );
    }

    #[test]
    fn no_token_anywhere_is_missing_and_challenged() {
        let err = check_token_with(&HeaderMap::new(), Some("source=ci")).unwrap_err();
        assert_eq!(err, AuthError::Missing(Credential::Token));
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert!(err.to_string().starts_with("missing token"), "{err}");
        assert_eq!(
            check_token_with(&HeaderMap::new(), None),
            Err(AuthError::Missing(Credential::Token))
        );
    }

    #[test]
    fn any_presented_token_may_match() {
        // A proxy's own Authorization header beside the sender's ?token=.
        let headers = authorization("Bearer proxy-credential");
        assert_eq!(
            check_token_with(&headers, Some("token=s3cret%2Btoken%2F42")),
            Ok(())
        );
        // A malformed header does not hide a good query token either.
        let headers = authorization("Digest x");
        assert_eq!(
            check_token_with(&headers, Some("token=s3cret+token/42")),
            Ok(())
        );
        // A wrong token beside a malformed header is reported as wrong.
        assert_eq!(
            check_token_with(&headers, Some("token=guess")),
            Err(AuthError::Wrong(Credential::Token))
        );
    }

    #[test]
    fn messages_never_echo_the_secret_or_the_attempt() {
        let errors = [
            check_token_with(&authorization("Bearer s3cret+token/4"), None),
            check_token_with(&authorization("Basic bGV2ZWU6czNjcmV0"), None),
            check_token_with(&HeaderMap::new(), Some("token=s3cret%2")),
        ];
        for err in errors {
            let message = err.unwrap_err().to_string();
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    // RFC 4231, test case 2.
    const KEY: &str = "Jefe";
    const BODY: &[u8] = b"what do ya want for nothing?";
    const MAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    fn hmac_auth() -> WebhookAuth {
        WebhookAuth::Hmac {
            secret: Secret::new(KEY).unwrap(),
            header: HeaderName::from_static("x-hub-signature-256"),
        }
    }

    fn signed(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // Any case on the wire; HeaderMap looks names up case-insensitively.
        headers.insert(
            HeaderName::from_bytes(b"X-Hub-Signature-256").unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn a_good_hmac_is_accepted_bare_prefixed_or_upper_case() {
        for value in [
            MAC.to_owned(),
            format!("sha256={MAC}"),
            format!("SHA256={}", MAC.to_uppercase()),
        ] {
            assert_eq!(
                check(&hmac_auth(), &signed(&value), None, BODY),
                Ok(()),
                "{value}"
            );
        }
    }

    #[test]
    fn an_hmac_of_another_body_or_key_is_wrong() {
        let header = HeaderName::from_static("x-hub-signature-256");
        let wrong = AuthError::Wrong(Credential::Signature(header.clone()));
        let err = check(&hmac_auth(), &signed(MAC), None, b"tampered").unwrap_err();
        assert_eq!(err, wrong);
        let other_key = WebhookAuth::Hmac {
            secret: Secret::new("Jeff").unwrap(),
            header,
        };
        assert_eq!(check(&other_key, &signed(MAC), None, BODY), Err(wrong));
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            err.to_string(),
            "wrong signature: header `x-hub-signature-256` does not match the body"
        );
    }

    #[test]
    fn a_missing_signature_header_is_missing() {
        // A token does not stand in for a signature.
        let err = check(&hmac_auth(), &authorization("Bearer Jefe"), None, BODY).unwrap_err();
        assert_eq!(
            err,
            AuthError::Missing(Credential::Signature(HeaderName::from_static(
                "x-hub-signature-256"
            )))
        );
        assert!(
            err.to_string()
                .starts_with("missing header `x-hub-signature-256`"),
            "{err}"
        );
    }

    #[test]
    fn malformed_signatures_say_what_is_wrong() {
        let cases = [
            ("sha256=not-hex", "the signature is not hex"),
            (
                "5bdcc146bf60754e",
                "the signature is not 64 hex digits (an HMAC-SHA256)",
            ),
            (
                "sha1=0123456789abcdef0123456789abcdef01234567",
                "only `sha256=` signatures are accepted",
            ),
        ];
        for (value, reason) in cases {
            let err = check(&hmac_auth(), &signed(value), None, BODY).unwrap_err();
            assert_eq!(
                err,
                AuthError::Malformed {
                    place: "header `x-hub-signature-256`".to_owned(),
                    reason
                },
                "{value}"
            );
        }
    }
}
