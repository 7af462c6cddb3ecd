//! The binary itself: the token command, development mode, and configuration errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_alice-realtime");

#[test]
fn token_command_signs_with_jwt_secret() {
    let out = Command::new(BIN)
        .args(["token", "--sub", "u-42", "--role", "consultant", "--ttl", "2h"])
        .env("JWT_SECRET", "cli-secret-0123456789")
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_secret(b"cli-secret-0123456789");
    let data = jsonwebtoken::decode::<serde_json::Value>(token.trim(), &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], "u-42");
    assert_eq!(data.claims["role"], "consultant");
    let ttl = data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 7200);

    // With an audience and an issuer required, the token carries both, so the server takes it.
    let out = Command::new(BIN)
        .args(["token", "--sub", "u-42", "--role", "reader"])
        .env("JWT_SECRET", "cli-secret-0123456789")
        .env("JWT_AUDIENCE", "authenticated")
        .env("JWT_ISSUER", "https://project.supabase.co/auth/v1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["authenticated"]);
    validation.set_issuer(&["https://project.supabase.co/auth/v1"]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let token = String::from_utf8(out.stdout).unwrap();
    jsonwebtoken::decode::<serde_json::Value>(token.trim(), &key, &validation).unwrap();

    let bad = Command::new(BIN)
        .args(["token", "--sub", "u", "--role", "root"])
        .env("JWT_SECRET", "cli-secret-0123456789")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--role"));
    let no_secret = Command::new(BIN)
        .args(["token", "--sub", "u", "--role", "reader"])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert!(!no_secret.status.success());
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("JWT_SECRET"));
}

#[test]
fn a_bad_setting_is_named_and_stops_the_start() {
    let out = Command::new(BIN).env("REALTIME_PORT", "not-a-port").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REALTIME_PORT"));
}

#[test]
fn development_mode_listens_on_loopback_and_logs_ready_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("REALTIME_PORT", "0")
        .env("DATA_DIR", dir.path())
        .env("LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut tokens, mut addr) = (Vec::new(), None);
    for line in lines {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(t) = v["fields"]["token"].as_str() {
            tokens.push(t.to_owned());
        }
        if v["fields"]["message"] == "Alice Realtime listening" {
            addr = v["fields"]["addr"].as_str().map(str::to_owned);
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let addr = addr.expect("listening line");
    assert!(addr.starts_with("127.0.0.1:"), "development mode binds loopback only: {addr}");
    assert_eq!(tokens.len(), 3, "reader, consultant and admin tokens are logged");
    let roles: Vec<String> = tokens
        .iter()
        .map(|t| {
            let payload = t.split('.').nth(1).unwrap();
            let json = base64_url_decode(payload);
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()["role"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(roles, ["reader", "consultant", "admin"]);
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}
