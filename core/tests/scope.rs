//! Consultant scope (PROTOCOL.md, "Consultant scope"): under `assigned` a consultant is reached
//! by rules 1, 2 and 4, lists, reads and replays only readers assigned to it, as the assignments
//! stand at that moment; admins and `all` see everyone, exactly as before.

mod common;

use std::collections::BTreeSet;

use alice_core::{
    AssignmentTable, BusBody, BusMessage, Config, ConnId, ConsultantScope, Input, Output, Recovery,
    ReplayRule, TokenCheck,
};
use common::*;
use serde_json::{json, Value};

fn scoped() -> Config {
    Config { consultant_scope: ConsultantScope::Assigned, ..Config::default() }
}

fn set(readers: &[&str]) -> BTreeSet<String> {
    readers.iter().map(|r| r.to_string()).collect()
}

/// A node under `scope` where c1 is assigned r1 (and c2 r1 and r2), through the table.
fn node_with(scope: ConsultantScope) -> Node {
    let mut node = Node::with_config(Config { consultant_scope: scope, ..Config::default() });
    let table: AssignmentTable =
        [("c1".to_owned(), set(&["r1"])), ("c2".to_owned(), set(&["r1", "r2"]))].into();
    node.input(Input::AssignmentsLoaded { table: Some(table) });
    node
}

/// A staff socket that has sent its first command (so its deliveries flow at once).
fn staff(node: &mut Node, sub: &str, role: &str) -> ConnId {
    let conn = node.connect(sub, role);
    node.send(conn, "get-online-readers", json!(null));
    conn
}

fn subscribed(node: &mut Node, sub: &str, role: &str, body: Value) -> ConnId {
    let conn = node.connect(sub, role);
    node.send(conn, "subscribe-consultant", body);
    conn
}

fn event(node: &mut Node, reader: ConnId, ty: &str) -> (String, Vec<Output>) {
    node.advance(1);
    let out = node.send(reader, "reader-event", json!({"eventType": ty}));
    let id = received(&out, reader, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned();
    (id, out)
}

fn counts(out: &[Output], conns: &[ConnId]) -> Vec<usize> {
    conns.iter().map(|c| received(out, *c, "reader-activity").len()).collect()
}

fn listed(v: &Value) -> Vec<String> {
    v["readers"].as_array().unwrap().iter().map(|r| r["userId"].as_str().unwrap().to_owned()).collect()
}

fn recent_ids(v: &Value) -> BTreeSet<String> {
    v["events"].as_array().unwrap().iter().map(|e| e["userId"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn rule_1_reaches_a_scoped_consultant_only_for_assigned_readers() {
    for scope in [ConsultantScope::All, ConsultantScope::Assigned] {
        let mut node = node_with(scope);
        let c1 = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
        let typed = subscribed(
            &mut node,
            "c1",
            "consultant",
            json!({"consultantId": "c1", "eventTypes": ["LOOKUP"]}),
        );
        let admin = subscribed(&mut node, "a1", "admin", json!({"consultantId": "c1"}));
        let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
        let (_, out) = event(&mut node, r1, "PAGE_TURN");
        assert_eq!(counts(&out, &[c1, typed, admin]), [1, 0, 1], "{scope:?}");
        let (_, out) = event(&mut node, r1, "LOOKUP");
        assert_eq!(counts(&out, &[c1, typed, admin]), [1, 1, 1], "{scope:?}");
        let (_, out) = event(&mut node, r2, "LOOKUP");
        let scoped = scope == ConsultantScope::Assigned;
        let to_c1 = if scoped { 0 } else { 1 };
        assert_eq!(counts(&out, &[c1, typed, admin]), [to_c1, to_c1, 1], "{scope:?}");
    }
}

#[test]
fn rule_2_support_events_of_unassigned_readers_reach_admins_only() {
    for scope in [ConsultantScope::All, ConsultantScope::Assigned] {
        let mut node = node_with(scope);
        let (c1, c2, admin) = (
            staff(&mut node, "c1", "consultant"),
            staff(&mut node, "c2", "consultant"),
            staff(&mut node, "a1", "admin"),
        );
        let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
        let (_, out) = event(&mut node, r1, "HELP_REQUEST");
        assert_eq!(counts(&out, &[c1, c2, admin]), [1, 1, 1], "{scope:?}");
        let (_, out) = event(&mut node, r2, "FEEDBACK");
        let expected = if scope == ConsultantScope::Assigned { [0, 1, 1] } else { [1, 1, 1] };
        assert_eq!(counts(&out, &[c1, c2, admin]), expected, "{scope:?}");
    }
}

#[test]
fn rule_3_is_not_scoped_and_rule_4_rooms_reach_a_scoped_consultant_only_for_assigned_readers() {
    for scope in [ConsultantScope::All, ConsultantScope::Assigned] {
        let mut node = node_with(scope);
        let (c1, admin) = (staff(&mut node, "c1", "consultant"), staff(&mut node, "a1", "admin"));
        node.send(c1, "join-room", json!("class-1"));
        node.send(admin, "join-room", json!("class-1"));
        let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
        let r2_tab = node.connect("r2", "reader");
        node.send(r1, "join-room", json!("class-1"));
        node.send(r2, "join-room", json!("class-1"));
        let (_, out) = event(&mut node, r1, "PAGE_TURN");
        assert_eq!(counts(&out, &[c1, admin]), [1, 1], "{scope:?}");
        let (_, out) = event(&mut node, r2, "PAGE_TURN");
        let to_c1 = if scope == ConsultantScope::Assigned { 0 } else { 1 };
        assert_eq!(counts(&out, &[c1, admin, r2_tab, r1]), [to_c1, 1, 1, 0], "{scope:?}");
    }
}

#[test]
fn a_consultant_who_is_also_in_a_room_and_subscribed_gets_one_copy() {
    let mut node = node_with(ConsultantScope::Assigned);
    let c1 = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
    node.send(c1, "join-room", json!("class-1"));
    let r1 = node.connect("r1", "reader");
    node.send(r1, "join-room", json!("class-1"));
    let (_, out) = event(&mut node, r1, "HELP_REQUEST");
    assert_eq!(counts(&out, &[c1]), [1]);
}

#[test]
fn a_reassignment_takes_effect_at_once_and_is_announced() {
    let mut node = node_with(ConsultantScope::Assigned);
    let c1 = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
    let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
    let out = node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&["r2"]) });
    let announced = published(&out);
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].body, BusBody::Assigned { consultant_id: "c1".into(), readers: set(&["r2"]) });
    let (_, out) = event(&mut node, r1, "PAGE_TURN");
    assert_eq!(counts(&out, &[c1]), [0], "r1 is no longer c1's");
    let (_, out) = event(&mut node, r2, "PAGE_TURN");
    assert_eq!(counts(&out, &[c1]), [1], "r2 is c1's now");
    assert_eq!(node.core.assigned_readers("c1"), ["r2"]);
}

#[test]
fn another_nodes_change_applies_here_at_once() {
    let mut node = node_with(ConsultantScope::Assigned);
    let c1 = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
    let r2 = node.connect("r2", "reader");
    let body = BusBody::Assigned { consultant_id: "c1".into(), readers: set(&["r2"]) };
    node.input(Input::Bus(BusMessage { origin: "node-b".into(), incarnation: 1, seq: 1, body }));
    let (_, out) = event(&mut node, r2, "PAGE_TURN");
    assert_eq!(counts(&out, &[c1]), [1]);
}

#[test]
fn the_table_is_read_at_start_and_every_refresh_and_a_read_a_change_overtook_is_dropped() {
    let mut node = Node::with_config(Config { assignment_refresh_ms: 5_000, ..scoped() });
    let mut fresh = alice_core::Core::new(Config { assignment_refresh_ms: 5_000, ..scoped() }, "node-b", 1);
    fresh.handle(START, Input::Tick);
    let first: Vec<Output> = std::iter::from_fn(|| fresh.poll_output()).collect();
    assert!(first.contains(&Output::LoadAssignments), "the first input asks for the table: {first:?}");
    let out = node.advance(4_999);
    assert!(!out.contains(&Output::LoadAssignments), "one read out at a time, none due yet");
    node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r1"]))].into()) });
    assert_eq!(node.core.assigned_readers("c1"), ["r1"]);
    let out = node.advance(1);
    assert!(out.contains(&Output::LoadAssignments), "{out:?}");
    // An admin's change lands while that read is out: the read's older answer is dropped, and
    // the table read again at once.
    node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&["r2"]) });
    let out = node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r1"]))].into()) });
    assert_eq!(node.core.assigned_readers("c1"), ["r2"]);
    assert!(out.contains(&Output::LoadAssignments), "{out:?}");
    node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r2"]))].into()) });
    // The database says the table changed: read at once, not at the next refresh.
    let out = node.input(Input::AssignmentsTouched);
    assert!(out.contains(&Output::LoadAssignments), "{out:?}");
    node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r2", "r4"]))].into()) });
    assert_eq!(node.core.assigned_readers("c1"), ["r2", "r4"]);
    // Told again while a read is out: that read's answer still holds (nothing newer came in), and
    // the table is read once more after it; changes faster than a read never starve the reads.
    node.input(Input::AssignmentsTouched);
    let out = node.input(Input::AssignmentsTouched);
    assert!(!out.contains(&Output::LoadAssignments), "one read out at a time");
    let out = node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r5"]))].into()) });
    assert_eq!(node.core.assigned_readers("c1"), ["r5"], "applied");
    assert!(out.contains(&Output::LoadAssignments), "and read again");
    node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r2", "r4"]))].into()) });
    assert_eq!(node.core.assigned_readers("c1"), ["r2", "r4"]);
    // A failed read keeps what was there.
    let out = node.advance(5_000);
    assert!(out.contains(&Output::LoadAssignments));
    node.input(Input::AssignmentsLoaded { table: None });
    assert_eq!(node.core.assigned_readers("c1"), ["r2", "r4"]);
    // Under `all` the table is never read.
    let mut all = Node::new();
    assert!(!all.advance(60_000).contains(&Output::LoadAssignments));
}

#[test]
fn online_readers_lists_only_assigned_readers_in_snapshots_answers_and_pushes() {
    let mut node = node_with(ConsultantScope::Assigned);
    let (r1, _r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
    let c1 = node.connect("c1", "consultant");
    let out = node.send(c1, "subscribe-consultant", json!({"consultantId": "c1"}));
    let snapshot = &received(&out, c1, "online-readers")[0];
    assert_eq!((listed(snapshot), snapshot["count"].clone()), (vec!["r1".to_owned()], json!(1)));
    let admin = subscribed(&mut node, "a1", "admin", json!({"consultantId": "a1"}));
    let out = node.send(c1, "get-online-readers", json!(null));
    assert_eq!(listed(&received(&out, c1, "online-readers")[0]), ["r1"]);

    // r3 comes: the admin's list changed, c1's did not, so c1 is sent nothing.
    node.advance(2_000);
    let (_, mut out) = node.try_connect(TokenCheck::Verified(claims("r3", "reader")));
    out.extend(node.advance(2_000));
    assert_eq!(received(&out, admin, "online-readers").len(), 1);
    assert_eq!(received(&out, c1, "online-readers").len(), 0, "{out:?}");
    // r1 turns a page: c1's view changed.
    let (_, mut out) = event(&mut node, r1, "PAGE_TURN");
    out.extend(node.advance(2_000));
    assert_eq!(listed(&received(&out, c1, "online-readers")[0]), ["r1"]);
    // r3 is assigned to c1: the next push lists it.
    let mut out = node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&["r1", "r3"]) });
    out.extend(node.advance(2_000));
    let mut now_listed = listed(&received(&out, c1, "online-readers")[0]);
    now_listed.sort();
    assert_eq!(now_listed, ["r1", "r3"]);
}

#[test]
fn consultants_who_share_a_view_share_one_encoding() {
    let mut node = node_with(ConsultantScope::Assigned);
    node.input(Input::Assign { consultant_id: "c3".into(), readers: set(&["r1"]) });
    node.connect("r2", "reader");
    let a = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
    let b = subscribed(&mut node, "c3", "consultant", json!({"consultantId": "c3"}));
    let c = subscribed(&mut node, "c2", "consultant", json!({"consultantId": "c2"}));
    node.advance(2_000);
    let (_, mut out) = node.try_connect(TokenCheck::Verified(claims("r1", "reader")));
    out.extend(node.advance(2_000));
    let pushes: Vec<&Vec<ConnId>> = out
        .iter()
        .filter_map(|o| match o {
            Output::Emit { to, event: "online-readers", .. } => Some(to),
            _ => None,
        })
        .collect();
    // c1 and c3 both see exactly r1: one payload each, equal, and c2 (r1 and r2) its own.
    let payloads: Vec<Value> =
        [a, b, c].iter().map(|s| received(&out, *s, "online-readers")[0].clone()).collect();
    assert_eq!(payloads[0], payloads[1]);
    assert_eq!(pushes.len(), 3, "one emit per consultant: {pushes:?}");
    let encoded = |conn: ConnId| {
        out.iter()
            .find_map(|o| match o {
                Output::Emit { to, event: "online-readers", payload } if to.contains(&conn) => {
                    Some(payload.clone())
                }
                _ => None,
            })
            .unwrap()
    };
    let (for_a, for_b) = (encoded(a), encoded(b));
    assert!(
        std::ptr::eq(for_a.get().as_ptr(), for_b.get().as_ptr()),
        "c1's and c3's views share one encoding"
    );
    assert_ne!(payloads[0], payloads[2]);
}

#[test]
fn recent_events_are_limited_to_assigned_readers_and_naming_another_is_forbidden() {
    for scope in [ConsultantScope::All, ConsultantScope::Assigned] {
        let mut node = node_with(scope);
        node.input(Input::HistoryLoaded { events: Vec::new(), complete: true });
        let c1 = staff(&mut node, "c1", "consultant");
        let admin = staff(&mut node, "a1", "admin");
        let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
        event(&mut node, r1, "A");
        event(&mut node, r2, "A");
        let out = node.send(c1, "get-recent-events", json!(null));
        let seen = recent_ids(&received(&out, c1, "recent-events")[0]);
        let out = node.send(admin, "get-recent-events", json!(null));
        assert_eq!(recent_ids(&received(&out, admin, "recent-events")[0]), set(&["r1", "r2"]));
        let out = node.send(c1, "get-recent-events", json!({"userId": "r2"}));
        if scope == ConsultantScope::Assigned {
            assert_eq!(seen, set(&["r1"]));
            let err = error_of(&out, c1);
            assert_eq!(
                (err["code"].clone(), err["message"].clone()),
                (json!("FORBIDDEN"), json!("Unauthorized access to events"))
            );
        } else {
            assert_eq!(seen, set(&["r1", "r2"]));
            assert_eq!(recent_ids(&received(&out, c1, "recent-events")[0]), set(&["r2"]));
        }
    }
}

#[test]
fn the_store_is_asked_for_assigned_readers_only_and_no_assignment_asks_nothing() {
    let mut node = node_with(ConsultantScope::Assigned);
    node.input(Input::HistoryLoaded { events: Vec::new(), complete: false });
    let c2 = staff(&mut node, "c2", "consultant");
    let out = node.send(c2, "get-recent-events", json!(null));
    let asked: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::QueryStore { query, .. } => Some(query.readers.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [Some(vec!["r1".to_owned(), "r2".to_owned()])]);
    let lonely = staff(&mut node, "c9", "consultant");
    let out = node.send(lonely, "get-recent-events", json!(null));
    assert!(!out.iter().any(|o| matches!(o, Output::QueryStore { .. })));
    assert_eq!(received(&out, lonely, "recent-events")[0]["events"], json!([]));
}

#[test]
fn a_resume_replays_only_what_the_scope_allows_at_the_time_of_the_replay() {
    let mut node = node_with(ConsultantScope::Assigned);
    let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
    let old = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
    let (seen, _) = event(&mut node, r1, "A");
    node.disconnect(old);
    let (missed_r1, _) = event(&mut node, r1, "A");
    let (missed_r2, _) = event(&mut node, r2, "A");
    let (help_r2, _) = event(&mut node, r2, "HELP_REQUEST");
    let c = node.connect("c1", "consultant");
    let (out, ack) =
        node.send_ack(c, "subscribe-consultant", vec![json!({"consultantId": "c1", "since": seen})]);
    assert_eq!((ack["resumed"].clone(), ack["replayed"].clone()), (json!(true), json!(1)));
    assert_eq!(activity_ids(&out, c), std::slice::from_ref(&missed_r1));

    // Once r2 is assigned too, a resume from the same point replays r2's events as well.
    node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&["r1", "r2"]) });
    node.disconnect(c);
    let c = node.connect("c1", "consultant");
    let (out, _) =
        node.send_ack(c, "subscribe-consultant", vec![json!({"consultantId": "c1", "since": seen})]);
    assert_eq!(activity_ids(&out, c), [missed_r1, missed_r2, help_r2]);
}

#[test]
fn a_resume_from_the_store_asks_for_the_scope_as_it_stands() {
    let mut node = Node::with_config(Config { history_capacity: 1, ..scoped() });
    node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r1"]))].into()) });
    let r1 = node.connect("r1", "reader");
    let (first, _) = event(&mut node, r1, "A");
    event(&mut node, r1, "A");
    event(&mut node, r1, "A");
    let c = node.connect("c1", "consultant");
    let out = node.send(c, "subscribe-consultant", json!({"consultantId": "c1", "since": first}));
    let filters: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::QueryReplay { filter, .. } => Some(filter.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(filters.len(), 1, "{out:?}");
    assert_eq!(filters[0].rule, ReplayRule::Subscription(Vec::new()));
    assert_eq!(filters[0].readers, Some(vec!["r1".to_owned()]));
}

/// A c1 staff socket and its pid.
fn c1_with_pid(node: &mut Node) -> (ConnId, String) {
    let c = node.next_conn();
    let token = TokenCheck::Verified(claims("c1", "consultant"));
    let out = node.input(Input::Connect { conn: c, sid: "s".into(), token, recovery: None });
    let pid = out.iter().find_map(|o| match o {
        Output::Pid { pid, .. } => Some(pid.clone()),
        _ => None,
    });
    (c, pid.expect("a pid"))
}

/// What c1's official client presents when it reconnects after being shown `shown` (one event's
/// outputs) on socket `c` and leaving: its pid, that event's offset, and the saved session.
fn c1_leaves(node: &mut Node, c: ConnId, pid: String, shown: &[Output]) -> Recovery {
    let offset = shown.iter().find_map(|o| match o {
        Output::Activity { to, position, .. } if to.contains(&c) => Some(position.to_string()),
        _ => None,
    });
    let session = node.disconnect(c).iter().find_map(|o| match o {
        Output::SaveSession { session, .. } => Some(session.clone()),
        _ => None,
    });
    Recovery { pid, offset: Some(offset.expect("an offset")), session }
}

/// A c1 dashboard, subscribed, that was shown one event of `reader` and left: what its official
/// client presents when it reconnects.
fn dashboard_that_left(node: &mut Node, reader: ConnId) -> Recovery {
    let (c, pid) = c1_with_pid(node);
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let (_, out) = event(node, reader, "A");
    c1_leaves(node, c, pid, &out)
}

/// Reconnects c1 with `recovery`.
fn recover(node: &mut Node, recovery: Recovery) -> (ConnId, Vec<Output>) {
    let conn = node.next_conn();
    let token = TokenCheck::Verified(claims("c1", "consultant"));
    (conn, node.input(Input::Connect { conn, sid: "s2".into(), token, recovery: Some(Box::new(recovery)) }))
}

#[test]
fn a_recovery_replays_only_what_the_scope_allows_at_the_time_of_the_replay() {
    let mut node = node_with(ConsultantScope::Assigned);
    let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
    let recovery = dashboard_that_left(&mut node, r1);
    let (mine, _) = event(&mut node, r1, "A");
    event(&mut node, r2, "A");
    event(&mut node, r2, "HELP_REQUEST");
    let (again, out) = recover(&mut node, recovery);
    assert_eq!(activity_ids(&out, again), [mine]);
}

#[test]
fn a_recovery_replays_a_rooms_events_only_from_assigned_readers() {
    let mut node = node_with(ConsultantScope::Assigned);
    let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
    let (c, pid) = c1_with_pid(&mut node);
    for conn in [c, r1, r2] {
        node.send(conn, "join-room", json!("class"));
    }
    let (_, through_room) = event(&mut node, r1, "B");
    let recovery = c1_leaves(&mut node, c, pid, &through_room);
    let (mine, _) = event(&mut node, r1, "B");
    event(&mut node, r2, "B");
    let (again, out) = recover(&mut node, recovery);
    assert_eq!(activity_ids(&out, again), [mine], "the room's events, from its assigned reader only");
}

#[test]
fn scope_all_ignores_assignments_entirely() {
    let mut node = node_with(ConsultantScope::All);
    let c1 = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
    let r9 = node.connect("r9", "reader");
    let out = node.send(c1, "get-online-readers", json!(null));
    assert_eq!(listed(&received(&out, c1, "online-readers")[0]), ["r9"]);
    let (_, out) = event(&mut node, r9, "PAGE_TURN");
    assert_eq!(counts(&out, &[c1]), [1]);
}

#[test]
fn an_assignment_that_ends_while_the_store_answers_holds_for_that_answer() {
    // get-recent-events answered by the store.
    let mut node = node_with(ConsultantScope::Assigned);
    node.input(Input::HistoryLoaded { events: Vec::new(), complete: false });
    let c1 = staff(&mut node, "c1", "consultant");
    let out = node.send(c1, "get-recent-events", json!(null));
    let Some(Output::QueryStore { conn, ack, .. }) =
        out.iter().find(|o| matches!(o, Output::QueryStore { .. })).cloned()
    else {
        panic!("asked the store: {out:?}")
    };
    node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&["r9"]) });
    let stored = |user: &str, n: u64| {
        std::sync::Arc::new(alice_core::ReaderEvent {
            id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(n)),
            user_id: user.into(),
            event_type: "A".into(),
            data: alice_core::replies::Json::from_text("null".into()).unwrap(),
            reading: Default::default(),
            timestamp: START,
            session_id: "s".into(),
            position: alice_core::LogPosition { ms: START.0 - 1000, seq: n },
            sent_from: Default::default(),
        })
    };
    let out = node.input(Input::StoreQueryAnswered {
        conn,
        ack,
        answer: Some((vec![stored("r1", 1), stored("r9", 2)], false)),
    });
    assert_eq!(recent_ids(&received(&out, c1, "recent-events")[0]), set(&["r9"]));

    // A recovery that waits for the store's replay.
    let mut node = Node::with_config(Config { history_capacity: 1, ..scoped() });
    node.input(Input::AssignmentsLoaded { table: Some([("c1".to_owned(), set(&["r1", "r2"]))].into()) });
    let r1 = node.connect("r1", "reader");
    let recovery = dashboard_that_left(&mut node, r1);
    let offset = recovery.offset.as_deref().unwrap().parse().unwrap();
    event(&mut node, r1, "A");
    event(&mut node, r1, "A");
    let (again, out) = recover(&mut node, recovery);
    assert!(out.iter().any(|o| matches!(o, Output::QueryReplay { .. })), "the store is asked: {out:?}");
    node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&["r2"]) });
    let out = node.input(Input::ReplayAnswered {
        conn: again,
        answer: Some(Some((offset, vec![stored("r1", 7), stored("r2", 8)]))),
    });
    assert!(out.contains(&Output::Accept { conn: again }), "{out:?}");
    let users: Vec<String> = out
        .iter()
        .flat_map(|o| match o {
            Output::Replay { conn, events } if *conn == again => {
                events.iter().map(|e| e.user_id.to_string()).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    assert!(users.iter().all(|u| u == "r2"), "nothing of r1 once it is no longer c1's: {users:?}");
}

#[test]
fn deliveries_held_for_a_new_socket_follow_an_assignment_that_ends_meanwhile() {
    let mut node = node_with(ConsultantScope::Assigned);
    let r1 = node.connect("r1", "reader");
    let c1 = node.connect("c1", "consultant");
    // c1 has sent no command yet: its deliveries wait (for a possible resume).
    event(&mut node, r1, "HELP_REQUEST");
    node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&[]) });
    let out = node.send(c1, "get-online-readers", json!(null));
    assert!(activity_ids(&out, c1).is_empty(), "{out:?}");
    assert!(listed(&received(&out, c1, "online-readers")[0]).is_empty());
}

#[test]
fn an_ended_assignment_leaves_the_next_push() {
    let mut node = node_with(ConsultantScope::Assigned);
    node.connect("r1", "reader");
    let c1 = subscribed(&mut node, "c1", "consultant", json!({"consultantId": "c1"}));
    node.advance(2_000);
    let mut out = node.input(Input::Assign { consultant_id: "c1".into(), readers: set(&[]) });
    out.extend(node.advance(2_000));
    let pushes = received(&out, c1, "online-readers");
    assert_eq!(pushes.len(), 1, "{out:?}");
    assert_eq!((listed(&pushes[0]), pushes[0]["count"].clone()), (Vec::<String>::new(), json!(0)));
}

#[test]
fn the_activity_charts_of_a_scoped_consultant_count_only_its_readers() {
    for scope in [ConsultantScope::Assigned, ConsultantScope::All] {
        let mut node = node_with(scope);
        let c1 = staff(&mut node, "c1", "consultant");
        let admin = staff(&mut node, "boss", "admin");
        let (r1, r9) = (node.connect("r1", "reader"), node.connect("r9", "reader"));
        event(&mut node, r1, "PAGE_TURN");
        event(&mut node, r9, "PAGE_TURN");
        event(&mut node, r9, "LOOKUP");
        node.advance(alice_core::activity::SAMPLE_MS);
        let now = node.now;
        let seen_by = |conn| {
            let series = node.core.activity(node.core.principal(conn).unwrap(), now);
            let events: u32 = series.by_type.iter().flat_map(|(_, n)| n).sum();
            let mut readers: Vec<String> = series.readers.into_iter().map(|(user, _)| user).collect();
            readers.sort();
            (events, *series.online.last().unwrap(), readers)
        };
        let everything = (3, 2, vec!["r1".to_owned(), "r9".to_owned()]);
        assert_eq!(seen_by(admin), everything, "an admin sees everyone under {scope:?}");
        let consultant = match scope {
            ConsultantScope::Assigned => (1, 1, vec!["r1".to_owned()]),
            ConsultantScope::All => everything,
        };
        assert_eq!(seen_by(c1), consultant, "under {scope:?}");
    }
}
