//! Which `allowed_roots` give a task the whole host. A task may write,
//! replace and delete anything beneath a root, so a root of `/`, `/etc`
//! or `/usr` lets whoever can get a spec applied (or a rule to act)
//! change the system itself. The agent refuses such roots at config load
//! unless its config says `i_know_this_is_the_whole_host = true`.
//!
//! A root counts by where it leads, not how it is written: `..` and
//! symlinks are followed, so `/srv/../etc`, or a link to `/`, count too.
//! Directories beneath a system directory (`/etc/nginx`,
//! `/var/lib/levee-agent/services`) are fine.

use std::path::{Component, Path, PathBuf};

/// `/` and the directories whose contents are the system rather than
/// data; a root that resolves to one of them is the whole host.
pub const SYSTEM_DIRS: [&str; 13] = [
    "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/var", "/root", "/proc",
    "/sys", "/dev",
];

/// A root that is the whole host: as written, and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeHostRoot {
    pub root: PathBuf,
    pub resolved: PathBuf,
}

impl std::fmt::Display for WholeHostRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.root == self.resolved {
            write!(f, "`{}`", self.root.display())
        } else {
            write!(
                f,
                "`{}` (which resolves to `{}`)",
                self.root.display(),
                self.resolved.display()
            )
        }
    }
}

/// The roots among `roots` that resolve to `/` or a system directory.
pub fn whole_host_roots(roots: &[PathBuf]) -> Vec<WholeHostRoot> {
    let system: Vec<PathBuf> = SYSTEM_DIRS
        .iter()
        .flat_map(|dir| {
            // On a merged-/usr host `/bin` is `/usr/bin`: both count.
            let dir = Path::new(dir);
            [Some(dir.to_owned()), dir.canonicalize().ok()]
        })
        .flatten()
        .collect();
    roots
        .iter()
        .map(|root| WholeHostRoot {
            root: root.clone(),
            resolved: resolve(root),
        })
        .filter(|found| system.contains(&found.resolved))
        .collect()
}

/// Where `path` leads, as the kernel would walk it: relative to the
/// working directory unless absolute, each symlink followed as far as the
/// path exists, and `..` taken from where the walk really is (after a
/// symlink, that is not the lexical parent). Past the part that exists,
/// the rest is applied as written.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut walked = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => walked = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                walked.pop();
            }
            Component::Normal(name) => {
                walked.push(name);
                if let Ok(real) = walked.canonicalize() {
                    walked = real;
                }
            }
        }
    }
    walked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(roots: &[&str]) -> Vec<PathBuf> {
        let roots: Vec<PathBuf> = roots.iter().map(PathBuf::from).collect();
        whole_host_roots(&roots)
            .into_iter()
            .map(|found| found.root)
            .collect()
    }

    #[test]
    fn the_root_and_system_directories_are_the_whole_host() {
        for dir in SYSTEM_DIRS {
            assert_eq!(found(&[dir]), [PathBuf::from(dir)], "{dir}");
            let slash = format!("{dir}/");
            assert_eq!(found(&[&slash]).len(), 1, "{slash}");
        }
    }

    #[test]
    fn directories_of_their_own_are_not() {
        assert!(
            found(&[
                "/srv/levee",
                "/var/lib/levee-agent/services",
                "/etc/nginx",
                "/opt/app",
                "/tmp/levee-does-not-exist/services",
            ])
            .is_empty()
        );
    }

    #[test]
    fn dot_dot_is_followed() {
        assert_eq!(
            found(&["/srv/../etc", "/var/lib/..", "/usr/local/../..", "/etc/./"]),
            [
                PathBuf::from("/srv/../etc"),
                PathBuf::from("/var/lib/.."),
                PathBuf::from("/usr/local/../.."),
                PathBuf::from("/etc/./"),
            ]
        );
        // Past what exists, `..` still counts.
        assert_eq!(found(&["/nowhere-at-all/../../etc"]).len(), 1);
    }

    #[test]
    fn symlinks_are_followed() {
        let temp = tempfile::tempdir().unwrap();
        let to_etc = temp.path().join("config");
        std::os::unix::fs::symlink("/etc", &to_etc).unwrap();
        let to_root = temp.path().join("everything");
        std::os::unix::fs::symlink("/", &to_root).unwrap();
        // `..` after a link leaves from where the link led: /usr/lib/.. is /usr.
        let to_usr_lib = temp.path().join("libs");
        std::os::unix::fs::symlink("/usr/lib", &to_usr_lib).unwrap();
        let roots = [
            to_etc.clone(),
            to_root.join("."),
            to_usr_lib.join(".."),
            temp.path().join("data"),
        ];
        let found = whole_host_roots(&roots);
        assert_eq!(
            found,
            [
                WholeHostRoot {
                    root: to_etc,
                    resolved: "/etc".into()
                },
                WholeHostRoot {
                    root: to_root.join("."),
                    resolved: "/".into()
                },
                WholeHostRoot {
                    root: to_usr_lib.join(".."),
                    resolved: "/usr".into()
                },
            ]
        );
        assert_eq!(
            found[0].to_string(),
            format!("`{}` (which resolves to `/etc`)", roots[0].display())
        );
    }
}
