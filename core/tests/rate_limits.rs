//! Per-user event budgets: reader events and other events apart; refusals cost nothing.

mod common;

use alice_core::Config;
use common::*;
use serde_json::json;

#[test]
fn reader_events_burst_then_rate_limited_with_retry_after() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    for _ in 0..40 {
        let out = node.send(r, "reader-event", json!({"eventType": "T"}));
        assert_eq!(received(&out, r, "reader-event-received").len(), 1);
    }
    let (out, ack) = node.send_ack(r, "reader-event", vec![json!({"eventType": "T"})]);
    let err = error_of(&out, r);
    assert_eq!(err["code"], json!("RATE_LIMITED"));
    assert_eq!(err["retryAfterMs"], json!(50));
    assert_eq!(ack["error"]["retryAfterMs"], json!(50));
    // The connection stays usable; the other budget is separate.
    let out = node.send(r, "join-room", json!("a"));
    assert_eq!(received(&out, r, "room-joined").len(), 1);
    node.advance(50);
    let out = node.send(r, "reader-event", json!({"eventType": "T"}));
    assert_eq!(received(&out, r, "reader-event-received").len(), 1);
}

#[test]
fn refused_events_cost_no_tokens() {
    let config = Config {
        reader_event_burst: 2,
        reader_event_rate: 1,
        other_event_burst: 1,
        other_event_rate: 1,
        ..Config::default()
    };
    let mut node = Node::with_config(config);
    let r = node.connect("r1", "reader");
    for _ in 0..10 {
        node.send(r, "reader-event", json!({"eventType": "bad type"}));
        node.send(r, "subscribe-consultant", json!({"consultantId": "r1"}));
        node.send(r, "no-such-event", json!({}));
    }
    for _ in 0..2 {
        let out = node.send(r, "reader-event", json!({"eventType": "T"}));
        assert_eq!(received(&out, r, "reader-event-received").len(), 1);
    }
    let out = node.send(r, "join-room", json!("a"));
    assert_eq!(received(&out, r, "room-joined").len(), 1);
    let out = node.send(r, "join-room", json!("b"));
    assert_eq!(error_of(&out, r)["code"], json!("RATE_LIMITED"));
}

#[test]
fn budgets_are_per_user_not_per_socket() {
    let config = Config { reader_event_burst: 3, ..Config::default() };
    let mut node = Node::with_config(config);
    let tab1 = node.connect("r1", "reader");
    let tab2 = node.connect("r1", "reader");
    let other = node.connect("r2", "reader");
    node.send(tab1, "reader-event", json!({"eventType": "T"}));
    node.send(tab2, "reader-event", json!({"eventType": "T"}));
    node.send(tab1, "reader-event", json!({"eventType": "T"}));
    let out = node.send(tab2, "reader-event", json!({"eventType": "T"}));
    assert_eq!(error_of(&out, tab2)["code"], json!("RATE_LIMITED"));
    let out = node.send(other, "reader-event", json!({"eventType": "T"}));
    assert_eq!(received(&out, other, "reader-event-received").len(), 1);
}

#[test]
fn refusals_after_the_rate_check_give_the_token_back() {
    let config =
        Config { other_event_burst: 2, other_event_rate: 1, max_rooms_per_socket: 1, ..Config::default() };
    let mut node = Node::with_config(config);
    let r = node.connect("r1", "reader");
    node.send(r, "join-room", json!("a"));
    // Too many rooms, and refresh tokens that fail verification, cost nothing.
    for _ in 0..5 {
        let out = node.send(r, "join-room", json!("b"));
        assert_eq!(error_of(&out, r)["message"], json!("Too many rooms"));
        node.send(r, "refresh-token", json!({"token": "x.y.z"}));
        let out = node.input(alice_core::Input::TokenVerified {
            conn: r,
            ack: None,
            token: alice_core::TokenCheck::Invalid,
        });
        assert_eq!(error_of(&out, r)["code"], json!("INVALID_PAYLOAD"));
    }
    let out = node.send(r, "leave-room", json!("a"));
    assert_eq!(received(&out, r, "room-left").len(), 1, "the second token is still there");
    let out = node.send(r, "leave-room", json!("a"));
    assert_eq!(error_of(&out, r)["code"], json!("RATE_LIMITED"));
}
