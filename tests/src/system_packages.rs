//! System programs the tests need (an MQTT broker today; more later),
//! installed from the distribution's packages the one way every test uses.
//!
//! nextest runs each test in its own process, so two tests may ask for the
//! same package at once. Installs are serialised by an exclusive `flock` on
//! one file shared by every test process; inside it a test checks again
//! whether the programs are present (another process may just have
//! installed them) and only then runs `apt-get`, which itself waits on the
//! dpkg lock (held by a package manager outside the tests) instead of
//! failing. A package that cannot be installed fails the test that needs
//! it: nothing is skipped.

use std::fs::OpenOptions;
use std::process::Command;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

/// A Debian package and the programs a test runs from it.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub name: &'static str,
    pub programs: &'static [&'static str],
}

pub const MOSQUITTO: Package = Package {
    name: "mosquitto",
    programs: &["mosquitto"],
};

pub const MOSQUITTO_CLIENTS: Package = Package {
    name: "mosquitto-clients",
    programs: &["mosquitto_pub"],
};

/// The file whose lock serialises installs across test processes.
const LOCK_FILE: &str = "/tmp/levee-test-system-packages.lock";
/// How long apt-get waits for another package manager's dpkg lock.
const DPKG_LOCK_WAIT: Duration = Duration::from_secs(600);

/// Makes sure every program of `packages` is on the PATH, installing the
/// missing packages with apt-get under the shared lock. Panics, naming the
/// package, when that is impossible.
pub fn ensure(packages: &[Package]) {
    if missing(packages).is_empty() {
        return;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|err| panic!("opening {LOCK_FILE}: {err}"));
    // Blocks until no other test process is installing.
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, err)| panic!("locking {LOCK_FILE}: {err}"));
    let missing = missing(packages);
    if missing.is_empty() {
        return;
    }
    let names: Vec<&str> = missing.iter().map(|package| package.name).collect();
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&names);
    if !apt(&install) {
        // The package lists may be missing or stale on a fresh machine.
        assert!(apt(&["update", "-q"]), "apt-get update failed");
        assert!(
            apt(&install),
            "cannot install {names:?} with apt-get; the tests need them and skip nothing"
        );
    }
    let still = self::missing(packages);
    assert!(
        still.is_empty(),
        "installed {names:?}, yet {:?} are still not on the PATH",
        still
            .iter()
            .map(|package| package.programs)
            .collect::<Vec<_>>()
    );
}

fn missing(packages: &[Package]) -> Vec<Package> {
    packages
        .iter()
        .filter(|package| !package.programs.iter().all(|program| on_path(program)))
        .copied()
        .collect()
}

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

fn apt(args: &[&str]) -> bool {
    let wait = format!("DPkg::Lock::Timeout={}", DPKG_LOCK_WAIT.as_secs());
    Command::new("apt-get")
        .args(["-o", &wait])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_on_the_path_is_found_and_an_absent_one_is_not() {
        assert!(on_path("sh"));
        assert!(!on_path("levee-no-such-program-anywhere"));
        let absent = Package {
            name: "levee-absent",
            programs: &["sh", "levee-no-such-program-anywhere"],
        };
        let present = Package {
            name: "sh",
            programs: &["sh"],
        };
        let missing = missing(&[absent, present]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].name, "levee-absent");
    }
}
