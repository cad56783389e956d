//! A real MQTT broker (Eclipse Mosquitto) for tests, installed through
//! [`crate::system_packages`] when missing, on a free port of 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use levee_common::tls::TlsFiles;

use crate::cluster::free_port;
use crate::process::Running;
use crate::system_packages;
use crate::wait::wait_until;

/// A running broker; stopped when dropped.
pub struct Broker {
    pub port: u16,
    /// The CA clients trust, when it listens with TLS.
    ca: Option<PathBuf>,
    _process: Running,
}

impl Broker {
    /// A plain-TCP broker.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, None)
    }

    /// A broker that speaks only TLS, with `tls`'s certificate and key.
    pub fn start_tls(dir: &Path, tls: &TlsFiles) -> Self {
        Self::start_with(dir, Some(tls))
    }

    fn start_with(dir: &Path, tls: Option<&TlsFiles>) -> Self {
        system_packages::ensure(&[
            system_packages::MOSQUITTO,
            system_packages::MOSQUITTO_CLIENTS,
        ]);
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        // Run as root, mosquitto drops to its own user, which cannot read
        // the test's key (mode 0600); it stays the user that started it.
        let user = if nix::unistd::geteuid().is_root() {
            "user root\n"
        } else {
            ""
        };
        let tls_lines = tls
            .map(|tls| {
                format!(
                    "{user}cafile {}\ncertfile {}\nkeyfile {}\n",
                    tls.ca.display(),
                    tls.cert.display(),
                    tls.key.display()
                )
            })
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\n{tls_lines}allow_anonymous true\npersistence false\nmax_queued_messages 1000\n"
            ),
        )
        .expect("write mosquitto.conf");
        let mut command = Command::new("mosquitto");
        command.arg("-c").arg(&config);
        let process = Running::spawn("mosquitto", command, &dir.join("mosquitto.log"));
        wait_until("mosquitto to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|err| err.to_string())
        });
        Self {
            port,
            ca: tls.map(|tls| tls.ca.clone()),
            _process: process,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Publishes one message with QoS 1 (the broker has it once this
    /// returns).
    pub fn publish(&self, topic: &str, payload: &str) {
        let mut command = Command::new("mosquitto_pub");
        command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-m", payload]);
        if let Some(ca) = &self.ca {
            command.arg("--cafile").arg(ca);
        }
        let output = command.output().expect("mosquitto_pub runs");
        assert!(
            output.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
