//! The `alice-realtime` binary's command line: `--help` lists every variable, and a bad value,
//! from the environment or a flag, stops the start with a message naming the variable.

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_alice-realtime"));
    cmd.args(args).env_clear().env("DATA_DIR", std::env::temp_dir().join("alice-command-line"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the binary runs");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn help_lists_the_variables_with_defaults_and_hides_the_environments_values() {
    let (code, help, _) = run(&["--help"], &[("JWT_SECRET", "a-secret-that-must-not-show")]);
    assert_eq!(code, 0);
    for expected in
        ["[env: REALTIME_PORT]", "[default: 3001]", "[env: CONSULTANT_SCOPE]", "--jwt-secret <JWT_SECRET>"]
    {
        assert!(help.contains(expected), "{expected} missing:\n{help}");
    }
    assert!(!help.contains("a-secret-that-must-not-show"), "--help showed a secret");
}

#[test]
fn a_bad_value_stops_the_start_and_names_its_variable() {
    let (code, _, err) = run(&[], &[("READER_EVENT_RATE", "lots")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("READER_EVENT_RATE must be a whole number"), "{err}");
    let (code, _, err) = run(&["--consultant-scope", "mine"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CONSULTANT_SCOPE must be all or assigned"), "{err}");
    let (code, _, err) = run(&["--no-such-option"], &[]);
    assert_eq!(code, 2, "{err}");
}

#[cfg(unix)]
#[test]
fn a_value_that_is_not_text_is_named_too() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(env!("CARGO_BIN_EXE_alice-realtime"))
        .env_clear()
        .env("REDIS_URL", std::ffi::OsStr::from_bytes(b"redis://\xff\xfe"))
        .output()
        .expect("the binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("REDIS_URL is not valid UTF-8 text"), "{err}");
}
