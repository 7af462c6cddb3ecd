//! `deploy/`: every metric the Grafana dashboard and the Prometheus alert rules name exists in a
//! live cluster node's `/metrics` (`promtool check rules` checks the rules' syntax in `.ci/run`),
//! and the dashboard is a Grafana dashboard: JSON with panels that each query something.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::RedisServer;
use common::*;

const DASHBOARD: &str = include_str!("../../deploy/grafana/alice-realtime.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");

/// Every `alice_…` name in `text`, a histogram's series named by the histogram.
fn named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("alice_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(family.to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric families a `/metrics` text declares.
fn declared(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dashboard_is_grafana_json_whose_panels_each_query() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("JSON");
    assert_eq!(dashboard["uid"], "alice-realtime");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty()
                && targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("alice_")))
        );
        assert!(p["gridPos"]["w"].is_number() && p["title"].is_string(), "{p}");
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_name_exists() {
    let Some(redis) = RedisServer::start(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let server = alice_shell::start(settings(dir.path(), &[("REDIS_URL", &url), ("PRESENCE_TTL_MS", "600")]))
        .await
        .unwrap();
    let addr = server.addr;
    // Histograms appear once observed: a handshake, an event and its delivery, a store batch.
    let mut consultant = Client::connect(addr, &token("d-c", "consultant")).await.unwrap();
    consultant.call("subscribe-consultant", serde_json::json!({"consultantId": "d-c"})).await;
    let mut reader = Client::connect(addr, &token("d-r", "reader")).await.unwrap();
    reader.call("reader-event", serde_json::json!({"eventType": "PAGE_TURN"})).await;

    let wanted: BTreeSet<String> = named(DASHBOARD).union(&named(ALERTS)).cloned().collect();
    assert!(wanted.len() >= 15, "{wanted:?}");
    let mut missing = wanted.clone();
    for _ in 0..100 {
        let (_, body) = http(addr, "GET", "/metrics", None).await;
        let have = declared(body.as_str().unwrap_or_default());
        missing = wanted.difference(&have).cloned().collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(missing.is_empty(), "named in deploy/ but not in /metrics: {missing:?}");
    server.shutdown().await;
    drop(redis);
}
