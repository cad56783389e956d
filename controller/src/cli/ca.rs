//! `levee ca init` and `levee ca issue`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use levee_common::identity::{Identity, Role};
use levee_common::pki::{CertificateAuthority, write_file};

use crate::clock::now;

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a new cluster CA (`ca.crt`, `ca.key`) in a directory.
    Init {
        /// Directory for the CA files; created if missing.
        #[arg(long)]
        dir: PathBuf,
        /// Name written into the CA certificate.
        #[arg(long, default_value = "levee")]
        cluster_name: String,
        /// Validity of the CA certificate.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issue a certificate for a controller, agent or operator.
    Issue {
        /// Directory holding `ca.crt` and `ca.key`.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The identity: node, agent or person name.
        #[arg(long)]
        name: String,
        /// IP addresses a controller is reached at (repeatable).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Where to write `<name>.crt` and `<name>.key`; defaults to --dir.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
}

fn parse_role(value: &str) -> Result<Role, String> {
    value
        .parse()
        .map_err(|err: levee_common::identity::IdentityError| err.to_string())
}

pub fn run(command: CaCommand) -> Result<()> {
    match command {
        CaCommand::Init {
            dir,
            cluster_name,
            days,
        } => {
            let ca = init_ca(&dir, &cluster_name, days)?;
            out!(
                "created CA in {} ({} bytes of certificate)",
                dir.display(),
                ca.cert_pem().len()
            );
            Ok(())
        }
        CaCommand::Issue {
            dir,
            role,
            name,
            ips,
            out,
            days,
        } => {
            let ca = load_ca(&dir)?;
            let identity = Identity::new(role, name.clone());
            let out = out.unwrap_or(dir);
            issue(&ca, &identity, &ips, days, &out)?;
            out!(
                "issued {identity} into {}/{name}.crt and {name}.key",
                out.display()
            );
            Ok(())
        }
    }
}

pub fn init_ca(dir: &Path, cluster_name: &str, days: u64) -> Result<CertificateAuthority> {
    if dir.join("ca.key").exists() {
        bail!(
            "{} already holds a CA key; refusing to overwrite it",
            dir.display()
        );
    }
    let ca = CertificateAuthority::create(cluster_name, now(), DAY * days as u32)?;
    write_file(&dir.join("ca.crt"), ca.cert_pem(), 0o644)?;
    write_file(&dir.join("ca.key"), &ca.key_pem(), 0o600)?;
    Ok(ca)
}

pub fn load_ca(dir: &Path) -> Result<CertificateAuthority> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run `levee ca init --dir {}` first?)",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(CertificateAuthority::from_pem(
        &read("ca.crt")?,
        &read("ca.key")?,
    )?)
}

pub fn issue(
    ca: &CertificateAuthority,
    identity: &Identity,
    ips: &[IpAddr],
    days: u64,
    out: &Path,
) -> Result<()> {
    let issued = ca.issue(identity, ips, now(), DAY * days as u32)?;
    issued.write(out, &identity.name)?;
    if !out.join("ca.crt").exists() {
        write_file(&out.join("ca.crt"), ca.cert_pem(), 0o644)?;
    }
    Ok(())
}
