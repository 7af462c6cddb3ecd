//! Connection state recovery: every socket gets a `pid` and its session is saved under it; a
//! reconnect with `{ pid, offset }` restores the subscription and rooms and replays what was
//! missed (by subscription, support, room, or a reader's other tabs), for the same user only,
//! within the TTL and the limit.

mod common;

use std::sync::Arc;

use alice_core::{
    Config, ConnId, ConnectRefusal, Input, LogPosition, Output, ReaderEvent, Recovery, ReplayFilter,
    ReplayFrom, ReplayRule, SavedSession, TokenCheck,
};
use common::*;
use serde_json::json;

fn pid_of(out: &[Output], conn: ConnId) -> String {
    out.iter()
        .find_map(|o| match o {
            Output::Pid { conn: c, pid } if *c == conn => Some(pid.clone()),
            _ => None,
        })
        .expect("a pid")
}

fn saved(out: &[Output]) -> Vec<(String, SavedSession)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SaveSession { pid, session } => Some((pid.clone(), session.clone())),
            _ => None,
        })
        .collect()
}

fn forgotten(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::ForgetSession { pid } => Some(pid.clone()),
            _ => None,
        })
        .collect()
}

/// The position of the last `reader-activity` sent to `conn`.
fn last_offset(out: &[Output], conn: ConnId) -> LogPosition {
    out.iter()
        .rev()
        .find_map(|o| match o {
            Output::Activity { to, position, .. } if to.contains(&conn) => Some(*position),
            _ => None,
        })
        .expect("an activity")
}

fn reconnect(node: &mut Node, sub: &str, role: &str, recovery: Recovery) -> (ConnId, Vec<Output>) {
    let conn = node.next_conn();
    let token = TokenCheck::Verified(claims(sub, role));
    let out = node.input(Input::Connect { conn, sid: "s".into(), token, recovery: Some(Box::new(recovery)) });
    (conn, out)
}

#[test]
fn a_reconnect_with_its_pid_gets_its_subscription_back_and_what_it_missed() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let c = node.next_conn();
    let out = node.input(Input::Connect {
        conn: c,
        sid: "s".into(),
        token: TokenCheck::Verified(claims("c1", "consultant")),
        recovery: None,
    });
    let pid = pid_of(&out, c);
    let at = |o: &Output| out.iter().position(|x| x == o);
    assert!(at(&Output::Pid { conn: c, pid: pid.clone() }) < at(&Output::Accept { conn: c }), "named first");
    let out = node.send(c, "subscribe-consultant", json!({"consultantId": "c1", "eventTypes": ["A"]}));
    let (saved_pid, session) = saved(&out).remove(0);
    assert_eq!(saved_pid, pid);
    assert_eq!((session.user_id.as_str(), session.consultant_id.as_deref()), ("c1", Some("c1")));
    assert_eq!(session.expires_ms, node.now.0 + 86_400_000);
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    let offset = last_offset(&out, c);
    let out = node.disconnect(c);
    let session = saved(&out).remove(0).1;

    let missed: Vec<String> = ["A", "B", "HELP_REQUEST", "A"]
        .iter()
        .map(|ty| {
            let out = node.send(r, "reader-event", json!({"eventType": ty}));
            received(&out, r, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned()
        })
        .collect();
    let recovery =
        Recovery { pid: pid.clone(), offset: Some(offset.to_string()), session: Some(session.clone()) };
    let (again, out) = reconnect(&mut node, "c1", "consultant", recovery);
    assert_eq!(pid_of(&out, again), pid, "the same pid: recovered");
    assert_eq!(activity_ids(&out, again), [missed[0].clone(), missed[2].clone(), missed[3].clone()]);
    assert_eq!(node.core.stats().replayed, 3);
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert_eq!(activity_ids(&out, again).len(), 1, "still subscribed, live");
}

fn session(user: &str, expires_ms: u64) -> SavedSession {
    SavedSession {
        user_id: user.into(),
        consultant_id: Some(user.into()),
        event_types: Vec::new(),
        rooms: vec!["class-1".into()],
        from: LogPosition::START,
        expires_ms,
    }
}

#[test]
fn another_users_token_an_expired_session_or_a_refused_token_recover_nothing() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let far = node.now.0 + 60_000;
    // Another user's token: a fresh socket, and the pid is forgotten.
    let stolen =
        Recovery { pid: "p-1".into(), offset: Some("0-0".into()), session: Some(session("c1", far)) };
    let (thief, out) = reconnect(&mut node, "c2", "consultant", stolen);
    assert_ne!(pid_of(&out, thief), "p-1");
    assert_eq!(forgotten(&out), ["p-1"]);
    node.send(thief, "get-online-readers", json!(null));
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert!(activity_ids(&out, thief).is_empty(), "no subscription came with it");

    // Expired: fresh.
    let old = Recovery {
        pid: "p-2".into(),
        offset: Some("0-0".into()),
        session: Some(session("c1", node.now.0 - 1)),
    };
    let (late, out) = reconnect(&mut node, "c1", "consultant", old);
    assert_ne!(pid_of(&out, late), "p-2");

    // A refused token: forgotten too.
    let conn = node.next_conn();
    let recovery =
        Recovery { pid: "p-3".into(), offset: Some("0-0".into()), session: Some(session("c1", far)) };
    let out = node.input(Input::Connect {
        conn,
        sid: "s".into(),
        token: TokenCheck::Invalid,
        recovery: Some(Box::new(recovery)),
    });
    assert_eq!(forgotten(&out), ["p-3"]);
}

#[test]
fn a_connect_refused_as_busy_or_too_fast_keeps_its_session_for_the_next_try() {
    let config = Config { max_connections_per_user: 1, handshakes_per_minute: 2, ..Config::default() };
    let mut node = Node::with_config(config);
    let first = node.connect("c1", "consultant");
    let far = node.now.0 + 3_600_000;
    let recovery =
        || Recovery { pid: "p-6".into(), offset: Some("0-0".into()), session: Some(session("c1", far)) };
    // The user's one connection is taken: "Server busy", and the pid is kept.
    let (busy, out) = reconnect(&mut node, "c1", "consultant", recovery());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Refuse { conn, reason: ConnectRefusal::ServerBusy } if *conn == busy)));
    assert!(forgotten(&out).is_empty(), "busy is no refusal of the token");
    // Its handshakes are spent: "Rate limit exceeded", and the pid is still kept.
    node.disconnect(first);
    let (fast, out) = reconnect(&mut node, "c1", "consultant", recovery());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Refuse { conn, reason: ConnectRefusal::RateLimited } if *conn == fast)));
    assert!(forgotten(&out).is_empty(), "a handshake rate is no refusal of the token");
    // A minute on, the same pid recovers: the session was never forgotten.
    node.advance(60_000);
    let (back, out) = reconnect(&mut node, "c1", "consultant", recovery());
    assert_eq!(pid_of(&out, back), "p-6");
}

#[test]
fn the_tokens_role_decides_what_comes_back() {
    let mut node = Node::new();
    let r = node.connect("c1", "reader");
    let far = node.now.0 + 60_000;
    // The session was a consultant's; the token now says reader: only the rooms come back.
    let recovery =
        Recovery { pid: "p-4".into(), offset: Some("0-0".into()), session: Some(session("c1", far)) };
    let (back, out) = reconnect(&mut node, "c1", "reader", recovery);
    assert_eq!(pid_of(&out, back), "p-4");
    let (_, restored) = saved(&out).remove(0);
    assert_eq!((restored.consultant_id, restored.rooms), (None, vec!["class-1".to_owned()]));
    let _ = r;
}

#[test]
fn more_to_replay_than_the_limit_connects_fresh() {
    let config = alice_core::Config { resume_max_events: 2, ..alice_core::Config::default() };
    let mut node = Node::with_config(config);
    let r = node.connect("r1", "reader");
    for _ in 0..3 {
        node.send(r, "reader-event", json!({"eventType": "A"}));
    }
    let far = node.now.0 + 60_000;
    let recovery =
        Recovery { pid: "p-5".into(), offset: Some("0-0".into()), session: Some(session("c1", far)) };
    let (back, out) = reconnect(&mut node, "c1", "consultant", recovery);
    assert_ne!(pid_of(&out, back), "p-5");
    assert!(activity_ids(&out, back).is_empty());
}

#[test]
fn a_client_that_received_nothing_is_replayed_from_where_its_subscription_began() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    node.send(r, "reader-event", json!({"eventType": "A"}));
    let c = node.next_conn();
    let token = TokenCheck::Verified(claims("c1", "consultant"));
    let out = node.input(Input::Connect { conn: c, sid: "s".into(), token, recovery: None });
    let pid = pid_of(&out, c);
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let session = saved(&node.disconnect(c)).remove(0).1;
    let missed = node.send(r, "reader-event", json!({"eventType": "A"}));
    let missed = received(&missed, r, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned();
    // No offset: the client was given its pid and received no event before it dropped.
    let (back, out) = reconnect(
        &mut node,
        "c1",
        "consultant",
        Recovery { pid: pid.clone(), offset: None, session: Some(session) },
    );
    assert_eq!(pid_of(&out, back), pid);
    assert_eq!(activity_ids(&out, back), [missed], "what came after it subscribed, not before");
}

#[test]
fn a_recovered_socket_that_also_resumes_gets_nothing_twice() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let c = node.next_conn();
    let token = TokenCheck::Verified(claims("c1", "consultant"));
    let out = node.input(Input::Connect { conn: c, sid: "s".into(), token, recovery: None });
    let pid = pid_of(&out, c);
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    let (seen, offset) = (activity_ids(&out, c)[0].clone(), last_offset(&out, c));
    let session = saved(&node.disconnect(c)).remove(0).1;
    node.send(r, "reader-event", json!({"eventType": "A"}));
    let recovery = Recovery { pid, offset: Some(offset.to_string()), session: Some(session) };
    let (back, out) = reconnect(&mut node, "c1", "consultant", recovery);
    assert_eq!(activity_ids(&out, back).len(), 1, "the recovery's replay");
    // A client that does not know it was recovered resumes from the same event as well.
    let out = node.send(back, "subscribe-consultant", json!({"consultantId": "c1", "since": seen}));
    assert!(activity_ids(&out, back).is_empty(), "already sent by the recovery: {out:?}");
}

fn placed(node: &mut Node, reader: ConnId, ty: &str) -> Arc<ReaderEvent> {
    let out = node.send(reader, "reader-event", json!({"eventType": ty}));
    appends(&out).remove(0).1[0].event.clone()
}

fn query(out: &[Output]) -> Option<(ConnId, ReplayFrom, ReplayFilter, usize)> {
    out.iter().find_map(|o| match o {
        Output::QueryReplay { conn, from, filter, limit } => Some((*conn, *from, filter.clone(), *limit)),
        _ => None,
    })
}

/// A consultant subscribed to `A`, shown one event, gone: its pid, offset and saved session.
fn dropped_consultant(node: &mut Node, r: ConnId) -> (String, LogPosition, SavedSession) {
    let c = node.next_conn();
    let token = TokenCheck::Verified(claims("c1", "consultant"));
    let out = node.input(Input::Connect { conn: c, sid: "s".into(), token, recovery: None });
    let pid = pid_of(&out, c);
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1", "eventTypes": ["A"]}));
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    let offset = last_offset(&out, c);
    let session = saved(&node.disconnect(c)).remove(0).1;
    (pid, offset, session)
}

#[test]
fn past_memory_the_store_replays_and_the_socket_is_accepted_only_then() {
    let mut node = Node::with_config(Config { history_capacity: 2, ..Config::default() });
    let r = node.connect("r1", "reader");
    let (pid, offset, session) = dropped_consultant(&mut node, r);
    let missed: Vec<_> = ["A", "B", "HELP_REQUEST", "A"].iter().map(|ty| placed(&mut node, r, ty)).collect();

    let recovery = Recovery { pid: pid.clone(), offset: Some(offset.to_string()), session: Some(session) };
    let (back, out) = reconnect(&mut node, "c1", "consultant", recovery);
    let subscription = ReplayFilter::unscoped(ReplayRule::Subscription(vec!["A".into()]));
    assert_eq!(query(&out), Some((back, ReplayFrom::Position(offset), subscription, 10_001)));
    assert!(!out.contains(&Output::Accept { conn: back }), "not before the store answers");
    // Meanwhile an event the replay will hold (memory has it) comes and goes live elsewhere.
    let during = placed(&mut node, r, "A");

    // The store lags the log: it has the first three missed events; memory has the last two.
    let stored = missed[..3].to_vec();
    let out = node.input(Input::ReplayAnswered { conn: back, answer: Some(Some((offset, stored))) });
    assert_eq!(pid_of(&out, back), pid, "the same pid: recovered");
    assert!(out.contains(&Output::Accept { conn: back }));
    let expected: Vec<String> =
        [&missed[0], &missed[2], &missed[3], &during].iter().map(|e| e.id.to_string()).collect();
    assert_eq!(activity_ids(&out, back), expected, "type A and support, in log order, each once");
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert_eq!(activity_ids(&out, back).len(), 1, "subscribed, live");
}

#[test]
fn past_memory_a_store_that_fails_or_holds_too_many_connects_fresh() {
    let config = Config { history_capacity: 2, resume_max_events: 2, ..Config::default() };
    for answer in [None, Some(3)] {
        let mut node = Node::with_config(config.clone());
        let r = node.connect("r1", "reader");
        let (pid, offset, session) = dropped_consultant(&mut node, r);
        let missed: Vec<_> = (0..3).map(|_| placed(&mut node, r, "A")).collect();
        let recovery =
            Recovery { pid: pid.clone(), offset: Some(offset.to_string()), session: Some(session) };
        let (back, _) = reconnect(&mut node, "c1", "consultant", recovery);
        let answer = answer.map(|n| Some((offset, missed[..n].to_vec())));
        let out = node.input(Input::ReplayAnswered { conn: back, answer });
        assert!(out.contains(&Output::Accept { conn: back }), "accepted all the same");
        assert_ne!(pid_of(&out, back), pid, "fresh");
        assert!(activity_ids(&out, back).is_empty());
        let out = node.send(r, "reader-event", json!({"eventType": "A"}));
        assert!(activity_ids(&out, back).is_empty(), "not subscribed");
    }
}

#[test]
fn a_socket_that_leaves_while_the_store_answers_frees_its_slot() {
    let config = Config { history_capacity: 1, max_connections_per_user: 1, ..Config::default() };
    let mut node = Node::with_config(config);
    let r = node.connect("r1", "reader");
    let (pid, offset, session) = dropped_consultant(&mut node, r);
    placed(&mut node, r, "A");
    placed(&mut node, r, "A");
    let recovery = Recovery { pid, offset: Some(offset.to_string()), session: Some(session) };
    let (back, out) = reconnect(&mut node, "c1", "consultant", recovery);
    assert!(query(&out).is_some());
    node.disconnect(back);
    let out = node.input(Input::ReplayAnswered { conn: back, answer: Some(Some((offset, Vec::new()))) });
    assert!(out.is_empty(), "nothing for a socket that left: {out:?}");
    let again = node.next_conn();
    let token = TokenCheck::Verified(claims("c1", "consultant"));
    let out = node.input(Input::Connect { conn: again, sid: "s".into(), token, recovery: None });
    assert!(out.contains(&Output::Accept { conn: again }), "the user's one slot is free again");
}

/// Connects `sub` with `role` and returns the socket and its `pid`.
fn connect_with_pid(node: &mut Node, sub: &str, role: &str) -> (ConnId, String) {
    let conn = node.next_conn();
    let token = TokenCheck::Verified(claims(sub, role));
    let out = node.input(Input::Connect { conn, sid: format!("s{}", conn.0), token, recovery: None });
    (conn, pid_of(&out, conn))
}

fn event_id(out: &[Output], sender: ConnId) -> String {
    received(out, sender, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned()
}

#[test]
fn a_reader_recovers_what_its_other_tabs_sent_and_never_its_own() {
    let mut node = Node::new();
    let (tab, pid) = connect_with_pid(&mut node, "r1", "reader");
    let other_tab = node.connect("r1", "reader");
    let someone_else = node.connect("r2", "reader");
    let out = node.send(other_tab, "reader-event", json!({"eventType": "A"}));
    let offset = last_offset(&out, tab);
    // Its own last event, after the offset: never sent to it, so never replayed to it.
    node.send(tab, "reader-event", json!({"eventType": "A"}));
    let session = saved(&node.disconnect(tab)).remove(0).1;
    assert_eq!((session.user_id.as_str(), session.consultant_id.as_deref()), ("r1", None), "saved");

    let missed = event_id(&node.send(other_tab, "reader-event", json!({"eventType": "B"})), other_tab);
    node.send(someone_else, "reader-event", json!({"eventType": "B"}));
    let recovery = Recovery { pid: pid.clone(), offset: Some(offset.to_string()), session: Some(session) };
    let (back, out) = reconnect(&mut node, "r1", "reader", recovery);
    assert_eq!(pid_of(&out, back), pid, "recovered");
    assert_eq!(activity_ids(&out, back), [missed], "the other tab's event only");

    let out = node.send(back, "reader-event", json!({"eventType": "A"}));
    assert!(activity_ids(&out, back).is_empty(), "not its own, live");
    assert_eq!(activity_ids(&out, other_tab).len(), 1);
    let out = node.send(other_tab, "reader-event", json!({"eventType": "A"}));
    assert_eq!(activity_ids(&out, back).len(), 1, "its other tab's, live");
}

#[test]
fn a_reader_that_received_nothing_is_replayed_from_where_it_connected() {
    let mut node = Node::new();
    let other_tab = node.connect("r1", "reader");
    node.send(other_tab, "reader-event", json!({"eventType": "A"}));
    let (tab, pid) = connect_with_pid(&mut node, "r1", "reader");
    let session = saved(&node.disconnect(tab)).remove(0).1;
    let missed = event_id(&node.send(other_tab, "reader-event", json!({"eventType": "A"})), other_tab);
    let recovery = Recovery { pid: pid.clone(), offset: None, session: Some(session) };
    let (back, out) = reconnect(&mut node, "r1", "reader", recovery);
    assert_eq!(pid_of(&out, back), pid);
    assert_eq!(activity_ids(&out, back), [missed], "what came after it connected, not before");
}

#[test]
fn an_event_its_old_connection_sent_never_reaches_the_recovered_socket() {
    // In a cluster an event is shown when the log gives it back, which may be after its sender
    // dropped and came back under the same pid.
    let mut node = cluster_by_hand("node-a", 1);
    let (tab, pid) = connect_with_pid(&mut node, "r1", "reader");
    let other_tab = node.connect("r1", "reader");
    let (_, entries) = appends(&node.send(tab, "reader-event", json!({"eventType": "A"}))).remove(0);
    let session = saved(&node.disconnect(tab)).remove(0).1;
    let recovery = Recovery { pid: pid.clone(), offset: None, session: Some(session) };
    let (back, out) = reconnect(&mut node, "r1", "reader", recovery);
    assert_eq!(pid_of(&out, back), pid);
    let out = node.log(entries[0].to_message());
    assert!(activity_ids(&out, back).is_empty(), "its own event: {out:?}");
    assert_eq!(activity_ids(&out, other_tab).len(), 1, "the other tab's copy");
}

#[test]
fn a_consultant_recovers_what_came_through_its_rooms() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let outsider = node.connect("r2", "reader");
    node.send(r, "join-room", json!("class-1"));
    let (c, pid) = connect_with_pid(&mut node, "c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1", "eventTypes": ["A"]}));
    node.send(c, "join-room", json!("class-1"));
    let out = node.send(r, "reader-event", json!({"eventType": "B"}));
    let (seen, offset) = (event_id(&out, r), last_offset(&out, c));
    let session = saved(&node.disconnect(c)).remove(0).1;
    assert_eq!(session.rooms, ["class-1"]);

    let through_room = event_id(&node.send(r, "reader-event", json!({"eventType": "B"})), r);
    let never_sent = event_id(&node.send(outsider, "reader-event", json!({"eventType": "B"})), outsider);
    let by_type = event_id(&node.send(outsider, "reader-event", json!({"eventType": "A"})), outsider);
    let recovery = Recovery { pid: pid.clone(), offset: Some(offset.to_string()), session: Some(session) };
    let (back, out) = reconnect(&mut node, "c1", "consultant", recovery);
    assert_eq!(pid_of(&out, back), pid);
    assert_eq!(activity_ids(&out, back), [through_room, by_type], "room and subscription, in log order");

    // A client that resumes from the same event for every type gets only what was never sent.
    let out = node.send(back, "subscribe-consultant", json!({"consultantId": "c1", "since": seen}));
    assert_eq!(activity_ids(&out, back), [never_sent], "the room's event was sent by the recovery");
}

#[test]
fn past_memory_the_store_is_asked_for_the_readers_other_tabs_and_the_consultants_rooms() {
    let mut node = Node::with_config(Config { history_capacity: 1, ..Config::default() });
    let (tab, pid) = connect_with_pid(&mut node, "r1", "reader");
    let other_tab = node.connect("r1", "reader");
    node.send(tab, "join-room", json!("class-1"));
    let offset = last_offset(&node.send(other_tab, "reader-event", json!({"eventType": "A"})), tab);
    let (c, c_pid) = connect_with_pid(&mut node, "c1", "consultant");
    node.send(c, "join-room", json!("class-1"));
    let own = placed(&mut node, tab, "A");
    let reader_session = saved(&node.disconnect(tab)).remove(0).1;
    let consultant_session = saved(&node.disconnect(c)).remove(0).1;
    let others: Vec<_> = (0..2).map(|_| placed(&mut node, other_tab, "A")).collect();

    let recovery =
        Recovery { pid: pid.clone(), offset: Some(offset.to_string()), session: Some(reader_session) };
    let (back, out) = reconnect(&mut node, "r1", "reader", recovery);
    let other_sockets = ReplayFilter {
        rule: ReplayRule::OtherSockets { socket: alice_core::event::socket_tag(&pid).to_string() },
        rooms: Vec::new(),
        readers: Some(vec!["r1".into()]),
    };
    assert_eq!(query(&out), Some((back, ReplayFrom::Position(offset), other_sockets, 10_001)));
    // The store lags: it has the tab's own event and the first of the other tab's; memory the last.
    let stored = vec![own.clone(), others[0].clone()];
    let out = node.input(Input::ReplayAnswered { conn: back, answer: Some(Some((offset, stored))) });
    assert_eq!(pid_of(&out, back), pid, "recovered");
    let expected: Vec<String> = others.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(activity_ids(&out, back), expected, "the other tab's, never its own");

    let recovery =
        Recovery { pid: c_pid, offset: Some(own.position.to_string()), session: Some(consultant_session) };
    let (back, out) = reconnect(&mut node, "c1", "consultant", recovery);
    let support_and_room =
        ReplayFilter { rule: ReplayRule::Support, rooms: vec!["class-1".into()], readers: None };
    assert_eq!(query(&out), Some((back, ReplayFrom::Position(own.position), support_and_room, 10_001)));
}
