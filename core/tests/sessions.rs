//! Admission, handshake and connection limits, token refresh and expiry.

mod common;

use alice_core::{Config, ConnectRefusal, Input, Output, TokenCheck};
use common::*;
use serde_json::json;

fn refusal(out: &[Output]) -> ConnectRefusal {
    match out {
        [Output::Refuse { reason, .. }] => *reason,
        other => panic!("expected one refusal: {other:?}"),
    }
}

#[test]
fn connect_errors_have_the_exact_messages() {
    let mut node = Node::new();
    let exp = START.0 / 1000 + 60;
    let cases = [
        (TokenCheck::Missing, "Authentication token required"),
        (TokenCheck::Invalid, "Invalid authentication token"),
        (TokenCheck::Verified(json!({"sub": "u", "role": "reader"})), "Invalid authentication token"),
        (TokenCheck::Verified(json!({"exp": exp, "role": "reader"})), "Invalid authentication token"),
        (
            TokenCheck::Verified(json!({"sub": "u", "exp": START.0 / 1000, "role": "reader"})),
            "Authentication token expired",
        ),
        (
            TokenCheck::Verified(json!({"sub": "u", "exp": exp, "role": "authenticated"})),
            "Insufficient permissions",
        ),
    ];
    for (token, message) in cases {
        let (_, out) = node.try_connect(token);
        assert_eq!(refusal(&out).to_string(), message);
    }
}

#[test]
fn a_reader_whose_id_the_store_could_not_hold_is_refused_and_staff_are_not() {
    // The original Supabase schema keeps user ids in a uuid column.
    let mut node = Node::with_config(Config { store_user_ids_are_uuids: true, ..Config::default() });
    let other_forms = [
        "urn:uuid:6f1c2f2e-8a4b-4b7e-9d3a-0c1e2d3f4a5b",
        "6F1C2F2E-8A4B-4B7E-9D3A-0C1E2D3F4A5B",
        "{6f1c2f2e-8a4b-4b7e-9d3a-0c1e2d3f4a5b}",
        "6f1c2f2e8a4b4b7e9d3a0c1e2d3f4a5b",
    ];
    for sub in ["reader-1"].into_iter().chain(other_forms) {
        let (_, out) = node.try_connect(TokenCheck::Verified(claims(sub, "reader")));
        assert_eq!(refusal(&out).to_string(), "Invalid authentication token", "{sub}");
    }
    node.connect("6f1c2f2e-8a4b-4b7e-9d3a-0c1e2d3f4a5b", "reader");
    // Staff ids are never stored with events.
    node.connect("consultant-1", "consultant");
    node.connect("admin-1", "admin");

    // PostgreSQL holds no U+0000 in text.
    let mut node = Node::with_config(Config { store_refuses_nul: true, ..Config::default() });
    let (_, out) = node.try_connect(TokenCheck::Verified(claims("reader\u{0}1", "reader")));
    assert_eq!(refusal(&out), ConnectRefusal::InvalidToken);
    node.connect("reader-1", "reader");

    // The embedded store holds any id.
    Node::new().connect("reader\u{0}1", "reader");
}

#[test]
fn handshakes_are_rate_limited_per_user() {
    let config = Config { handshakes_per_minute: 3, ..Config::default() };
    let mut node = Node::with_config(config);
    for _ in 0..3 {
        let c = node.connect("u1", "reader");
        node.disconnect(c);
    }
    let (_, out) = node.try_connect(TokenCheck::Verified(claims("u1", "reader")));
    assert_eq!(refusal(&out), ConnectRefusal::RateLimited);
    node.connect("u2", "reader");
    node.advance(20_000);
    node.connect("u1", "reader");
}

#[test]
fn connection_caps_per_user_and_per_node() {
    let config = Config { max_connections_per_user: 2, max_connections: 3, ..Config::default() };
    let mut node = Node::with_config(config);
    let a = node.connect("u1", "reader");
    node.connect("u1", "reader");
    let (_, out) = node.try_connect(TokenCheck::Verified(claims("u1", "reader")));
    assert_eq!(refusal(&out), ConnectRefusal::ServerBusy);
    node.connect("u2", "reader");
    let (_, out) = node.try_connect(TokenCheck::Verified(claims("u3", "reader")));
    assert_eq!(refusal(&out), ConnectRefusal::ServerBusy);
    node.disconnect(a);
    node.connect("u3", "reader");
}

#[test]
fn an_expired_token_closes_the_socket() {
    let mut node = Node::new();
    let mut cl = claims("r1", "reader");
    cl["exp"] = json!(START.0 / 1000 + 10);
    let (conn, _) = node.try_connect(TokenCheck::Verified(cl));
    let out = node.advance(9_999);
    assert!(out.is_empty() || !out.contains(&Output::Disconnect { conn }));
    let out = node.advance(1);
    assert_eq!(error_of(&out, conn)["code"], json!("TOKEN_EXPIRED"));
    assert!(out.contains(&Output::Disconnect { conn }));
    assert_eq!(node.core.stats().connections, 0);
    // Events from the closed socket are ignored.
    assert!(node.send(conn, "reader-event", json!({"eventType": "T"})).is_empty());
}

#[test]
fn refresh_extends_the_session() {
    let mut node = Node::new();
    let mut cl = claims("r1", "reader");
    cl["exp"] = json!(START.0 / 1000 + 10);
    let (conn, _) = node.try_connect(TokenCheck::Verified(cl));
    let ack = Some(alice_core::AckId(9));
    let args = vec![json!({"token": "new.jwt.here"})];
    let out =
        node.input(Input::ClientEvent { conn, name: "refresh-token".into(), args, has_binary: false, ack });
    // The shell verifies the signature first; the ack waits for that.
    assert_eq!(out, vec![Output::VerifyToken { conn, ack, token: "new.jwt.here".into() }]);
    let mut fresh = claims("r1", "reader");
    fresh["exp"] = json!(START.0 / 1000 + 100);
    let out = node.input(Input::TokenVerified { conn, ack, token: TokenCheck::Verified(fresh) });
    let expected = json!({"expiresAt": START.plus(100_000).rfc3339()});
    assert_eq!(received(&out, conn, "token-refreshed"), vec![expected.clone()]);
    let acked: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Ack { payload, .. } => Some(payload.value()),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![json!({"ok": true, "expiresAt": expected["expiresAt"]})]);
    let out = node.advance(50_000);
    assert!(!out.contains(&Output::Disconnect { conn }));
    let out = node.advance(50_000);
    assert!(out.contains(&Output::Disconnect { conn }));
}

#[test]
fn refresh_errors() {
    let mut node = Node::new();
    let conn = node.connect("r1", "reader");
    let verify = |node: &mut Node, token: TokenCheck| {
        let out = node.input(Input::TokenVerified { conn, ack: None, token });
        error_of(&out, conn)["code"].clone()
    };
    assert_eq!(verify(&mut node, TokenCheck::Invalid), json!("INVALID_PAYLOAD"));
    assert_eq!(verify(&mut node, TokenCheck::Verified(json!({"role": "reader"}))), json!("INVALID_PAYLOAD"));
    let mut expired = claims("r1", "reader");
    expired["exp"] = json!(START.0 / 1000 - 1);
    assert_eq!(verify(&mut node, TokenCheck::Verified(expired)), json!("TOKEN_EXPIRED"));
    assert_eq!(verify(&mut node, TokenCheck::Verified(claims("r2", "reader"))), json!("FORBIDDEN"));
    assert_eq!(verify(&mut node, TokenCheck::Verified(claims("r1", "consultant"))), json!("FORBIDDEN"));
    assert_eq!(verify(&mut node, TokenCheck::Verified(claims("r1", "authenticated"))), json!("FORBIDDEN"));
}

#[test]
fn a_refresh_sent_before_expiry_is_judged_even_if_verified_after_it() {
    let mut node = Node::new();
    let mut cl = claims("r1", "reader");
    cl["exp"] = json!(START.0 / 1000 + 10);
    let (conn, _) = node.try_connect(TokenCheck::Verified(cl));
    node.advance(9_000);
    node.send(conn, "refresh-token", json!({"token": "slow.to.verify"}));
    // The token expires while the shell is still verifying the new one: nothing happens yet.
    let out = node.advance(2_000);
    assert!(!out.contains(&Output::Disconnect { conn }), "{out:?}");
    let mut fresh = claims("r1", "reader");
    fresh["exp"] = json!(START.0 / 1000 + 100);
    let out = node.input(Input::TokenVerified { conn, ack: None, token: TokenCheck::Verified(fresh) });
    assert_eq!(received(&out, conn, "token-refreshed").len(), 1);
    assert!(!out.contains(&Output::Disconnect { conn }));

    // A refresh that fails after the expiry passed closes the socket then.
    node.advance(88_500);
    node.send(conn, "refresh-token", json!({"token": "bad"}));
    let out = node.advance(1_000);
    assert!(!out.contains(&Output::Disconnect { conn }));
    let out = node.input(Input::TokenVerified { conn, ack: None, token: TokenCheck::Invalid });
    assert!(out.contains(&Output::Disconnect { conn }), "{out:?}");
    let codes: Vec<_> = received(&out, conn, "event-error").iter().map(|e| e["code"].clone()).collect();
    assert_eq!(codes, vec![json!("INVALID_PAYLOAD"), json!("TOKEN_EXPIRED")]);
}
