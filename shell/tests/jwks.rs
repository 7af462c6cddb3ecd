//! Asymmetric tokens verified against a JWKS (as Supabase serves it): keys are fetched, cached,
//! refetched on an unknown `kid` at most once per interval; audience and issuer are enforced.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const JWKS: &str = include_str!("fixtures/jwks.json");
const PRIVATE_KEY: &[u8] = include_bytes!("fixtures/es256-private.pem");

fn es256(kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(PRIVATE_KEY).unwrap()).unwrap()
}

fn supabase_claims(sub: &str, role: &str) -> Value {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    json!({"sub": sub, "exp": exp, "role": "authenticated", "aud": "authenticated",
           "iss": "https://project.supabase.co/auth/v1", "app_metadata": {"role": role}})
}

/// Serves the fixture JWKS where Supabase would, counting fetches.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/auth/v1/.well-known/jwks.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { ([("content-type", "application/json")], JWKS) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fetches)
}

#[tokio::test]
async fn supabase_es256_tokens_through_the_jwks() {
    let (supabase_url, fetches) = jwks_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[("SUPABASE_URL", &supabase_url)]);
    s.auth.secret = b"a-secret-nobody-signs-with-here".to_vec();
    let server = alice_shell::start(s).await.unwrap();
    let addr = server.addr;

    let mut c =
        Client::connect(addr, &es256("test-key-1", supabase_claims("sb-c", "consultant"))).await.unwrap();
    assert_eq!(c.call("get-online-readers", Value::Null).await["ok"], true);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Cached: no second fetch for a known kid.
    Client::connect(addr, &es256("test-key-1", supabase_claims("sb-r", "reader"))).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // An unknown kid refetches once, then is refused; another right away does not refetch.
    let unknown = Client::connect(addr, &es256("rotated-key", supabase_claims("sb-x", "reader"))).await;
    assert_eq!(unknown.err().as_deref(), Some("Invalid authentication token"));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    let again = Client::connect(addr, &es256("another-key", supabase_claims("sb-y", "reader"))).await;
    assert_eq!(again.err().as_deref(), Some("Invalid authentication token"));
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "refetches are rate limited");

    // A token signed with another key under a known kid is refused.
    let forged = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key-1".into());
        jsonwebtoken::encode(&header, &supabase_claims("sb-z", "admin"), &EncodingKey::from_secret(b"x"))
            .unwrap()
    };
    assert_eq!(Client::connect(addr, &forged).await.err().as_deref(), Some("Invalid authentication token"));
    server.shutdown().await;
}

#[tokio::test]
async fn audience_and_issuer_are_enforced_when_set() {
    let (supabase_url, _) = jwks_server().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("JWT_JWKS_URL", &*format!("{supabase_url}/auth/v1/.well-known/jwks.json")),
        ("JWT_AUDIENCE", "authenticated"),
        ("JWT_ISSUER", "https://project.supabase.co/auth/v1"),
    ];
    let server = alice_shell::start(settings(dir.path(), &vars)).await.unwrap();
    let ok = supabase_claims("u1", "reader");
    assert!(Client::connect(server.addr, &es256("test-key-1", ok.clone())).await.is_ok());
    let mut wrong_aud = ok.clone();
    wrong_aud["aud"] = json!("someone-else");
    let refused = Client::connect(server.addr, &es256("test-key-1", wrong_aud)).await;
    assert_eq!(refused.err().as_deref(), Some("Invalid authentication token"));
    let mut wrong_iss = ok.clone();
    wrong_iss["iss"] = json!("https://evil.example/auth/v1");
    let refused = Client::connect(server.addr, &es256("test-key-1", wrong_iss)).await;
    assert_eq!(refused.err().as_deref(), Some("Invalid authentication token"));
    // A claim that is set must be present, not only right when present.
    for claim in ["aud", "iss"] {
        let mut without = ok.clone();
        without.as_object_mut().unwrap().remove(claim);
        let refused = Client::connect(server.addr, &es256("test-key-1", without)).await;
        assert_eq!(refused.err().as_deref(), Some("Invalid authentication token"), "a token without {claim}");
    }
    server.shutdown().await;
}

/// A JWKS server whose fetches after the first `answered_at_once` wait until `release` is notified.
struct HeldJwks {
    url: String,
    fetches: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
}

async fn held_jwks_server(answered_at_once: usize) -> HeldJwks {
    let fetches = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let (counter, gate) = (fetches.clone(), release.clone());
    let app = axum::Router::new().route(
        "/auth/v1/.well-known/jwks.json",
        get(move || {
            let (counter, gate) = (counter.clone(), gate.clone());
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) >= answered_at_once {
                    gate.notified().await;
                }
                ([("content-type", "application/json")], JWKS)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    HeldJwks { url, fetches, release }
}

async fn wait_for_fetches(fetches: &AtomicUsize, n: usize) {
    for _ in 0..500 {
        if fetches.load(Ordering::SeqCst) == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("expected {n} JWKS fetches, saw {}", fetches.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_refetch_for_an_unknown_kid_holds_up_no_token_with_a_known_one() {
    let HeldJwks { url: supabase_url, fetches, release } = held_jwks_server(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), &[("SUPABASE_URL", &supabase_url)]);
    s.auth.secret = b"a-secret-nobody-signs-with-here".to_vec();
    let server = alice_shell::start(s).await.unwrap();
    let addr = server.addr;
    Client::connect(addr, &es256("test-key-1", supabase_claims("kk-1", "reader"))).await.unwrap();

    // A random kid sets off a refetch, which hangs.
    let unknown_kid = es256("random-kid-7f3a", supabase_claims("kk-x", "reader"));
    let attacker = tokio::spawn(async move { Client::connect(addr, &unknown_kid).await });
    wait_for_fetches(&fetches, 2).await; // the refetch is in flight
                                         // Tokens with a known kid are checked meanwhile (HS256 ones never touch the JWKS).
    Client::connect(addr, &es256("test-key-1", supabase_claims("kk-2", "reader"))).await.unwrap();
    assert!(!attacker.is_finished(), "checked while the refetch was still in flight");
    let hs256 = alice_shell::auth::sign(
        b"a-secret-nobody-signs-with-here",
        "kk-3",
        "reader",
        std::time::Duration::from_secs(60),
    );
    Client::connect(addr, &hs256).await.unwrap();
    assert!(!attacker.is_finished());

    release.notify_one();
    let refused = attacker.await.unwrap();
    assert_eq!(refused.err().as_deref(), Some("Invalid authentication token"));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_reader_who_leaves_while_the_token_is_checked_is_not_left_online() {
    let held = held_jwks_server(0).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-secret-only-this-test-signs-with";
    let mut s = settings(dir.path(), &[("SUPABASE_URL", &held.url), ("MAX_CONNECTIONS_PER_USER", "1")]);
    s.auth.secret = secret.as_bytes().to_vec();
    let server = alice_shell::start(s).await.unwrap();
    let addr = server.addr;
    let consultant = alice_shell::auth::sign(
        secret.as_bytes(),
        "watcher",
        "consultant",
        std::time::Duration::from_secs(60),
    );
    let mut watcher = Client::connect(addr, &consultant).await.unwrap();

    // The reader's token waits on the JWKS; the reader leaves; then the JWKS answers and the
    // token is found good, after the client is gone.
    let reader = es256("test-key-1", supabase_claims("gone-reader", "reader"));
    Client::leave_during_connect(addr, &reader).await;
    wait_for_fetches(&held.fetches, 1).await;
    held.release.notify_one();

    // Its token is good, but the client is not there: it is let go, and does not keep the user's
    // only connection slot.
    let mut back = Err(String::new());
    for _ in 0..100 {
        back = Client::connect(addr, &reader).await;
        if back.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back.is_ok(), "the reader connects again: {:?}", back.err());
    drop(back);
    // Nor is it left online once the one that came back leaves.
    let mut online: Vec<String> = vec![];
    for _ in 0..100 {
        let list = watcher.call("get-online-readers", Value::Null).await;
        let readers = list["readers"].as_array().unwrap().iter();
        online = readers.map(|r| r["userId"].as_str().unwrap().to_owned()).collect();
        if online.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(online, Vec::<String>::new());
    server.shutdown().await;
}
