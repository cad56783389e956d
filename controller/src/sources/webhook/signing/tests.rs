use http::{HeaderValue, StatusCode};

use super::*;
use crate::sources::webhook::auth::{self, Admitted, Request, WebhookAuth};
use crate::sources::webhook::freshness::Stale;
use crate::sources::webhook::test_headers as headers;

const KEY: &str = "deploys-key";
const SIGNED_AT: &str = "1800000000";
const NOW_MS: i64 = 1_800_000_000_000;
const BODY: &[u8] = br#"{"release":"2026.11.3"}"#;
/// `printf 'v1\n1800000000\nce-id:deploy-42\nce-source:/ci/pipelines/7\n
/// ce-specversion:1.0\nce-type:app.deployed\ncontent-type:application/json
/// \n\n{"release":"2026.11.3"}' | openssl dgst -sha256 -hmac deploys-key`,
/// the example in README.md.
const SIGNATURE: &str = "v1=2930cb790eafe8d6c3734a6cb041773df6140e8d5123a2d536acaf337b2a96d1";

/// A binary-mode CloudEvent as the README's example sends it, plus headers
/// that are not signed.
fn request() -> HeaderMap {
    headers(&[
        ("CE-Type", "app.deployed"),
        ("ce-specversion", "1.0"),
        ("Content-Type", "application/json"),
        ("ce-source", "/ci/pipelines/7"),
        ("ce-id", "deploy-42"),
        ("User-Agent", "curl/8"),
        ("Authorization", "Bearer not-signed"),
        ("x-levee-timestamp", SIGNED_AT),
        ("x-levee-signature", SIGNATURE),
    ])
}

fn hmac_auth(key: &str) -> WebhookAuth {
    WebhookAuth::Hmac {
        secret: Secret::new(key).unwrap(),
        header: HeaderName::from_static("x-levee-signature"),
    }
}

fn check_with(
    key: &str,
    window_s: u64,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<Admitted, AuthError> {
    let request = Request {
        headers,
        query: None,
        body,
    };
    auth::check(
        &hmac_auth(key),
        &ReplayWindow::of(window_s),
        request,
        now_ms,
    )
}

fn check_at(headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<Admitted, AuthError> {
    check_with(KEY, 300, headers, body, now_ms)
}

fn wrong() -> AuthError {
    AuthError::Wrong(Credential::Signature(HeaderName::from_static(
        "x-levee-signature",
    )))
}

#[test]
fn the_signing_string_is_versioned_sorted_and_ends_with_the_body() {
    let text = signing_string(SIGNED_AT, &request(), BODY);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "v1\n1800000000\n\
         ce-id:deploy-42\nce-source:/ci/pipelines/7\nce-specversion:1.0\nce-type:app.deployed\n\
         content-type:application/json\n\
         \n\
         {\"release\":\"2026.11.3\"}"
    );
    // Without a content type or ce-* header the header section is empty.
    let bare = signing_string("7", &HeaderMap::new(), b"");
    assert_eq!(bare, b"v1\n7\n\n");
}

#[test]
fn values_are_signed_as_sent_and_repeats_in_order() {
    let sent = headers(&[
        ("ce-subject", "  caf%C3%A9  "),
        ("ce-x", "b"),
        ("ce-x", "a"),
    ]);
    assert_eq!(
        String::from_utf8(signing_string("1", &sent, b"{}")).unwrap(),
        "v1\n1\nce-subject:caf%C3%A9\nce-x:b\nce-x:a\n\n{}"
    );
}

#[test]
fn the_readme_example_signature_is_accepted() {
    assert_eq!(
        signature_header_value(KEY.as_bytes(), SIGNED_AT, &request(), BODY),
        SIGNATURE
    );
    let admitted = check_at(&request(), BODY, NOW_MS).unwrap();
    assert_eq!(
        admitted,
        Admitted::Signed(Signed {
            signature_hex: SIGNATURE["v1=".len()..].to_owned()
        })
    );
}

#[test]
fn changing_any_signed_part_breaks_the_signature() {
    type Change = (&'static str, fn(&mut HeaderMap));
    let changes: [Change; 7] = [
        ("a new ce-id", |h| {
            h.insert("ce-id", HeaderValue::from_static("deploy-43"));
        }),
        ("a new ce-type", |h| {
            h.insert("ce-type", HeaderValue::from_static("app.rolled-back"));
        }),
        ("an added ce-* header", |h| {
            h.insert("ce-subject", HeaderValue::from_static("db"));
        }),
        ("a removed ce-* header", |h| {
            h.remove("ce-source");
        }),
        ("another content type", |h| {
            h.insert("content-type", HeaderValue::from_static("text/plain"));
        }),
        ("a later timestamp", |h| {
            h.insert("x-levee-timestamp", HeaderValue::from_static("1800000060"));
        }),
        ("a repeated ce-* header", |h| {
            h.append("ce-type", HeaderValue::from_static("app.deployed"));
        }),
    ];
    for (change, apply) in changes {
        let mut changed = request();
        apply(&mut changed);
        assert_eq!(check_at(&changed, BODY, NOW_MS), Err(wrong()), "{change}");
    }
    let err = check_at(&request(), br#"{"release":"evil"}"#, NOW_MS).unwrap_err();
    assert_eq!(err, wrong());
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        err.to_string(),
        "wrong signature: header `x-levee-signature` does not match the request's v1 \
         signing string (its timestamp, content-type and ce-* headers, and body)"
    );
    // Headers outside the signing string may change (proxies add some).
    let mut proxied = request();
    proxied.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    proxied.insert("user-agent", HeaderValue::from_static("proxy/1"));
    assert!(check_at(&proxied, BODY, NOW_MS).is_ok());
}

#[test]
fn another_key_or_a_body_only_hmac_is_wrong() {
    assert_eq!(
        check_with("other-key", 300, &request(), BODY, NOW_MS),
        Err(wrong())
    );
    // What senders signed before version 1: the body alone.
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(BODY);
    let body_only = hex(&mac.finalize().into_bytes());
    let mut old = request();
    old.insert(
        "x-levee-signature",
        HeaderValue::from_str(&format!("v1={body_only}")).unwrap(),
    );
    assert_eq!(check_at(&old, BODY, NOW_MS), Err(wrong()));
    old.insert(
        "x-levee-signature",
        HeaderValue::from_str(&format!("sha256={body_only}")).unwrap(),
    );
    let err = check_at(&old, BODY, NOW_MS).unwrap_err();
    assert!(
        matches!(&err, AuthError::Malformed { reason, .. } if reason.contains("not of the body alone")),
        "{err}"
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn a_signed_request_outside_the_window_is_refused_naming_it() {
    // Exactly at the window's edges: admitted.
    assert!(check_at(&request(), BODY, NOW_MS + 300_999).is_ok());
    assert!(check_at(&request(), BODY, NOW_MS - 60_000).is_ok());
    let err = check_at(&request(), BODY, NOW_MS + 301_000).unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Stale(Stale::TooOld {
                age_s: 301,
                window_s: 300,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert!(err.to_string().contains("replay window of 300 s"), "{err}");
    let err = check_at(&request(), BODY, NOW_MS - 61_000).unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Stale(Stale::Ahead {
                ahead_s: 61,
                allowed_s: 60,
                ..
            })
        ),
        "{err:?}"
    );
    // The window is the endpoint's own.
    let wide = check_with(KEY, 900, &request(), BODY, NOW_MS + 900_000);
    assert!(wide.is_ok(), "{wide:?}");
}

#[test]
fn a_bad_signature_is_reported_before_the_window() {
    let mut forged = request();
    forged.insert(
        "x-levee-signature",
        HeaderValue::from_str(&format!("v1={}", "0".repeat(64))).unwrap(),
    );
    assert_eq!(check_at(&forged, BODY, NOW_MS + 3_600_000), Err(wrong()));
}

#[test]
fn a_missing_or_malformed_timestamp_says_so() {
    let mut unstamped = request();
    unstamped.remove("x-levee-timestamp");
    let err = check_at(&unstamped, BODY, NOW_MS).unwrap_err();
    assert_eq!(err, AuthError::Missing(Credential::Timestamp));
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert!(
        err.to_string()
            .starts_with("missing header `x-levee-timestamp`"),
        "{err}"
    );
    for bad in [
        "",
        "+1800000000",
        "1800000000.5",
        "1.8e9",
        "-1",
        "1800000000000",
    ] {
        let mut stamped = request();
        stamped.insert("x-levee-timestamp", HeaderValue::from_str(bad).unwrap());
        assert_eq!(
            check_at(&stamped, BODY, NOW_MS),
            Err(AuthError::Malformed {
                place: "header `x-levee-timestamp`".to_owned(),
                reason: "expected the Unix time in seconds, decimal digits only",
            }),
            "{bad:?}"
        );
    }
    let mut twice = request();
    twice.append("x-levee-timestamp", HeaderValue::from_static(SIGNED_AT));
    assert_eq!(
        check_at(&twice, BODY, NOW_MS),
        Err(AuthError::Malformed {
            place: "header `x-levee-timestamp`".to_owned(),
            reason: "is given more than once",
        })
    );
}

#[test]
fn malformed_or_missing_signatures_say_what_is_wrong() {
    let cases = [
        ("v1=not-hex", "the signature is not hex"),
        (
            "v1=5bdcc146bf60754e",
            "the signature is not 64 hex digits (an HMAC-SHA256)",
        ),
    ];
    for (value, reason) in cases {
        let mut sent = request();
        sent.insert("x-levee-signature", HeaderValue::from_static(value));
        assert_eq!(
            check_at(&sent, BODY, NOW_MS),
            Err(AuthError::Malformed {
                place: "header `x-levee-signature`".to_owned(),
                reason
            }),
            "{value}"
        );
    }
    let mut unsigned = request();
    unsigned.remove("x-levee-signature");
    let err = check_at(&unsigned, BODY, NOW_MS).unwrap_err();
    assert_eq!(err, wrong_missing());
    assert!(
        err.to_string()
            .starts_with("missing header `x-levee-signature` (`v1=`"),
        "{err}"
    );
}

fn wrong_missing() -> AuthError {
    AuthError::Missing(Credential::Signature(HeaderName::from_static(
        "x-levee-signature",
    )))
}
