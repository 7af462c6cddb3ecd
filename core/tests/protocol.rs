//! Parsing and validation of every client event, and the order of checks.

mod common;

use alice_core::protocol::{parse, ClientEvent, Command};
use alice_core::{Config, ErrorCode, Role};
use common::*;
use serde_json::{json, Value};

fn code(name: &str, payload: Value, role: Role) -> ErrorCode {
    parse(name, &[payload], false, role, &Config::default()).result.unwrap_err().code
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

#[test]
fn reader_event_accepts_valid_payloads() {
    let p = parse(
        "reader-event",
        &[
            json!({"eventType": "PAGE_TURN", "data": {"page": 3}, "sessionId": "s1", "clientEventId": "k-1:a.b_c"}),
        ],
        false,
        Role::Reader,
        &Config::default(),
    );
    assert_eq!(p.event, Some(ClientEvent::ReaderEvent));
    match p.result.unwrap() {
        Command::ReaderEvent { event_type, data, reading, session_id, client_event_id } => {
            assert_eq!(event_type, "PAGE_TURN");
            assert_eq!(data.get(), r#"{"page":3}"#);
            assert_eq!(reading.page.map(|p| p.get().to_owned()).as_deref(), Some("3"));
            assert!(reading.book.is_none());
            assert_eq!(session_id.as_deref(), Some("s1"));
            assert_eq!(client_event_id.as_deref(), Some("k-1:a.b_c"));
        }
        other => panic!("{other:?}"),
    }
    let p =
        parse("reader-event", &[json!({"eventType": "a.b:c-d_e"})], false, Role::Reader, &Config::default());
    match p.result.unwrap() {
        Command::ReaderEvent { data, session_id, client_event_id, .. } => {
            assert_eq!(data.get(), "null");
            assert_eq!(session_id, None);
            assert_eq!(client_event_id, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_event_id_is_1_to_128_name_characters() {
    let r = Role::Reader;
    let long = "k".repeat(129);
    for bad in [json!(""), json!("a b"), json!("é"), json!(long), json!(5), json!({})] {
        assert_eq!(
            code("reader-event", json!({"eventType": "T", "clientEventId": bad}), r),
            ErrorCode::InvalidPayload,
            "{bad}"
        );
    }
    let ok = "k".repeat(128);
    for good in [json!(ok), json!("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"), Value::Null] {
        let p = parse(
            "reader-event",
            &[json!({"eventType": "T", "clientEventId": good})],
            false,
            r,
            &Config::default(),
        );
        assert!(p.result.is_ok(), "{good}");
    }
}

#[test]
fn event_type_rules() {
    let r = Role::Reader;
    for bad in [json!(""), json!("has space"), json!("x".repeat(51)), json!("é"), json!(5), json!(null)] {
        assert_eq!(code("reader-event", json!({"eventType": bad}), r), ErrorCode::InvalidPayload, "{bad}");
    }
    assert_eq!(code("reader-event", json!({}), r), ErrorCode::InvalidPayload);
    assert_eq!(code("reader-event", json!("PAGE_TURN"), r), ErrorCode::InvalidPayload);
    let ok = parse("reader-event", &[json!({"eventType": "x".repeat(50)})], false, r, &Config::default());
    assert!(ok.result.is_ok());
}

#[test]
fn data_size_and_depth_limits() {
    let r = Role::Reader;
    // 16 KiB of serialized JSON is allowed, one byte more is not: "\"" + 16382 x + "\"" = 16384.
    let at_limit = json!({"eventType": "T", "data": "x".repeat(16 * 1024 - 2)});
    assert!(parse("reader-event", &[at_limit], false, r, &Config::default()).result.is_ok());
    let over = json!({"eventType": "T", "data": "x".repeat(16 * 1024 - 1)});
    assert_eq!(code("reader-event", over, r), ErrorCode::PayloadTooLarge);
    // Multi-byte characters count as bytes.
    let utf8 = json!({"eventType": "T", "data": "é".repeat(8 * 1024)});
    assert_eq!(code("reader-event", utf8, r), ErrorCode::PayloadTooLarge);

    assert!(parse(
        "reader-event",
        &[json!({"eventType": "T", "data": nested(32)})],
        false,
        r,
        &Config::default()
    )
    .result
    .is_ok());
    assert_eq!(
        code("reader-event", json!({"eventType": "T", "data": nested(33)}), r),
        ErrorCode::InvalidPayload
    );
    // Too large and too deep: size is checked first.
    let both = json!({"eventType": "T", "data": [nested(40), "x".repeat(17_000)]});
    assert_eq!(code("reader-event", both, r), ErrorCode::PayloadTooLarge);
    // Too large with a bad eventType: size still comes first.
    let bad_type = json!({"eventType": "bad type", "data": "x".repeat(17_000)});
    assert_eq!(code("reader-event", bad_type, r), ErrorCode::PayloadTooLarge);
}

#[test]
fn session_id_rules() {
    let r = Role::Reader;
    for bad in [json!(""), json!(7), json!("s".repeat(129)), json!({})] {
        assert_eq!(
            code("reader-event", json!({"eventType": "T", "sessionId": bad}), r),
            ErrorCode::InvalidPayload
        );
    }
    let null =
        parse("reader-event", &[json!({"eventType": "T", "sessionId": null})], false, r, &Config::default());
    assert!(matches!(null.result, Ok(Command::ReaderEvent { session_id: None, .. })));
}

#[test]
fn a_store_that_refuses_nul_refuses_it_in_data_and_session_id() {
    let postgres = Config { store_refuses_nul: true, ..Config::default() };
    let parse_with = |payload: Value, config: &Config| {
        parse("reader-event", &[payload], false, Role::Reader, config).result.map(|_| ()).map_err(|e| e.code)
    };
    let with_nul = [
        json!({"eventType": "A", "data": "a\u{0}b"}),
        json!({"eventType": "A", "data": {"deep": [1, {"x": "\u{0}"}]}}),
        json!({"eventType": "A", "data": {"k\u{0}": 1}}),
        json!({"eventType": "A", "sessionId": "s\u{0}1"}),
    ];
    for payload in with_nul {
        assert_eq!(parse_with(payload.clone(), &postgres), Err(ErrorCode::InvalidPayload), "{payload}");
        // SQLite holds it: any JSON value, as PROTOCOL.md says.
        assert_eq!(parse_with(payload.clone(), &Config::default()), Ok(()), "{payload}");
    }
    // A backslash and "u0000" as text are no NUL.
    assert_eq!(parse_with(json!({"eventType": "A", "data": "\\u0000"}), &postgres), Ok(()));
}

#[test]
fn role_comes_before_payload() {
    let err = parse("reader-event", &[json!("garbage")], false, Role::Consultant, &Config::default())
        .result
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert_eq!(err.message, "Only readers can send reader events");
    let msgs = [
        ("subscribe-consultant", "Only consultants can subscribe"),
        ("unsubscribe-consultant", "Only consultants can unsubscribe"),
        ("get-online-readers", "Only consultants can view online readers"),
    ];
    for (name, msg) in msgs {
        let err = parse(name, &[json!(1)], false, Role::Reader, &Config::default()).result.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (ErrorCode::Unauthorized, msg));
    }
}

#[test]
fn unknown_events_and_binary() {
    assert_eq!(code("hack", json!({}), Role::Admin), ErrorCode::UnknownEvent);
    let bin = parse("join-room", &[json!("r")], true, Role::Reader, &Config::default()).result.unwrap_err();
    assert_eq!(bin.code, ErrorCode::InvalidPayload);
    // get-online-readers ignores its payload, binary or not.
    let p = parse(
        "get-online-readers",
        &[json!({"_placeholder": true, "num": 0})],
        true,
        Role::Admin,
        &Config::default(),
    );
    assert_eq!(p.result.unwrap(), Command::GetOnlineReaders);
    let p = parse("get-online-readers", &[], false, Role::Consultant, &Config::default());
    assert_eq!(p.result.unwrap(), Command::GetOnlineReaders);
}

#[test]
fn subscription_payloads() {
    let c = Role::Consultant;
    let p = parse(
        "subscribe-consultant",
        &[json!({"consultantId": "c1", "eventTypes": ["B", "A", "B"]})],
        false,
        c,
        &Config::default(),
    );
    assert_eq!(
        p.result.unwrap(),
        Command::Subscribe {
            consultant_id: "c1".into(),
            event_types: vec!["B".into(), "A".into()],
            since: None
        }
    );
    let many: Vec<String> = (0..33).map(|i| format!("T{i}")).collect();
    assert_eq!(
        code("subscribe-consultant", json!({"consultantId": "c1", "eventTypes": many}), c),
        ErrorCode::InvalidPayload
    );
    assert_eq!(
        code("subscribe-consultant", json!({"consultantId": "c1", "eventTypes": ["a b"]}), c),
        ErrorCode::InvalidPayload
    );
    assert_eq!(code("subscribe-consultant", json!({"consultantId": ""}), c), ErrorCode::InvalidPayload);
    assert_eq!(
        code("subscribe-consultant", json!({"consultantId": "x".repeat(129)}), c),
        ErrorCode::InvalidPayload
    );
    assert_eq!(code("subscribe-consultant", json!({"consultantId": 5}), c), ErrorCode::InvalidPayload);
    assert_eq!(code("unsubscribe-consultant", json!({}), c), ErrorCode::InvalidPayload);
}

#[test]
fn room_names() {
    for bad in [json!(""), json!("a b"), json!("r".repeat(65)), json!({"room": "r"}), json!(1)] {
        assert_eq!(code("join-room", bad.clone(), Role::Reader), ErrorCode::InvalidPayload, "{bad}");
        assert_eq!(code("leave-room", bad, Role::Reader), ErrorCode::InvalidPayload);
    }
    let p = parse("join-room", &[json!("r".repeat(64))], false, Role::Reader, &Config::default());
    assert!(p.result.is_ok());
}

#[test]
fn recent_events_query() {
    let q = |v: Value| parse("get-recent-events", &[v], false, Role::Consultant, &Config::default()).result;
    match q(Value::Null).unwrap() {
        Command::GetRecentEvents(q) => assert_eq!((q.limit, q.user_id, q.since), (50, None, None)),
        other => panic!("{other:?}"),
    }
    for bad in [json!({"limit": 0}), json!({"limit": 201}), json!({"limit": 2.5}), json!({"limit": "5"})] {
        assert_eq!(q(bad).unwrap_err().code, ErrorCode::InvalidPayload);
    }
    assert_eq!(q(json!({"since": "not-a-uuid"})).unwrap_err().code, ErrorCode::InvalidPayload);
    assert_eq!(q(json!({"since": 12})).unwrap_err().code, ErrorCode::InvalidPayload);
    assert_eq!(q(json!("x")).unwrap_err().code, ErrorCode::InvalidPayload);
    match q(json!({"limit": 200, "userId": "u", "since": "0190a6f0-0000-7000-8000-000000000000", "eventTypes": ["A"]})).unwrap() {
        Command::GetRecentEvents(q) => {
            assert_eq!(q.limit, 200);
            assert_eq!(q.user_id.as_deref(), Some("u"));
            assert!(q.since.is_some());
            assert_eq!(q.event_types, vec!["A".to_string()]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refresh_token_payload() {
    let q = |v: Value| parse("refresh-token", &[v], false, Role::Reader, &Config::default()).result;
    assert_eq!(q(json!({"token": "abc"})).unwrap(), Command::RefreshToken { token: "abc".into() });
    for bad in [json!({}), json!({"token": ""}), json!({"token": 1}), json!("abc")] {
        assert_eq!(q(bad).unwrap_err().code, ErrorCode::InvalidPayload);
    }
}

#[test]
fn errors_reach_the_socket_as_event_error_and_failed_ack() {
    let mut node = Node::new();
    let reader = node.connect("r1", "reader");
    let (out, ack) = node.send_ack(reader, "reader-event", vec![json!({"eventType": "bad type"})]);
    assert_eq!(ack["ok"], json!(false));
    assert_eq!(ack["error"]["code"], json!("INVALID_PAYLOAD"));
    let err = error_of(&out, reader);
    assert_eq!(err["code"], json!("INVALID_PAYLOAD"));
    assert_eq!(err["event"], json!("reader-event"));
    assert_eq!(err["message"], ack["error"]["message"]);

    let out = node.send(reader, &"z".repeat(1000), json!({}));
    let err = error_of(&out, reader);
    assert_eq!(err["code"], json!("UNKNOWN_EVENT"));
    assert_eq!(err["event"].as_str().unwrap().len(), 64, "a long name is cut short");
}

#[test]
fn parse_never_panics_on_odd_shapes() {
    let odd =
        [json!(null), json!([]), json!([[[]]]), json!({"eventType": {"x": 1}}), json!(f64::MAX), json!(-1)];
    let names = [
        "reader-event",
        "subscribe-consultant",
        "unsubscribe-consultant",
        "join-room",
        "leave-room",
        "get-online-readers",
        "get-recent-events",
        "refresh-token",
        "",
        "\u{0}",
    ];
    for name in names {
        for role in [Role::Reader, Role::Consultant, Role::Admin] {
            for v in &odd {
                let _ = parse(name, std::slice::from_ref(v), false, role, &Config::default());
            }
            let _ = parse(name, &[], false, role, &Config::default());
        }
    }
}
