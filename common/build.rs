//! Compiles `proto/levee/v1/*.proto` with a vendored `protoc`, so a fresh
//! machine needs nothing but cargo.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files = [
        "agent.proto",
        "control.proto",
        "raft.proto",
        "resource.proto",
    ]
    .map(|name| proto_root.join("levee/v1").join(name));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(config, &files, &[proto_root])?;
    Ok(())
}
