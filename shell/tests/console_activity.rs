//! `GET /console/activity`: who may read it, its shape, and that a consultant under consultant
//! scope `assigned` is charted only its own readers' activity and presence.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{json, Value};

async fn activity(addr: std::net::SocketAddr, bearer: &str) -> Value {
    let (status, body) = http(addr, "GET", "/console/activity", Some(bearer)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Events by type over the hour, and the readers with sparklines.
fn totals(body: &Value) -> (BTreeMap<String, u64>, u64, Vec<String>) {
    let by_type = body["eventsByType"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let n = t["perMinute"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
            (t["eventType"].as_str().unwrap().to_owned(), n)
        })
        .collect();
    let online = body["onlineReaders"].as_array().unwrap().last().unwrap().as_u64().unwrap();
    // Sparklines come most recently active first; the order is not what is checked here.
    let mut readers: Vec<String> = body["readers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userId"].as_str().unwrap().to_owned())
        .collect();
    readers.sort();
    (by_type, online, readers)
}

#[tokio::test]
async fn the_last_hour_as_each_viewer_may_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("CONSULTANT_SCOPE", "assigned")];
    let server = alice_shell::start(settings(dir.path(), &vars)).await.unwrap();
    let addr = server.addr;
    assert_eq!(http(addr, "GET", "/console/activity", None).await.0, 401);
    assert_eq!(http(addr, "GET", "/console/activity", Some(&token("r1", "reader"))).await.0, 403);

    let put = reqwest::Client::new()
        .put(format!("http://{addr}/admin/assignments/c1"))
        .bearer_auth(token("boss", "admin"))
        .json(&json!({"readers": ["r1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let mut r1 = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    let mut r2 = Client::connect(addr, &token("r2", "reader")).await.unwrap();
    for ty in ["PAGE_TURN", "PAGE_TURN"] {
        assert_eq!(r1.call("reader-event", json!({"eventType": ty})).await["ok"], true);
    }
    assert_eq!(r2.call("reader-event", json!({"eventType": "WORD_LOOKUP"})).await["ok"], true);

    let admin = activity(addr, &token("boss", "admin")).await;
    let minutes: Vec<u64> =
        admin["minutes"].as_array().unwrap().iter().map(|m| m.as_u64().unwrap()).collect();
    assert_eq!(minutes.len(), 60);
    assert!(minutes.windows(2).all(|w| w[1] == w[0] + 60), "one minute apart, oldest first");
    for q in ["p50", "p99"] {
        assert_eq!(admin["deliveryMs"][q].as_array().unwrap().len(), 60);
    }
    let everyone = [("PAGE_TURN".to_owned(), 2), ("WORD_LOOKUP".to_owned(), 1)].into();
    assert_eq!(totals(&admin), (everyone, 2, vec!["r1".to_owned(), "r2".to_owned()]));

    let own = [("PAGE_TURN".to_owned(), 2)].into();
    assert_eq!(totals(&activity(addr, &token("c1", "consultant")).await), (own, 1, vec!["r1".to_owned()]));
    assert_eq!(totals(&activity(addr, &token("c2", "consultant")).await), (BTreeMap::new(), 0, vec![]));
    server.shutdown().await;
}
