//! Child processes that end when their guard drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The directory holding the workspace's built binaries.
pub fn bin_dir() -> PathBuf {
    // The test binary runs from target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_owned()
}

/// A built binary of this workspace, built first if needed.
pub fn binary(name: &str) -> PathBuf {
    ensure_built();
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing after building the workspace's binaries",
        path.display()
    );
    path
}

/// Builds the workspace's binaries once per test process. `cargo test`
/// builds only the binaries of the package under test, and these tests
/// drive the binaries of two other packages; building here also means a
/// test never runs a stale binary. When they are up to date this is a
/// quick no-op.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut command = Command::new(cargo);
        // A test process carries cargo's per-crate variables (CARGO_PKG_*,
        // CARGO_MANIFEST_DIR...) and the runner's; passed on, they change
        // build fingerprints and force a rebuild on every run. Keep only
        // what locates the toolchain and the target directory.
        command.env_clear();
        for (key, value) in std::env::vars_os() {
            let keep = key.to_str().is_some_and(|key| {
                matches!(
                    key,
                    "PATH"
                        | "HOME"
                        | "CARGO_HOME"
                        | "RUSTUP_HOME"
                        | "RUSTUP_TOOLCHAIN"
                        | "CARGO_TARGET_DIR"
                        | "TMPDIR"
                )
            });
            if keep {
                command.env(key, value);
            }
        }
        // `--workspace` unifies features as the README's `cargo build
        // --workspace` does, so the two share one set of artifacts.
        command.args([
            "build",
            "--quiet",
            "--workspace",
            "--bins",
            "--manifest-path",
        ]);
        command.arg(&manifest);
        if bin_dir()
            .file_name()
            .is_some_and(|profile| profile == "release")
        {
            command.arg("--release");
        }
        let status = command
            .status()
            .expect("running cargo build for the system test binaries");
        assert!(
            status.success(),
            "building levee and levee-agent failed: {status}"
        );
    });
}

/// A running child process, ended when dropped.
pub struct Running {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Running {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name}: {err}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("process was already ended")
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), signal);
    }

    /// Whether it has exited, reaping it if so.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// The process's log so far, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(Duration::from_secs(10));
        }
    }
}

/// Pids of workload processes (marked by `LEVEE_WORKLOAD`) whose working
/// directory lies under `dir`.
pub fn workloads_under(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let is_workload = environ
            .split(|byte| *byte == 0)
            .any(|item| item.starts_with(b"LEVEE_WORKLOAD="));
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        if is_workload && cwd.starts_with(dir) {
            pids.push(pid);
        }
    }
    pids
}

/// Ends every workload under `dir`: the safety net for workloads of an
/// agent a test killed.
pub fn kill_workloads_under(dir: &Path) {
    for pid in workloads_under(dir) {
        let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}
