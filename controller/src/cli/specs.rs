//! Reading and checking spec files: `levee validate` and `levee schema`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use levee_common::spec::{SpecSet, spec_schema};

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

/// Spec files as the Control API takes them.
pub fn wire_files(files: Vec<(String, String)>) -> Vec<levee_common::pb::SpecFile> {
    files
        .into_iter()
        .map(|(name, content)| levee_common::pb::SpecFile { name, content })
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
    out!(
        "{} valid: {} services, {} modules, {} rules, {} provisioners",
        path.display(),
        specs.services.len(),
        specs.modules.len(),
        specs.rules.len(),
        specs.provisioners.len()
    );
    Ok(())
}

/// Prints the JSON Schema of spec documents.
pub fn schema() -> Result<()> {
    out!("{}", serde_json::to_string_pretty(&spec_schema())?);
    Ok(())
}
