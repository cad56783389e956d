//! Where resources may live on this host. Every path a task names is
//! resolved here and refused unless it stays under an allowed root, also
//! after following symlinks.

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum PathError {
    #[error("path `{0}` contains `..`")]
    Traversal(String),
    #[error("path `{0}` contains a NUL byte")]
    Nul(String),
    #[error("path `{path}` is outside the allowed roots ({roots})")]
    OutsideRoots { path: String, roots: String },
    #[error("cannot prepare `{path}`: {reason}")]
    Io { path: String, reason: String },
}

/// The allowed roots, canonicalised once.
#[derive(Debug, Clone)]
pub struct Roots {
    roots: Vec<PathBuf>,
}

impl Roots {
    /// Creates the roots if missing and canonicalises them.
    pub fn new(roots: &[PathBuf]) -> std::io::Result<Self> {
        let mut canonical = Vec::new();
        for root in roots {
            std::fs::create_dir_all(root)?;
            canonical.push(root.canonicalize()?);
        }
        Ok(Self { roots: canonical })
    }

    /// Resolves `path` (relative to `base` unless absolute) lexically and
    /// checks it is beneath a root. It touches nothing on disk, and follows
    /// no symlinks: [`Roots::check_dir`] does that.
    pub fn resolve(&self, base: &Path, path: &str) -> Result<PathBuf, PathError> {
        if path.contains('\0') {
            return Err(PathError::Nul(path.to_owned()));
        }
        let joined = base.join(path);
        let mut clean = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::ParentDir => return Err(PathError::Traversal(path.to_owned())),
                Component::CurDir => {}
                other => clean.push(other),
            }
        }
        if !self.roots.iter().any(|root| clean.starts_with(root)) {
            return Err(self.outside(&clean));
        }
        Ok(clean)
    }

    /// Checks, creating nothing, that `dir` (already resolved) stays
    /// beneath a root once created: the deepest part of it that exists,
    /// with symlinks followed, must be beneath one.
    pub fn check_dir(&self, dir: &Path) -> Result<(), PathError> {
        let existing = dir
            .ancestors()
            .find(|ancestor| ancestor.exists())
            .unwrap_or(dir);
        let real_existing = existing.canonicalize().map_err(|err| PathError::Io {
            path: dir.display().to_string(),
            reason: err.to_string(),
        })?;
        if self
            .roots
            .iter()
            .any(|root| real_existing.starts_with(root))
        {
            Ok(())
        } else {
            Err(self.outside(&real_existing))
        }
    }

    /// Resolves the file `path` of a service for writing and checks it as
    /// [`Roots::check_dir`] does its directory, creating nothing. The file
    /// itself may be a symlink: writing replaces it, never follows it.
    pub fn check_file(&self, base: &Path, path: &str) -> Result<PathBuf, PathError> {
        let resolved = self.resolve(base, path)?;
        let (Some(parent), Some(_)) = (resolved.parent(), resolved.file_name()) else {
            return Err(PathError::Io {
                path: path.to_owned(),
                reason: "path names no file".into(),
            });
        };
        self.check_dir(parent)?;
        Ok(resolved)
    }

    /// Creates `dir` and its parents, then checks that, with symlinks
    /// followed, it is still beneath a root.
    pub fn prepare_dir(&self, dir: &Path) -> Result<PathBuf, PathError> {
        let io = |err: std::io::Error| PathError::Io {
            path: dir.display().to_string(),
            reason: err.to_string(),
        };
        // Check the deepest part that exists before creating anything, so a
        // symlink cannot make us create directories outside the roots.
        self.check_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(io)?;
        let real = dir.canonicalize().map_err(io)?;
        if self.roots.iter().any(|root| real.starts_with(root)) {
            Ok(real)
        } else {
            Err(self.outside(&real))
        }
    }

    /// Like [`Roots::prepare_dir`] but creates nothing: `None` when `dir`
    /// does not exist. For reading and deleting, which must not leave new
    /// directories behind.
    pub fn existing_dir(&self, dir: &Path) -> Result<Option<PathBuf>, PathError> {
        let real = match dir.canonicalize() {
            Ok(real) => real,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(PathError::Io {
                    path: dir.display().to_string(),
                    reason: err.to_string(),
                });
            }
        };
        if self.roots.iter().any(|root| real.starts_with(root)) {
            Ok(Some(real))
        } else {
            Err(self.outside(&real))
        }
    }

    /// Resolves the file `path` of a service for reading or deleting: its
    /// parent, with symlinks followed, must be beneath a root. `None` when
    /// the parent does not exist (so neither does the file).
    pub fn existing_file(&self, base: &Path, path: &str) -> Result<Option<PathBuf>, PathError> {
        let lexical = self.resolve(base, path)?;
        let (Some(parent), Some(name)) = (lexical.parent(), lexical.file_name()) else {
            return Err(PathError::Io {
                path: path.to_owned(),
                reason: "path names no file".into(),
            });
        };
        Ok(self.existing_dir(parent)?.map(|parent| parent.join(name)))
    }

    fn outside(&self, path: &Path) -> PathError {
        let roots = self
            .roots
            .iter()
            .map(|root| root.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        PathError::OutsideRoots {
            path: path.display().to_string(),
            roots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_beneath_the_roots_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("services");
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let base = root.canonicalize().unwrap().join("clock");
        assert_eq!(
            roots.resolve(&base, "banner.txt").unwrap(),
            base.join("banner.txt")
        );
        assert_eq!(roots.resolve(&base, "./a/b").unwrap(), base.join("a/b"));
        assert_eq!(
            roots.resolve(&base, "../../etc/passwd"),
            Err(PathError::Traversal("../../etc/passwd".into()))
        );
        assert!(matches!(
            roots.resolve(&base, "/etc/passwd"),
            Err(PathError::OutsideRoots { .. })
        ));
        assert!(matches!(
            roots.resolve(&base, "a\0b"),
            Err(PathError::Nul(_))
        ));
    }

    #[test]
    fn existing_paths_are_checked_without_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("services");
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let root = root.canonicalize().unwrap();
        assert_eq!(roots.existing_file(&root, "a/b.txt").unwrap(), None);
        assert!(!root.join("a").exists(), "nothing was created");
        std::fs::create_dir(root.join("a")).unwrap();
        assert_eq!(
            roots.existing_file(&root, "a/b.txt").unwrap(),
            Some(root.join("a/b.txt"))
        );
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        assert!(matches!(
            roots.existing_file(&root, "escape/passwd"),
            Err(PathError::OutsideRoots { .. })
        ));
    }

    #[test]
    fn checks_follow_symlinks_and_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("services");
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let root = root.canonicalize().unwrap();
        let base = root.join("web");
        assert_eq!(
            roots.check_file(&base, "a/b/c.txt").unwrap(),
            base.join("a/b/c.txt")
        );
        roots.check_dir(&base.join("data/cache")).unwrap();
        assert!(!base.exists(), "nothing was created");

        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        // `resolve` is lexical: it lets the symlink through; the checks do not.
        assert!(roots.resolve(&root, "escape/sub/file").is_ok());
        assert!(matches!(
            roots.check_file(&root, "escape/sub/file"),
            Err(PathError::OutsideRoots { .. })
        ));
        assert!(matches!(
            roots.check_dir(&root.join("escape")),
            Err(PathError::OutsideRoots { .. })
        ));
        assert!(!outside.join("sub").exists(), "nothing created outside");
        // A symlink as the file itself is replaced when written, not
        // followed, so it passes.
        std::os::unix::fs::symlink(outside.join("f"), root.join("link")).unwrap();
        assert!(roots.check_file(&root, "link").is_ok());
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("services");
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let root = root.canonicalize().unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let resolved = roots.resolve(&root, "escape/file").unwrap();
        assert!(matches!(
            roots.prepare_dir(resolved.parent().unwrap()),
            Err(PathError::OutsideRoots { .. })
        ));
    }
}
