//! Runs the end-to-end suite in `e2e/` (the official socket.io-client from npm, under
//! `node --test`) and the client library's tests in `clients/js/` against this build's
//! `alice-realtime` binary.
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

/// Installs `dir`'s npm packages (from its lockfile) unless `packages` are there already.
fn npm_ci(dir: &std::path::Path, packages: &[&str]) {
    if packages.iter().all(|p| dir.join("node_modules").join(p).exists()) {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm runs");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// Runs `node --test` in `dir` against this build's binary.
fn node_tests(dir: &std::path::Path, what: &str) {
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .current_dir(dir)
        .env("ALICE_BIN", env!("CARGO_BIN_EXE_alice-realtime"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}");
}

fn node_available() -> bool {
    if have("node") && have("npm") {
        return true;
    }
    assert!(!require_services(), "Node.js and npm are required for the end-to-end suite");
    eprintln!("\n*** SKIPPED: the socket.io-client end-to-end suite needs Node.js and npm on the PATH ***\n");
    false
}

/// One test, so that no two `npm ci` run in one directory at once.
#[test]
fn socket_io_client_end_to_end_and_the_client_library() {
    if !node_available() {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    npm_ci(&root.join("e2e"), &["socket.io-client", "ws", "playwright-core"]);
    // The flaky-link tests and the library's own use the library, which has its own packages.
    npm_ci(&root.join("clients/js"), &["socket.io-client"]);
    node_tests(&root.join("e2e"), "the end-to-end suite");
    node_tests(&root.join("clients/js"), "the client library's tests");
}
