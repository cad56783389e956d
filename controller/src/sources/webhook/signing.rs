//! Signed webhooks, version 1: what the HMAC covers, so that no part of a
//! captured request can be changed, and no old one sent again, without
//! the key.
//!
//! The sender puts the time it signs at, in Unix seconds, in
//! `x-levee-timestamp`, and `v1=<hex>` in the endpoint's `hmac_header`
//! (`x-levee-signature` by default): the HMAC-SHA256, under the endpoint's
//! key, of the signing string
//!
//! ```text
//! v1\n
//! <x-levee-timestamp, as sent>\n
//! <name>:<value>\n      one line per signed header, sorted by name
//! \n                    an empty line ends the headers
//! <body, its raw bytes>
//! ```
//!
//! The signed headers are `content-type` and every `ce-*` header (the
//! binary CloudEvents mode's attributes, `datacontenttype` being the
//! content type), names in lower case, values as sent (still
//! percent-encoded) without surrounding spaces; a header sent twice gives
//! two lines, in the order sent. Header names hold no `:` and values no
//! line break, so the string reads back one way only.
//!
//! The receiver checks the signature first, then that the timestamp is
//! within the endpoint's replay window (`freshness`), and deduplicates
//! what is fresh by the events' ids, or by the signature when a format
//! gives none. `v1` names this layout: a later one gets a new prefix.

use hmac::{Hmac, Mac};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use super::credentials::{AuthError, Credential, Secret};
use super::encoding::hex_decode;
pub use super::freshness::TIMESTAMP_HEADER;
use super::freshness::{ReplayWindow, Sent};
/// The signing string's version, which also prefixes the signature.
pub const VERSION: &str = "v1";

/// What a signed request proved: the signature, hex, as an id for events
/// whose format gives none (an identical replay is then a repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub signature_hex: String,
}

/// The version 1 signing string of a request.
pub fn signing_string(timestamp: &str, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut signed: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(name, _)| is_signed(name))
        .map(|(name, value)| (name.as_str(), value.as_bytes().trim_ascii()))
        .collect();
    // Stable: a header sent twice keeps the order it was sent in.
    signed.sort_by_key(|(name, _)| *name);
    let mut text = Vec::with_capacity(64 + body.len());
    text.extend_from_slice(VERSION.as_bytes());
    text.push(b'\n');
    text.extend_from_slice(timestamp.as_bytes());
    text.push(b'\n');
    for (name, value) in signed {
        text.extend_from_slice(name.as_bytes());
        text.push(b':');
        text.extend_from_slice(value);
        text.push(b'\n');
    }
    text.push(b'\n');
    text.extend_from_slice(body);
    text
}

/// The value a sender puts in the signature header: `v1=<hex>`.
pub fn signature_header_value(
    key: &[u8],
    timestamp: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    let mac = mac_of(key, &signing_string(timestamp, headers, body));
    format!("{VERSION}={}", hex(&mac.finalize().into_bytes()))
}

/// Headers `content-type` and `ce-*` (names are lower case in a `HeaderMap`).
fn is_signed(name: &HeaderName) -> bool {
    *name == CONTENT_TYPE || name.as_str().starts_with("ce-")
}

fn mac_of(key: &[u8], text: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(text);
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Admits a request signed with `secret` within `window` of `now_ms`, or
/// says why not.
pub(super) fn check(
    secret: &Secret,
    header: &HeaderName,
    window: &ReplayWindow,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<Signed, AuthError> {
    let signature = presented_signature(header, headers)?;
    let timestamp =
        header_once(headers, TIMESTAMP_HEADER)?.ok_or(AuthError::Missing(Credential::Timestamp))?;
    let timestamp = timestamp.to_str().map_err(|_| malformed_timestamp())?;
    let sent_unix_s = parse_unix_seconds(timestamp).ok_or_else(malformed_timestamp)?;
    // verify_slice compares in constant time.
    mac_of(secret.expose(), &signing_string(timestamp, headers, body))
        .verify_slice(&signature)
        .map_err(|_| AuthError::Wrong(Credential::Signature(header.clone())))?;
    // Only a correctly signed request learns about the window.
    window.check(Sent::SignedAt, sent_unix_s, now_ms)?;
    Ok(Signed {
        signature_hex: hex(&signature),
    })
}

/// The signature bytes from `v1=<64 hex digits>`.
fn presented_signature(header: &HeaderName, headers: &HeaderMap) -> Result<Vec<u8>, AuthError> {
    let malformed = |reason| AuthError::Malformed {
        place: format!("header `{header}`"),
        reason,
    };
    let value = header_once(headers, header.as_str())?
        .ok_or_else(|| AuthError::Missing(Credential::Signature(header.clone())))?;
    let text = value
        .to_str()
        .map_err(|_| malformed("not visible ASCII"))?
        .trim();
    let Some(hex) = text.strip_prefix("v1=") else {
        return Err(malformed(
            "expected `v1=<hex>`: the HMAC-SHA256 of the v1 signing string (the timestamp, \
             the content-type and ce-* headers and the body), not of the body alone",
        ));
    };
    let signature = hex_decode(hex).ok_or_else(|| malformed("the signature is not hex"))?;
    if signature.len() != <Sha256 as Digest>::output_size() {
        return Err(malformed(
            "the signature is not 64 hex digits (an HMAC-SHA256)",
        ));
    }
    Ok(signature)
}

/// A header's value; one sent twice is refused, since which one the
/// sender meant cannot be told.
fn header_once<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a http::HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::Malformed {
            place: format!("header `{name}`"),
            reason: "is given more than once",
        });
    }
    Ok(first)
}

fn malformed_timestamp() -> AuthError {
    AuthError::Malformed {
        place: format!("header `{TIMESTAMP_HEADER}`"),
        reason: "expected the Unix time in seconds, decimal digits only",
    }
}

/// Decimal digits only: no sign, no fraction, no spaces, at most 12
/// digits (the year 33658), so every sender formats it the same way.
fn parse_unix_seconds(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests;
