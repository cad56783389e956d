//! The agent's modules form layers, and an import may only point down:
//! no cycles, and no helper reaching up into what uses it. This reads the
//! sources (tests excluded) and fails naming the import that points up.

use std::path::{Path, PathBuf};

/// Bottom to top; a module may import only from earlier layers.
const LAYERS: &[&[&str]] = &[
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

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`, but test files.
fn sources(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs")
            && path.file_name().is_some_and(|name| name != "tests.rs")
        {
            files.push(path);
        }
    }
}

/// The crate modules `text` names as `crate::<module>`, outside its tests
/// and comments.
fn imports(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_import_points_down_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str();
        let module = top.to_str().unwrap().trim_end_matches(".rs");
        if matches!(module, "lib" | "main" | "testing") {
            continue;
        }
        let layer = layer_of(module)
            .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS"));
        for import in imports(&std::fs::read_to_string(&file).unwrap()) {
            if import == module {
                continue;
            }
            let Some(imported) = layer_of(&import) else {
                panic!("{}: `crate::{import}` is in no layer", relative.display());
            };
            if imported >= layer {
                upward.push(format!(
                    "{}: {module} (layer {layer}) imports {import} (layer {imported})",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{upward:#?}"
    );
}
