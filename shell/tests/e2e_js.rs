//! Runs the end-to-end suite in `e2e/` (the official socket.io-client from npm, under
//! `node --test`) against this build's `alice-realtime` binary.
//!
//! Without Node.js this test skips loudly; with `ALICE_REQUIRE_SERVICES=1` it fails instead.

use std::path::PathBuf;
use std::process::Command;

fn require_services() -> bool {
    std::env::var("ALICE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn socket_io_client_end_to_end() {
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e");
    if !have("node") || !have("npm") {
        assert!(!require_services(), "Node.js and npm are required for the end-to-end suite");
        eprintln!(
            "\n*** SKIPPED: the socket.io-client end-to-end suite needs Node.js and npm on the PATH ***\n"
        );
        return;
    }
    let installed = ["socket.io-client", "ws", "playwright-core"]
        .iter()
        .all(|p| e2e.join("node_modules").join(p).exists());
    if !installed {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&e2e)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci failed in e2e/");
    }
    let output = Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&e2e)
        .env("ALICE_BIN", env!("CARGO_BIN_EXE_alice-realtime"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the end-to-end suite failed:\n{stdout}\n{stderr}");
}
