//! The controller's secrets: one file per secret in the directory the
//! node's config names (`secrets_dir`), read when the leader builds a
//! task, never replicated.
//!
//! Why files and not the Raft log: a value in the log would be in every
//! snapshot, every `levee state save`, every backup and every follower's
//! disk for as long as the log keeps it. A directory each controller
//! holds (provisioned like its TLS key) keeps values out of all of those;
//! rotating one is replacing its file.

use std::path::{Path, PathBuf};

use levee_common::secret::{SecretError, SecretSource, name_problem};

/// Largest secret value read.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The secrets directory of this node; `None` when the config names none,
/// in which case every secret is missing.
#[derive(Debug, Clone, Default)]
pub struct SecretsDir {
    dir: Option<PathBuf>,
}

impl SecretsDir {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// No directory: every secret is missing.
    pub const fn none() -> Self {
        Self { dir: None }
    }

    fn missing(&self, name: &str) -> SecretError {
        SecretError::Missing {
            name: name.to_owned(),
            where_: match &self.dir {
                Some(dir) => format!(" ({})", dir.display()),
                None => " (none is configured: set `secrets_dir` in the controller config)".into(),
            },
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf, SecretError> {
        if let Some(reason) = name_problem(name) {
            return Err(SecretError::Unreadable {
                name: name.to_owned(),
                reason,
            });
        }
        match &self.dir {
            Some(dir) => Ok(dir.join(name)),
            None => Err(self.missing(name)),
        }
    }
}

impl SecretSource for SecretsDir {
    fn value(&self, name: &str) -> Result<String, SecretError> {
        let path = self.path(name)?;
        read(&path).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => self.missing(name),
            _ => SecretError::Unreadable {
                name: name.to_owned(),
                reason: format!("{}: {err}", path.display()),
            },
        })
    }
}

/// Reads a secret's file: at most `MAX_SECRET_BYTES`, UTF-8, one trailing
/// newline dropped (editors add one).
fn read(path: &Path) -> std::io::Result<String> {
    let metadata = std::fs::metadata(path)?;
    if metadata.len() > MAX_SECRET_BYTES {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than {MAX_SECRET_BYTES}",
            metadata.len()
        )));
    }
    let mut value = String::from_utf8(std::fs::read(path)?)
        .map_err(|_| std::io::Error::other("not UTF-8 text"))?;
    if value.ends_with('\n') {
        value.pop();
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_files_named_after_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db-password"), "hunter2\n").unwrap();
        let secrets = SecretsDir::new(Some(dir.path().to_owned()));
        assert_eq!(secrets.value("db-password").unwrap(), "hunter2");
        let err = secrets.value("api-key").unwrap_err().to_string();
        assert!(
            err.contains("`api-key`") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
        let err = secrets.value("../passwd").unwrap_err().to_string();
        assert!(err.contains("must be"), "{err}");
        std::fs::write(
            dir.path().join("huge"),
            vec![b'x'; MAX_SECRET_BYTES as usize + 1],
        )
        .unwrap();
        assert!(
            secrets
                .value("huge")
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        let none = SecretsDir::default()
            .value("db-password")
            .unwrap_err()
            .to_string();
        assert!(none.contains("secrets_dir"), "{none}");
    }
}
