//! The shipped systemd units are valid, as `systemd-analyze verify` sees them.

use std::path::Path;
use std::process::Command;

use levee_tests::process::{bin_dir, binary};

#[test]
fn the_systemd_units_verify_without_warnings() {
    // The units name the installed paths; point them at the built binaries.
    binary("levee");
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
    let mut checked = 0;
    for entry in std::fs::read_dir(&units).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let local = text.replace("/usr/local/bin/", &format!("{}/", bin_dir().display()));
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, local).unwrap();
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect(
                "systemd-analyze is part of this machine image; install systemd if it is missing",
            );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "{}: {stderr}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "expected the controller and agent units");
}
