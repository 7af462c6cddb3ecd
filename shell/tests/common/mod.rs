//! The shared harness for the shell's integration tests: an in-process server on a free port,
//! a small raw Socket.IO client, and a store that fails on demand.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alice_core::{HistoryQuery, Millis, ReaderEvent};
use alice_shell::config::Settings;
use alice_shell::store::sqlite::SqliteStore;
use alice_shell::store::{DashboardRow, EventStore, Page, StoreError};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub mod assignments;
pub mod cluster;
pub mod positions;

pub const SECRET: &str = "integration-secret-0123456789";

pub fn settings(dir: &std::path::Path, vars: &[(&str, &str)]) -> Settings {
    let mut map: HashMap<String, String> = [
        ("JWT_SECRET", SECRET),
        ("REALTIME_PORT", "0"),
        ("HOST", "127.0.0.1"),
        ("NODE_ID", "test-node"),
        ("SHUTDOWN_GRACE_MS", "2000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    map.insert("DATA_DIR".into(), dir.display().to_string());
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    Settings::from_vars(|k| map.get(k).cloned()).expect("valid test settings")
}

pub fn token(sub: &str, role: &str) -> String {
    alice_shell::auth::sign(SECRET.as_bytes(), sub, role, Duration::from_secs(3600))
}

/// A store that can be told to fail every call, or to refuse events of one type; it counts its
/// reader session writes, each of which takes a few milliseconds.
pub struct FlakyStore {
    inner: SqliteStore,
    pub down: AtomicBool,
    pub poison_type: std::sync::Mutex<Option<String>>,
    pub session_writes: SessionWrites,
}

#[derive(Default)]
pub struct SessionWrites {
    in_flight: std::sync::atomic::AtomicUsize,
    /// The most that were ever in flight at once.
    pub most: std::sync::atomic::AtomicUsize,
    pub done: std::sync::atomic::AtomicUsize,
}

impl SessionWrites {
    async fn write(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

impl FlakyStore {
    pub async fn open(dir: &std::path::Path) -> Arc<FlakyStore> {
        Arc::new(FlakyStore {
            inner: SqliteStore::open(None, dir).await.expect("sqlite opens"),
            down: AtomicBool::new(false),
            poison_type: std::sync::Mutex::new(None),
            session_writes: SessionWrites::default(),
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventStore for FlakyStore {
    fn kind(&self) -> &'static str {
        "flaky-sqlite"
    }
    async fn insert(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        self.check()?;
        let poison = self.poison_type.lock().unwrap().clone();
        if let Some(p) = poison {
            if events.iter().any(|e| e.event_type == p) {
                return Err(StoreError::Rejected("injected poison row".into()));
            }
        }
        self.inner.insert(events).await
    }
    async fn recent(&self, q: &HistoryQuery) -> Result<Page, StoreError> {
        self.check()?;
        self.inner.recent(q).await
    }
    async fn replay(
        &self,
        from: alice_core::ReplayFrom,
        filter: &alice_core::ReplayFilter,
        limit: usize,
    ) -> Result<Option<alice_shell::store::Replay>, StoreError> {
        self.check()?;
        self.inner.replay(from, filter, limit).await
    }
    async fn newest(&self, n: usize) -> Result<Page, StoreError> {
        self.check()?;
        self.inner.newest(n).await
    }
    async fn dashboard(&self, since: Millis) -> Result<Vec<DashboardRow>, StoreError> {
        self.check()?;
        self.inner.dashboard(since).await
    }
    async fn assignments(&self, consultant: Option<&str>) -> Result<alice_core::AssignmentTable, StoreError> {
        self.check()?;
        self.inner.assignments(consultant).await
    }
    async fn assign(
        &self,
        consultant: &str,
        readers: &std::collections::BTreeSet<String>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.assign(consultant, readers).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn session_opened(&self, _: &alice_shell::store::Session) -> Result<(), StoreError> {
        self.session_writes.write().await;
        Ok(())
    }
    async fn session_closed(&self, _: &alice_shell::store::Session) -> Result<(), StoreError> {
        self.session_writes.write().await;
        Ok(())
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal Socket.IO v4 client over a websocket: enough to drive the server from Rust tests.
pub struct Client {
    ws: Ws,
    next_ack: u64,
    /// Events received and not yet taken, in order.
    pub inbox: Vec<(String, Value)>,
    acks: HashMap<u64, Value>,
}

impl Client {
    /// Connects and completes the Socket.IO CONNECT; `Err` carries the connect_error message.
    pub async fn connect(addr: std::net::SocketAddr, token: &str) -> Result<Client, String> {
        Client::connect_with_headers(addr, token, &[]).await
    }

    /// [`Client::connect`] with extra HTTP headers on the upgrade request.
    pub async fn connect_with_headers(
        addr: std::net::SocketAddr,
        token: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Client, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().map_err(|_| "bad header value")?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| e.to_string())?;
        let mut c = Client { ws, next_ack: 0, inbox: Vec::new(), acks: HashMap::new() };
        let open = c.frame().await.ok_or("no open packet")?;
        assert!(open.starts_with('0'), "engine.io open: {open}");
        c.send(format!("40{}", json!({ "token": token }))).await;
        loop {
            let f = c.frame().await.ok_or("closed during connect")?;
            if let Some(rest) = f.strip_prefix("44") {
                let v: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
                return Err(v["message"].as_str().unwrap_or("").to_owned());
            }
            if f.starts_with("40") {
                return Ok(c);
            }
            c.absorb(&f);
        }
    }

    /// Opens a connection, sends CONNECT with `token` and leaves at once, without waiting for
    /// the answer: a client that gives up while its handshake is being decided.
    pub async fn leave_during_connect(addr: std::net::SocketAddr, token: &str) {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket open");
        let mut c = Client { ws, next_ack: 0, inbox: Vec::new(), acks: HashMap::new() };
        let open = c.frame().await.expect("engine.io open");
        assert!(open.starts_with('0'), "engine.io open: {open}");
        c.send(format!("40{}", json!({ "token": token }))).await;
        c.ws.close(None).await.expect("websocket close");
    }

    async fn send(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("websocket send");
    }

    /// The next text frame, answering pings; `None` when closed.
    async fn frame(&mut self) -> Option<String> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await.ok()??.ok()?;
            let Message::Text(t) = msg else {
                if matches!(msg, Message::Close(_)) {
                    return None;
                }
                continue;
            };
            if t.as_str() == "2" {
                self.send("3".into()).await;
                continue;
            }
            return Some(t.to_string());
        }
    }

    fn absorb(&mut self, f: &str) {
        if let Some(rest) = f.strip_prefix("42") {
            if let Ok(Value::Array(mut a)) = serde_json::from_str::<Value>(rest) {
                if a.len() >= 2 {
                    let payload = a.remove(1);
                    let name = a[0].as_str().unwrap_or("").to_owned();
                    self.inbox.push((name, payload));
                }
            }
        } else if let Some(rest) = f.strip_prefix("43") {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let (Ok(id), Ok(Value::Array(mut a))) =
                (digits.parse::<u64>(), serde_json::from_str::<Value>(&rest[digits.len()..]))
            {
                self.acks.insert(id, if a.is_empty() { Value::Null } else { a.remove(0) });
            }
        }
    }

    /// Emits without an acknowledgement.
    pub async fn emit(&mut self, event: &str, payload: Value) {
        self.send(format!("42{}", json!([event, payload]))).await;
    }

    /// Emits and waits for the acknowledgement.
    pub async fn call(&mut self, event: &str, payload: Value) -> Value {
        let id = self.request(event, payload).await;
        self.ack(id).await
    }

    /// Emits asking for an acknowledgement without waiting for it; [`Client::ack`] collects it.
    pub async fn request(&mut self, event: &str, payload: Value) -> u64 {
        self.next_ack += 1;
        let id = self.next_ack;
        self.send(format!("42{id}{}", json!([event, payload]))).await;
        id
    }

    /// Emits asking for an acknowledgement; `None` when the connection is gone.
    pub async fn try_request(&mut self, event: &str, payload: Value) -> Option<u64> {
        self.next_ack += 1;
        let id = self.next_ack;
        let text = format!("42{id}{}", json!([event, payload]));
        self.ws.send(Message::text(text)).await.ok()?;
        Some(id)
    }

    /// Waits for the acknowledgement of request `id`; `None` when the connection is gone first.
    pub async fn try_ack(&mut self, id: u64) -> Option<Value> {
        loop {
            if let Some(v) = self.acks.remove(&id) {
                return Some(v);
            }
            let f = self.frame().await?;
            self.absorb(&f);
        }
    }

    /// Whether the acknowledgement of request `id` came and waits to be taken.
    pub fn answered(&self, id: u64) -> bool {
        self.acks.contains_key(&id)
    }

    /// Waits for the acknowledgement of request `id`.
    pub async fn ack(&mut self, id: u64) -> Value {
        loop {
            if let Some(v) = self.acks.remove(&id) {
                return v;
            }
            let f = self.frame().await.expect("connection open while waiting for an ack");
            self.absorb(&f);
        }
    }

    /// Waits for the next `event` (taking it from the inbox).
    pub async fn next(&mut self, event: &str) -> Option<Value> {
        loop {
            if let Some(i) = self.inbox.iter().position(|(n, _)| n == event) {
                return Some(self.inbox.remove(i).1);
            }
            let f = self.frame().await?;
            self.absorb(&f);
        }
    }
}

/// GET or POST with an optional bearer token; returns the status and the body as JSON or text.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}{path}");
    let mut req = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().await.expect("http request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Polls `/stats` until `f` holds.
pub async fn wait_stats(addr: std::net::SocketAddr, f: impl Fn(&Value) -> bool) -> Value {
    let admin = token("admin-watch", "admin");
    for _ in 0..200 {
        let (_, s) = http(addr, "GET", "/stats", Some(&admin)).await;
        if f(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stats never satisfied the condition");
}

/// Whether tests must fail rather than skip when a service is missing.
pub fn require_services() -> bool {
    std::env::var("ALICE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A throwaway PostgreSQL database on the test server, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin: sqlx::PgPool,
}

/// The PostgreSQL server tests use: `ALICE_TEST_DATABASE_URL`, or the local one.
pub fn pg_admin_url() -> String {
    std::env::var("ALICE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

impl TestDb {
    /// Creates a database, or returns `None` (after a loud notice) when PostgreSQL is not there
    /// and services are not required.
    pub async fn create() -> Option<TestDb> {
        let admin_url = pg_admin_url();
        let admin = match sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&admin_url)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                assert!(!require_services(), "PostgreSQL is required at {admin_url}: {e}");
                eprintln!(
                    "\n*** SKIPPED: no PostgreSQL at {admin_url} ({e}); set ALICE_TEST_DATABASE_URL ***\n"
                );
                return None;
            }
        };
        let name = format!("alice_t_{:016x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
        let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin_url.clone());
        Some(TestDb { url: format!("{base}/{name}"), name, admin })
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.expect("connect to the test database")
    }

    pub async fn drop_db(self) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await;
    }
}

/// A TCP proxy the test controls: `cut` drops every connection at once and refuses new ones
/// until `restore`.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (open2, conns2) = (open.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !open2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused by closing it
                }
                let task = tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { addr, open, conns }
    }

    /// Closes every proxied connection now (both ends) and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
