//! Processes for cluster tests: a redis-server of the test's own (never the shared one on 6379)
//! and `alice-realtime` nodes, each killed and reaped when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{require_services, token, Client, TestDb, SECRET};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// A redis-server on a free port with an append-only file, so a restart keeps its data.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
}

impl RedisServer {
    /// Starts one, or `None` (after a loud notice) when redis-server is missing and services are
    /// not required.
    pub fn start(password: Option<&str>) -> Option<RedisServer> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            assert!(!require_services(), "redis-server is required on the PATH");
            eprintln!("\n*** SKIPPED: redis-server is not on the PATH; the cluster test did not run ***\n");
            return None;
        }
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            password: password.map(str::to_owned),
        };
        r.spawn();
        Some(r)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", "always", "--dir"])
        .arg(self.dir.path())
        .stdout(Stdio::null());
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        self.child = Some(cmd.spawn().expect("redis-server starts"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL: no goodbye, no final write beyond what the AOF already has.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "STOP");
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal(c.id(), "CONT");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// An `alice-realtime` process, with a `DATA_DIR` of its own that goes when it does.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    pub name: String,
    _data: tempfile::TempDir,
}

impl Node {
    pub fn start(name: &str, vars: &[(&str, &str)]) -> Node {
        let data = tempfile::Builder::new().prefix(&format!("alice-node-{name}-")).tempdir().unwrap();
        // `ALICE_BIN` runs another build (the release binary, for figures) under the same tests.
        let bin =
            std::env::var("ALICE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_alice-realtime").to_owned());
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("JWT_SECRET", SECRET)
            .env("REALTIME_PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("NODE_ID", name)
            .env("DATA_DIR", data.path())
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("alice-realtime starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut log = Vec::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else { panic!("node {name} exited:\n{}", log.join("\n")) };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "Alice Realtime listening" {
                break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
            }
            log.push(line);
            assert!(Instant::now() < deadline, "node {name} did not start");
        };
        // Keep draining its log so the process never blocks on a full pipe; with
        // `ALICE_TEST_LOG_DIR` set, into `<dir>/<name>.log` for a look after a failure.
        let keep = std::env::var("ALICE_TEST_LOG_DIR")
            .ok()
            .map(|dir| PathBuf::from(dir).join(format!("{name}.log")));
        std::thread::spawn(move || match keep.and_then(|path| std::fs::File::create(path).ok()) {
            Some(mut file) => {
                use std::io::Write;
                for line in lines.map_while(Result::ok) {
                    let _ = writeln!(file, "{line}");
                }
            }
            None => lines.for_each(drop),
        });
        Node { child, addr, name: name.to_owned(), _data: data }
    }

    /// SIGKILL: the node dies without telling anyone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn node_vars<'a>(redis: &'a str, db: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("REDIS_URL", redis),
        ("DATABASE_URL", db),
        ("PRESENCE_TTL_MS", "1500"),
        ("PRESENCE_PUSH_INTERVAL_MS", "100"),
        ("REDIS_CLAIM_IDLE_MS", "1000"),
        ("READER_EVENT_BURST", "1000"),
        ("STORE_RETRY_BASE_MS", "50"),
        ("STORE_RETRY_MAX_MS", "500"),
        ("STORE_MAX_ATTEMPTS", "1000"),
    ]
}

/// Waits until `socket` has received `n` reader-activity events (then checks no more come).
pub async fn collect_activity(c: &mut Client, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(200), c.next("reader-activity")).await
        {
            got.push(v);
        }
    }
    // Anything extra (a duplicate) would arrive by now.
    while let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(300), c.next("reader-activity")).await
    {
        got.push(v);
    }
    got
}

pub fn ids(events: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    v.sort();
    v
}

pub async fn stored_ids(db: &TestDb) -> Vec<String> {
    let pool = db.pool().await;
    let ids = sqlx::query_scalar("SELECT id::text FROM real_time_events ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    ids
}

pub async fn wait_stored(db: &TestDb, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let ids = stored_ids(db).await;
        if ids.len() >= n || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A consultant on `addr` subscribed to every event.
pub async fn subscribed(addr: std::net::SocketAddr, id: &str) -> Client {
    let mut c = Client::connect(addr, &token(id, "consultant")).await.unwrap();
    assert_eq!(c.call("subscribe-consultant", json!({"consultantId": id})).await["ok"], true);
    c
}
