//! Two clocks: monotonic time drives timers, rate limits and intervals; the wall clock only names
//! things (event ids and timestamps, token expiry, `lastActivity`). A wall clock stepped back an
//! hour freezes nothing.

mod common;

use alice_core::{BusBody, Config, Input, Millis, Now, Output};
use common::*;
use serde_json::{json, Value};

const HOUR: u64 = 3_600_000;

/// Feeds `input` with the monotonic clock at the harness's `now` and the wall clock `back` ms
/// behind it.
fn at(node: &mut Node, back: u64, input: Input) -> Vec<Output> {
    let now = Now { mono: node.now, wall: Millis(node.now.0 - back) };
    node.core.handle(now, input);
    node.drain()
}

fn reader_event(conn: alice_core::ConnId) -> Input {
    Input::ClientEvent {
        conn,
        name: "reader-event".into(),
        args: vec![json!({"eventType": "PAGE_TURN"})],
        has_binary: false,
        ack: None,
    }
}

#[test]
fn rate_limits_refill_while_the_wall_clock_steps_back_an_hour() {
    let mut node =
        Node::with_config(Config { reader_event_rate: 1, reader_event_burst: 2, ..Config::default() });
    let r = node.connect("r1", "reader");
    for _ in 0..2 {
        assert!(received(&at(&mut node, 0, reader_event(r)), r, "event-error").is_empty());
    }
    let out = at(&mut node, HOUR, reader_event(r));
    assert_eq!(error_of(&out, r)["code"], json!("RATE_LIMITED"));
    node.now = node.now.plus(1_000);
    let out = at(&mut node, HOUR, reader_event(r));
    assert!(received(&out, r, "event-error").is_empty(), "a second later the bucket refilled: {out:?}");
}

#[test]
fn timers_fire_on_monotonic_time() {
    let mut node = Node::new();
    node.connect("r1", "reader");
    let mut heartbeats = 0;
    for _ in 0..3 {
        node.now = node.now.plus(Config::default().heartbeat_interval_ms());
        heartbeats += published(&at(&mut node, HOUR, Input::Tick))
            .iter()
            .filter(|m| matches!(m.body, BusBody::Heartbeat { .. }))
            .count();
    }
    assert_eq!(heartbeats, 3, "one heartbeat per interval, the wall clock an hour behind");
}

#[test]
fn ids_and_timestamps_take_the_wall_clock_and_ids_still_increase() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let r = node.connect("r1", "reader");
    let first = received(&at(&mut node, 0, reader_event(r)), c, "reader-activity").remove(0);
    node.now = node.now.plus(10);
    let second = received(&at(&mut node, HOUR, reader_event(r)), c, "reader-activity").remove(0);
    let wall = Millis(node.now.0 - HOUR).rfc3339();
    assert_eq!(second["timestamp"], Value::String(wall), "the timestamp is the wall clock's");
    assert!(second["id"].as_str() > first["id"].as_str(), "ids never go back");
}

#[test]
fn a_token_expires_after_the_time_it_had_left_whatever_the_wall_clock_does() {
    let mut node = Node::new();
    // Expires 60 s after START by the wall clock.
    let claims = json!({"sub": "r1", "role": "reader", "exp": START.0 / 1000 + 60});
    let (conn, out) = node.try_connect(alice_core::TokenCheck::Verified(claims));
    assert!(out.contains(&Output::Accept { conn }));
    node.now = node.now.plus(59_000);
    assert!(!at(&mut node, HOUR, Input::Tick).contains(&Output::Disconnect { conn }));
    node.now = node.now.plus(1_000);
    let out = at(&mut node, HOUR, Input::Tick);
    assert!(out.contains(&Output::Disconnect { conn }), "60 s later it expired: {out:?}");
}
