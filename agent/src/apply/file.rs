//! The `file` applier: exact content and mode, written atomically.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes `path` hold `content` with `mode`. Returns whether anything
/// changed and what. The new content goes to a temporary file in the same
/// directory, is fsynced, then renamed over the target: readers see the old
/// file or the new one, never half of one.
pub fn converge(path: &Path, content: &[u8], mode: u32) -> std::io::Result<(bool, String)> {
    let current = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() => {
            Some((fs::read(path)?, metadata.permissions().mode() & 0o7777))
        }
        Ok(_) => None,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    match current {
        Some((existing, existing_mode)) if existing == content && existing_mode == mode => {
            return Ok((false, "content and mode as specified".into()));
        }
        Some((existing, _)) if existing == content => {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            return Ok((true, format!("mode set to {mode:o}")));
        }
        _ => {}
    }
    let existed = current.is_some();
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{file_name}.levee-tmp"));
    {
        // A leftover (or planted) temp file or symlink is removed, and the
        // new one must be created afresh: O_EXCL never follows a symlink.
        match fs::remove_file(&temp) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(content)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
    }
    fs::rename(&temp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok((
        true,
        if existed {
            "content replaced".into()
        } else {
            "created".into()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converging_twice_changes_nothing_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("banner.txt");
        assert_eq!(
            converge(&path, b"hi\n", 0o640).unwrap(),
            (true, "created".into())
        );
        assert!(!converge(&path, b"hi\n", 0o640).unwrap().0);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        fs::write(&path, b"edited by hand").unwrap();
        assert_eq!(
            converge(&path, b"hi\n", 0o640).unwrap(),
            (true, "content replaced".into())
        );
        assert_eq!(fs::read(&path).unwrap(), b"hi\n");
        assert_eq!(
            converge(&path, b"hi\n", 0o600).unwrap(),
            (true, "mode set to 600".into())
        );
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let path = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        converge(&path, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
    }
}
