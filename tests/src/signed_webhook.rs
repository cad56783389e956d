//! Signed webhook deliveries as a sender makes them, and as a hostile
//! client replays and alters them. The v1 signing string is written out
//! here again, from the docs, rather than borrowed from the controller, so
//! a change to either side shows.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

/// The header carrying the time a request was signed at, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-levee-timestamp";

/// One HTTP request's headers, in the order sent, and body: what a
/// sender sent, or what an attacker captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The same request with header `name` set to `value` (replacing it,
    /// or added): its signature unchanged.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .retain(|(header, _)| !header.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Signs deliveries with an endpoint's key, as a legitimate sender does.
#[derive(Debug, Clone)]
pub struct Signer {
    key: Vec<u8>,
    /// The endpoint's `hmac_header`.
    signature_header: String,
}

impl Signer {
    pub fn new(key: &[u8], signature_header: &str) -> Self {
        Self {
            key: key.to_vec(),
            signature_header: signature_header.to_owned(),
        }
    }

    /// `headers` and `body` signed at `signed_at` (Unix seconds): the
    /// timestamp and signature headers added.
    pub fn sign(&self, signed_at: i64, headers: &[(&str, &str)], body: &[u8]) -> Delivery {
        let mut delivery = Delivery {
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            body: body.to_vec(),
        };
        let timestamp = signed_at.to_string();
        delivery
            .headers
            .push((TIMESTAMP_HEADER.to_owned(), timestamp.clone()));
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(&signing_string(&timestamp, &delivery));
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        delivery
            .headers
            .push((self.signature_header.clone(), format!("v1={hex}")));
        delivery
    }

    /// Signed now.
    pub fn sign_now(&self, headers: &[(&str, &str)], body: &[u8]) -> Delivery {
        self.sign(now_unix_s(), headers, body)
    }
}

/// The v1 signing string: `v1`, the timestamp, one `name:value` line per
/// `content-type` and `ce-*` header sorted by lower-case name, an empty
/// line, the body.
pub fn signing_string(timestamp: &str, delivery: &Delivery) -> Vec<u8> {
    let mut signed: Vec<(String, &str)> = delivery
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .filter(|(name, _)| name == "content-type" || name.starts_with("ce-"))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = format!("v1\n{timestamp}\n");
    for (name, value) in signed {
        text.push_str(&format!("{name}:{value}\n"));
    }
    text.push('\n');
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&delivery.body);
    bytes
}

/// The headers of a binary-mode CloudEvent with JSON data.
pub fn binary_cloudevent<'a>(id: &'a str, event_type: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Content-Type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/ci/pipelines/7"),
        ("ce-type", event_type),
    ]
}

/// This machine's clock, Unix seconds: what a sender signs with.
pub fn now_unix_s() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_signs_to_its_documented_signature() {
        let signer = Signer::new(b"deploys-key", "x-levee-signature");
        let delivery = signer.sign(
            1_800_000_000,
            &binary_cloudevent("deploy-42", "app.deployed"),
            br#"{"release":"2026.11.3"}"#,
        );
        assert_eq!(
            delivery.header("X-Levee-Signature"),
            Some("v1=2930cb790eafe8d6c3734a6cb041773df6140e8d5123a2d536acaf337b2a96d1")
        );
        assert_eq!(delivery.header("x-levee-timestamp"), Some("1800000000"));
    }

    #[test]
    fn with_header_replaces_in_any_case_and_keeps_the_signature() {
        let signer = Signer::new(b"k", "x-sig");
        let delivery = signer.sign(1, &[("CE-Type", "a")], b"");
        let changed = delivery.clone().with_header("ce-type", "b");
        assert_eq!(changed.header("ce-type"), Some("b"));
        assert_eq!(changed.headers.len(), delivery.headers.len());
        assert_eq!(changed.header("x-sig"), delivery.header("x-sig"));
    }
}
