//! The controller's and the agent's modules form layers, and an import
//! may only point down: no cycles, and nothing reaching up into what uses
//! it. Inside a module, its sibling files form no cycle either. This reads
//! the sources (tests excluded) and fails naming the import at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The controller's layers, bottom to top: a module may import only from
/// earlier layers.
const CONTROLLER: &[&[&str]] = &[
    &["clock", "engine", "secrets"],
    &["state"],
    &["raft"],
    &["convert"],
    &["sources", "leader"],
    &["api"],
    &["metrics", "config"],
    &["node"],
    &["cli"],
];

/// The agent's layers, bottom to top.
const AGENT: &[&[&str]] = &[
    &["clock", "util", "group", "user", "paths", "logs", "task"],
    &["exec", "wire"],
    &["store"],
    &["outbox", "journal"],
    &["probe", "supervisor"],
    &["health"],
    &["apply"],
    &["sources"],
    &["drift"],
    &["link"],
    &["metrics_endpoint"],
];

#[test]
fn the_controller_imports_only_down_its_layers_with_no_cycles() {
    check("controller", CONTROLLER);
}

#[test]
fn the_agent_imports_only_down_its_layers_with_no_cycles() {
    check("agent", AGENT);
}

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`, but test files.
fn sources(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            if name != "tests" {
                sources(&path, files);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_test.rs") {
            files.push(path);
        }
    }
}

/// The code of a file without its inline tests and comments.
fn code(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    code.lines()
        .map(|line| line.split("//").next().unwrap_or("").to_owned())
        .collect()
}

/// The paths after each `prefix` in `lines`, as segments.
fn paths_after(lines: &[String], prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in lines {
        for (at, _) in line.match_indices(prefix) {
            let rest = &line[at + prefix.len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            found.push(
                path.split("::")
                    .filter(|segment| !segment.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    found
}

/// (top module, sibling file within it) of a source file.
fn position(relative: &Path) -> (String, Option<String>) {
    let parts: Vec<String> = relative
        .components()
        .map(|part| {
            part.as_os_str()
                .to_str()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    let child = parts.get(1).filter(|child| *child != "mod").cloned();
    (parts[0].clone(), child)
}

/// Checks the crate in `crate_dir` (beside this crate) against `layers`.
fn check(crate_dir: &str, layers: &[&[&str]]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = Vec::new();
    // Edges between sibling files of one module: (module, from) -> to.
    let mut siblings = Siblings::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let (module, child) = position(relative);
        if matches!(module.as_str(), "lib" | "main" | "testing") {
            continue;
        }
        let layer = layer_of(layers, &module)
            .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to the layers"));
        let lines = code(&std::fs::read_to_string(file).unwrap());
        // In a module's own file (`x.rs`, `x/mod.rs`), `super::` is the
        // crate root: those paths are crate paths.
        let parts = relative.components().count();
        let at_root = parts == 1 || (parts == 2 && relative.ends_with("mod.rs"));
        let mut crate_paths = paths_after(&lines, "crate::");
        if at_root {
            crate_paths.extend(paths_after(&lines, "super::"));
        }
        for path in crate_paths {
            let Some(imported) = path.first() else {
                continue;
            };
            if *imported == module {
                if let (Some(child), Some(target)) = (&child, path.get(1)) {
                    add_sibling(&mut siblings, &module, child, target);
                }
                continue;
            }
            let Some(imported_layer) = layer_of(layers, imported) else {
                panic!("{}: `crate::{imported}` is in no layer", relative.display());
            };
            if imported_layer >= layer {
                upward.push(format!(
                    "{}: {module} (layer {layer}) imports {imported} (layer {imported_layer})",
                    relative.display()
                ));
            }
        }
        // `super::x` from a file directly inside a module names a sibling.
        if let Some(child) = &child
            && relative.components().count() == 2
        {
            for path in paths_after(&lines, "super::") {
                if let Some(target) = path.first() {
                    add_sibling(&mut siblings, &module, child, target);
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{upward:#?}"
    );
    let mut cycles = Vec::new();
    for (module, edges) in &siblings {
        for (from, targets) in edges {
            for to in targets.iter().filter(|to| *to != from) {
                if reaches(edges, to, from, &mut BTreeSet::new()) {
                    cycles.push(format!("{module}: {from} -> {to} -> ... -> {from}"));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "sibling files that import each other:\n{cycles:#?}"
    );
}

type Siblings = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Records that `from`, a file of `module`, imports its sibling `to`.
fn add_sibling(siblings: &mut Siblings, module: &str, from: &str, to: &str) {
    siblings
        .entry(module.to_owned())
        .or_default()
        .entry(from.to_owned())
        .or_default()
        .insert(to.to_owned());
}

/// Whether `from` reaches `to` through `edges`.
fn reaches(
    edges: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> bool {
    if from == to {
        return true;
    }
    if !seen.insert(from.to_owned()) {
        return false;
    }
    edges
        .get(from)
        .is_some_and(|targets| targets.iter().any(|next| reaches(edges, next, to, seen)))
}
