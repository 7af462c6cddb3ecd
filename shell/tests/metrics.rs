//! `/metrics` read by a Prometheus text-format parser while readers send and a consultant watches:
//! every scrape parses, and the histograms count what happened (each accepted event once in
//! `alice_event_durable_seconds`, each delivery once in `alice_delivery_seconds`, each handshake
//! in `alice_handshake_seconds`), with buckets that only grow.

mod common;

use common::*;
use prometheus_parse::{Scrape, Value};
use serde_json::json;

async fn scrape(addr: std::net::SocketAddr) -> Scrape {
    let (status, body) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let text = body.as_str().expect("text").to_owned();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A counter or gauge's value (the parser files a counter's `_total` under its full name).
fn value(s: &Scrape, name: &str) -> f64 {
    let sample = s.samples.iter().find(|x| x.metric == name).unwrap_or_else(|| panic!("no {name}"));
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is {other:?}"),
    }
}

/// A histogram's observations, checking that its buckets never shrink and end at +Inf.
fn observations(s: &Scrape, name: &str) -> f64 {
    let sample = s.samples.iter().find(|x| x.metric == name).unwrap_or_else(|| panic!("no {name}"));
    let Value::Histogram(buckets) = &sample.value else { panic!("{name} is not a histogram") };
    assert!(
        buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count),
        "{name}"
    );
    let last = buckets.last().expect("buckets");
    assert!(last.less_than.is_infinite(), "{name} ends at +Inf");
    assert_eq!(value(s, &format!("{name}_count")), last.count, "{name}_count");
    last.count
}

#[tokio::test]
async fn metrics_parse_under_load_and_the_histograms_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(settings(dir.path(), &[])).await.unwrap();
    let addr = server.addr;
    let mut consultant = Client::connect(addr, &token("m-c", "consultant")).await.unwrap();
    assert_eq!(consultant.call("subscribe-consultant", json!({"consultantId": "m-c"})).await["ok"], true);

    let readers = (0..4).map(|k| async move {
        let mut reader = Client::connect(addr, &token(&format!("m-r{k}"), "reader")).await.unwrap();
        for n in 0..25 {
            let ack = reader.call("reader-event", json!({"eventType": "PAGE_TURN", "data": {"n": n}})).await;
            assert_eq!(ack["ok"], true, "{ack}");
        }
        if k == 0 {
            // A repeat of a key is answered, not accepted again: it is no event made durable.
            for _ in 0..2 {
                let body = json!({"eventType": "PAGE_TURN", "clientEventId": "m-key"});
                assert_eq!(reader.call("reader-event", body).await["ok"], true);
            }
        }
        reader
    });
    let scrapes = async {
        let mut n = 0;
        for _ in 0..20 {
            scrape(addr).await;
            n += 1;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        n
    };
    let (readers, parsed) = tokio::join!(futures_util::future::join_all(readers), scrapes);
    assert_eq!(parsed, 20, "every scrape under load parsed");

    let s = wait_for(addr, |s| value(s, "alice_deliveries_total") >= 101.0).await;
    assert_eq!(value(&s, "alice_events_accepted_total"), 101.0);
    assert_eq!(value(&s, "alice_duplicate_events_total"), 1.0);
    assert_eq!(observations(&s, "alice_event_durable_seconds"), 101.0, "each accepted event once");
    assert_eq!(observations(&s, "alice_delivery_seconds"), value(&s, "alice_deliveries_total"));
    assert_eq!(observations(&s, "alice_handshake_seconds"), 5.0, "five sockets connected");
    assert!(observations(&s, "alice_log_append_seconds") >= 1.0);
    assert!(value(&s, "alice_log_append_seconds_sum") > 0.0);
    assert_eq!(value(&s, "alice_connections"), 5.0);
    drop(readers);
    server.shutdown().await;
}

/// Scrapes until `done` holds (the last deliveries may still be on their way).
async fn wait_for(addr: std::net::SocketAddr, done: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..200 {
        let s = scrape(addr).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("/metrics never showed what was expected");
}
