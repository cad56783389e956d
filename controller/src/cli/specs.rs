//! `levee validate` and `levee apply`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use levee_common::pb;
use levee_common::spec::SpecSet;

use super::client::ClientArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A spec file or a directory of `*.yaml` / `*.yml` files.
    #[arg(long = "file", short = 'f')]
    pub path: PathBuf,
    /// Why this version is applied; kept in the history.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// Reads `path` (a file, or every YAML file in a directory, sorted).
pub fn read_spec_files(path: &Path) -> Result<Vec<(String, String)>> {
    let mut paths = Vec::new();
    if path.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let entry_path = entry?.path();
            if entry_path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                paths.push(entry_path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            bail!("{} holds no *.yaml or *.yml files", path.display());
        }
    } else {
        paths.push(path.to_owned());
    }
    paths
        .into_iter()
        .map(|file| {
            let content = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            Ok((file.display().to_string(), content))
        })
        .collect()
}

pub fn parse_specs(files: &[(String, String)]) -> Result<SpecSet> {
    SpecSet::parse(
        files
            .iter()
            .map(|(name, content)| (name.as_str(), content.as_str())),
    )
    .map_err(|errors| {
        let count = errors.0.len();
        anyhow::Error::new(errors).context(format!(
            "{count} problem{} in the specs",
            if count == 1 { "" } else { "s" }
        ))
    })
}

pub fn validate(path: &Path) -> Result<()> {
    let files = read_spec_files(path)?;
    let specs = parse_specs(&files)?;
    println!(
        "{} valid: {} services, {} rules",
        path.display(),
        specs.services.len(),
        specs.rules.len()
    );
    Ok(())
}

pub async fn apply(args: ApplyArgs) -> Result<()> {
    let files = read_spec_files(&args.path)?;
    // Validate locally first: the same checks the controller runs, with
    // no round trip for a typo.
    parse_specs(&files)?;
    let client = args.client.connect()?;
    let request = pb::ApplySpecsRequest {
        files: files
            .into_iter()
            .map(|(name, content)| pb::SpecFile { name, content })
            .collect(),
        reason: args.reason,
    };
    let response = client
        .call(|mut c| {
            let request = request.clone();
            async move { c.apply_specs(request).await }
        })
        .await?;
    println!(
        "spec version {} committed; plans: {}",
        response.version,
        if response.plan_ids.is_empty() {
            "none (no change)".into()
        } else {
            response.plan_ids.join(", ")
        }
    );
    Ok(())
}
