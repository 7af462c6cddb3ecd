//! /health, /stats, /metrics and the replay endpoint: shapes, roles and tokens.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn health_stats_metrics_and_their_guards() {
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(settings(dir.path(), &[("METRICS_TOKEN", "scrape-me")])).await.unwrap();
    let addr = server.addr;

    let (status, health) = http(addr, "GET", "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"]["store"]["status"], "ok");
    assert_eq!(health["checks"]["bus"]["status"], "ok");
    assert!(health["uptime"].is_number());
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));

    assert_eq!(http(addr, "GET", "/stats", None).await.0, 401);
    assert_eq!(http(addr, "GET", "/stats", Some("junk")).await.0, 401);
    assert_eq!(http(addr, "GET", "/stats", Some(&token("r", "reader"))).await.0, 403);
    let mut reader = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    let ack = reader.call("reader-event", json!({"eventType": "PAGE_TURN"})).await;
    assert_eq!(ack["ok"], true);
    let stats = wait_stats(addr, |s| s["queueStats"]["queueSize"] == 0).await;
    for key in ["queueStats", "onlineUsersCount", "dashboardStats", "connections", "node", "eventsPerMinute"]
    {
        assert!(stats.get(key).is_some(), "/stats has {key}: {stats}");
    }
    assert_eq!(stats["onlineUsersCount"], 1);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["eventsPerMinute"], 1);
    assert_eq!(stats["node"], "test-node");
    assert_eq!(stats["queueStats"]["dlqSize"], 0);
    assert_eq!(stats["dashboardStats"][0]["eventType"], "PAGE_TURN");
    assert_eq!(stats["dashboardStats"][0]["eventCount"], 1);

    assert_eq!(http(addr, "GET", "/metrics", None).await.0, 401);
    assert_eq!(http(addr, "GET", "/metrics", Some("wrong")).await.0, 401);
    let (status, metrics) = http(addr, "GET", "/metrics", Some("scrape-me")).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("alice_events_accepted_total 1"), "{text}");
    assert!(text.contains("alice_connections 1"), "{text}");
    assert!(text.contains("alice_events_refused_total{code=\"RATE_LIMITED\"} 0"), "{text}");
    assert!(text.contains("alice_store_batches_total"), "{text}");
    let tasks = text.lines().find_map(|l| l.strip_prefix("alice_runtime_tasks ")).map(|n| n.parse::<u64>());
    assert!(matches!(tasks, Some(Ok(n)) if n > 0), "the server's own tasks are counted: {text}");

    assert_eq!(http(addr, "POST", "/admin/dlq/replay", Some(&token("c", "consultant"))).await.0, 403);
    let (status, body) = http(addr, "POST", "/admin/dlq/replay", Some(&token("a", "admin"))).await;
    assert_eq!((status, body), (200, json!({"replayed": 0})));
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_are_public_without_a_metrics_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(settings(dir.path(), &[])).await.unwrap();
    let (status, body) = http(server.addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("# TYPE alice_connections gauge"));
    server.shutdown().await;
}

#[tokio::test]
async fn cors_star_allows_any_origin_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(settings(dir.path(), &[("CORS_ORIGINS", "*")])).await.unwrap();
    let res = reqwest::Client::new()
        .get(format!("http://{}/health", server.addr))
        .header("origin", "http://dashboard.example")
        .send()
        .await
        .unwrap();
    let allowed = res.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok());
    assert_eq!(allowed, Some("http://dashboard.example"));
    let credentials = res.headers().get("access-control-allow-credentials").and_then(|v| v.to_str().ok());
    assert_eq!(credentials, Some("true"));
    server.shutdown().await;
}

#[tokio::test]
async fn an_allowed_origin_may_replace_assignments_from_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("CORS_ORIGINS", "http://admin.example")];
    let server = alice_shell::start(settings(dir.path(), &vars)).await.unwrap();
    // The browser's preflight for `PUT /admin/assignments/{id}` with a bearer token and JSON.
    let res = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("http://{}/admin/assignments/c1", server.addr))
        .header("origin", "http://admin.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("access-control-allow-origin"), "http://admin.example");
    assert!(header("access-control-allow-methods").contains("PUT"), "{:?}", res.headers());
    server.shutdown().await;
}
