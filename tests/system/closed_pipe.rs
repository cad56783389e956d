//! `levee ... | head`: a reader that goes away early must not make the
//! CLI panic.

use std::process::{Command, Stdio};

use levee_tests::process::binary;

#[test]
fn the_cli_ends_quietly_when_its_reader_closes_the_pipe() {
    let mut child = Command::new(binary("levee"))
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run levee");
    // Close the reading end before the command writes anything.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("levee ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
