//! Who may post to a webhook endpoint: the holder of its token, or of the
//! key that signs its requests (`signing`). Checked before the body is
//! parsed.
//!
//! What each protects against:
//! - A token proves the sender knows it, nothing more: whoever captures a
//!   request (a proxy's log, a sender's debug output) holds the token and
//!   can send anything, so a token endpoint is only as safe as every copy
//!   of its requests. A replay of a captured request is dropped only as a
//!   repeat of its events' ids (an Alertmanager alert's fingerprint,
//!   status and start, an SNS `MessageId`, a CloudEvent's source and id),
//!   which are remembered at least `INBOUND_DEDUP_MS` (20 minutes) and at
//!   least the source's last `INBOUND_DEDUP_FLOOR` ids; after that it is
//!   committed again. SNS messages also carry their publication time,
//!   checked against the endpoint's replay window (`sns`).
//! - A signature covers the body, the content type, every `ce-*` header
//!   and the time of signing, so nothing of a captured request can be
//!   changed, and it is refused once outside the endpoint's replay window
//!   (5 minutes by default); inside it, a replay is a repeat.
//!
//! Answer [`AuthError::Missing`], [`AuthError::Wrong`] and
//! [`AuthError::Stale`] with `401` and, for token endpoints,
//! `WWW-Authenticate: ` [`BASIC_CHALLENGE`]: AWS SNS sends the Basic
//! credentials from its subscription URL only after such a challenge.
//! Answer [`AuthError::Malformed`] with `400`.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use super::credentials::{AuthError, BASIC_CHALLENGE, Credential, EmptySecret, Secret};
use super::encoding::{base64_decode, percent_decode};
use super::freshness::ReplayWindow;
use super::signing::{self, Signed};

/// How an endpoint authenticates its senders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    /// A shared token: `Authorization: Bearer <token>`, HTTP Basic auth
    /// with the token as the password (any user name), or `?token=<token>`.
    Token(Secret),
    /// `v1=<hex>` in `header`: the HMAC-SHA256 under `secret` of the
    /// request's signing string (`signing`), its `x-levee-timestamp`
    /// within the endpoint's replay window.
    Hmac { secret: Secret, header: HeaderName },
}

/// How a request was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    Token,
    Signed(Signed),
}

/// A request as the credentials check sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// The URL's query string, without the `?`.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// Admits a request or says why not; a signed one must be within
/// `window` of `now_ms`, the receiving controller's clock.
pub fn check(
    auth: &WebhookAuth,
    window: &ReplayWindow,
    request: Request<'_>,
    now_ms: i64,
) -> Result<Admitted, AuthError> {
    match auth {
        WebhookAuth::Token(secret) => {
            check_token(secret, request.headers, request.query)?;
            Ok(Admitted::Token)
        }
        WebhookAuth::Hmac { secret, header } => signing::check(
            secret,
            header,
            window,
            request.headers,
            request.body,
            now_ms,
        )
        .map(Admitted::Signed),
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

#[cfg(test)]
mod tests {
    use http::{HeaderValue, StatusCode};

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
        let request = Request {
            headers,
            query,
            body: b"{}",
        };
        let admitted = check(&token_auth(), &ReplayWindow::default(), request, 0)?;
        assert_eq!(admitted, Admitted::Token);
        Ok(())
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
}
