//! The `directory` applier: a directory that exists with a mode. Missing
//! parents are created, beneath the allowed roots only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use thiserror::Error;

use crate::paths::{PathError, Roots};

#[derive(Debug, Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("{0} exists and is not a directory")]
    NotADirectory(String),
    #[error("setting the mode of {path}: {source}")]
    Mode {
        path: String,
        source: std::io::Error,
    },
}

/// Makes `path` (already resolved beneath a root) a directory with `mode`.
/// Returns whether anything changed and what.
pub fn converge(roots: &Roots, path: &Path, mode: u32) -> Result<(bool, String), DirectoryError> {
    // `exists` follows symlinks: a link to a directory inside the roots is
    // that directory; `prepare_dir` checks where it really is.
    let existed = path.exists();
    if existed && !path.is_dir() {
        return Err(DirectoryError::NotADirectory(path.display().to_string()));
    }
    let real = roots.prepare_dir(path)?;
    let mode_error = |source| DirectoryError::Mode {
        path: real.display().to_string(),
        source,
    };
    let current = fs::metadata(&real)
        .map_err(mode_error)?
        .permissions()
        .mode()
        & 0o7777;
    if existed && current == mode {
        return Ok((false, format!("exists with mode {mode:o}")));
    }
    if current != mode {
        fs::set_permissions(&real, fs::Permissions::from_mode(mode)).map_err(mode_error)?;
    }
    Ok((
        true,
        if existed {
            format!("mode set to {mode:o}")
        } else {
            format!("created with mode {mode:o}")
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_with_parents_then_unchanged_then_mode_corrected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap().join("services");
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let path = root.join("web/data/cache");

        assert_eq!(
            converge(&roots, &path, 0o750).unwrap(),
            (true, "created with mode 750".into())
        );
        assert_eq!(mode_of(&path), 0o750);
        assert_eq!(
            converge(&roots, &path, 0o750).unwrap(),
            (false, "exists with mode 750".into())
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            converge(&roots, &path, 0o750).unwrap(),
            (true, "mode set to 750".into())
        );
        assert_eq!(mode_of(&path), 0o750);
    }

    #[test]
    fn a_file_in_the_way_or_a_symlink_out_of_the_roots_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("services");
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        fs::write(root.join("file"), "x").unwrap();
        assert!(matches!(
            converge(&roots, &root.join("file"), 0o755),
            Err(DirectoryError::NotADirectory(_))
        ));

        let outside = base.join("elsewhere");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        assert!(matches!(
            converge(&roots, &root.join("escape/sub"), 0o755),
            Err(DirectoryError::Path(PathError::OutsideRoots { .. }))
        ));
        assert!(!outside.join("sub").exists(), "nothing created outside");
    }
}
