//! HTTPS requests to the controllers' webhook receiver, with curl (a real
//! client, as senders use), trusting the cluster CA.

use std::path::Path;
use std::process::Command;

/// What the receiver answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Response headers, lowercased names, as `name: value` lines.
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("reply is not JSON ({err}): {self:?}"))
    }
}

/// POSTs `body` to `url` with `headers` (`Name: value`).
pub fn post(ca: &Path, url: &str, headers: &[String], body: &[u8]) -> Reply {
    let dir = tempfile::tempdir().expect("temp dir");
    let body_file = dir.path().join("body");
    let headers_file = dir.path().join("headers");
    std::fs::write(&body_file, body).expect("write body");
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "30"])
        .arg("--cacert")
        .arg(ca)
        .arg("--dump-header")
        .arg(&headers_file)
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .args(["--write-out", "\n%{http_code}"]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.arg(url).output().expect("curl runs");
    assert!(
        output.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    Reply {
        status: status.trim().parse().expect("HTTP status"),
        headers: std::fs::read_to_string(&headers_file)
            .unwrap_or_default()
            .to_lowercase(),
        body: body.to_owned(),
    }
}

/// GETs a plain-HTTP `url` (a metrics endpoint).
pub fn get(url: &str) -> Reply {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30", "--include"])
        .args(["--write-out", "\n%{http_code}"])
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (response, status) = text.rsplit_once('\n').expect("status line");
    let (headers, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    Reply {
        status: status.trim().parse().expect("HTTP status"),
        headers: headers.to_lowercase(),
        body: body.to_owned(),
    }
}
