//! A cluster whose nodes each keep their own SQLite file (no `DATABASE_URL`): each node's storing
//! group writes every entry of the cluster's log into its own file, so every file holds the whole
//! cluster's events, and `get-recent-events` and `/stats` answer the same on every node.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use alice_shell::store::sqlite::SqliteStore;
use alice_shell::store::EventStore;
use common::cluster::RedisServer;
use common::*;
use serde_json::json;

const PER_NODE: usize = 30;

#[tokio::test]
async fn every_nodes_own_file_holds_the_whole_cluster() {
    let Some(redis) = RedisServer::start(None) else { return };
    let url = redis.url();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut nodes = Vec::new();
    for (dir, name) in dirs.iter().zip(["own-a", "own-b"]) {
        let vars = [("REDIS_URL", url.as_str()), ("NODE_ID", name)];
        nodes.push(alice_shell::start(settings(dir.path(), &vars)).await.unwrap());
    }
    // Readers on both nodes; each node accepts its own share of the cluster's events.
    let mut sent = BTreeSet::new();
    for (k, node) in nodes.iter().enumerate() {
        let mut reader = Client::connect(node.addr, &token(&format!("own-r{k}"), "reader")).await.unwrap();
        for n in 0..PER_NODE {
            let ack = reader
                .call("reader-event", json!({"eventType": format!("T{}", n % 3), "data": {"n": n}}))
                .await;
            assert_eq!(ack["ok"], true, "{ack}");
            sent.insert(ack["eventId"].as_str().unwrap().to_owned());
        }
    }

    // Each file, read on its own, holds every event of the cluster.
    for dir in &dirs {
        let mut found = BTreeSet::new();
        for _ in 0..200 {
            let file = SqliteStore::open(None, dir.path()).await.unwrap();
            let (events, _) = file.newest(10 * PER_NODE).await.unwrap();
            found = events.iter().map(|e| e.id.to_string()).collect();
            if found == sent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(found, sent, "{} holds the whole cluster", dir.path().display());
    }

    // get-recent-events and /stats give the same answer on both nodes.
    let mut answers = Vec::new();
    for node in &nodes {
        let mut admin = Client::connect(node.addr, &token("own-admin", "admin")).await.unwrap();
        let recent = admin.call("get-recent-events", json!({"limit": 200})).await;
        let ids: Vec<String> = recent["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let stats =
            wait_stats(node.addr, |s| s["dashboardStats"].as_array().is_some_and(|d| !d.is_empty())).await;
        answers.push((ids, stats["dashboardStats"].clone()));
    }
    assert_eq!(answers[0].0.len(), 2 * PER_NODE);
    assert_eq!(answers[0], answers[1], "both nodes answer alike");
    for node in nodes {
        node.shutdown().await;
    }
    drop(redis);
}
