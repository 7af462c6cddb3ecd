//! The hostile load: while honest readers and consultants run a fixed load, attackers take turns
//! (each followed by a quiet spell to see what is left behind), then all attack at once.
//!
//! - `bad-auth`: handshakes with ES256 tokens naming a `kid` no JWKS holds, and HS256 tokens with
//!   a bad signature;
//! - `churn`: connect/disconnect cycles, a quarter of them leaving while their token is checked;
//! - `stalled`: TCP connections that never finish the WebSocket upgrade, and sockets that connect
//!   and then never read (some subscribed to every event);
//! - `malformed`: connections that each send one bad frame: invalid UTF-8, an unknown Engine.IO
//!   packet type, an oversized packet, a binary attachment, truncated JSON.
//!
//! Throughout, honest probes complete a handshake ten times a second (HS256 and, through the
//! JWKS this tool serves, ES256) so the handshake time honest users see is measured per phase.
//! The server's RSS (from /proc) and its runtime's task and connection counts (from `/metrics`)
//! are sampled twice a second. After each quiet spell, the online list is compared with the honest
//! readers. A JSON report goes to stdout and a table to stderr.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use alice_benches::honest::{self, Load};
use alice_benches::usage::{micros_histogram, percentiles, proc_usage};
use alice_benches::wire::{self, claims, sign, token, Ws};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// The key pair the shell's JWKS tests use: the public half is served, the private half signs
/// the honest ES256 probes.
const JWKS: &str = include_str!("../../../shell/tests/fixtures/jwks.json");
const PRIVATE_KEY: &[u8] = include_bytes!("../../../shell/tests/fixtures/es256-private.pem");
const KNOWN_KID: &str = "test-key-1";

#[derive(Parser, Debug, Clone)]
#[command(about = "Hostile clients against Alice Realtime while an honest load runs")]
struct Args {
    /// The server's base URL (http://host:port).
    #[arg(long)]
    url: String,
    /// The server's process id (RSS from /proc).
    #[arg(long)]
    server_pid: u32,
    /// HS256 secret the server trusts.
    #[arg(long, default_value = "bench-secret-0123456789abcdef")]
    secret: String,
    /// Serve the JWKS here (the server's JWT_JWKS_URL is http://127.0.0.1:PORT/jwks.json).
    #[arg(long)]
    jwks_port: u16,
    /// How long each JWKS fetch takes, as a distant identity provider's would.
    #[arg(long, default_value_t = 300)]
    jwks_delay_ms: u64,
    #[arg(long, default_value_t = 500)]
    readers: usize,
    #[arg(long, default_value_t = 20)]
    consultants: usize,
    /// Honest reader events per second, in all.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of honest load before the first phase.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds of each attack (churn runs until --cycles instead, when it attacks alone).
    #[arg(long, default_value_t = 20)]
    attack_seconds: u64,
    /// Seconds of quiet after each attack.
    #[arg(long, default_value_t = 30)]
    settle_seconds: u64,
    /// Bad-token handshakes per second.
    #[arg(long, default_value_t = 200.0)]
    bad_auth_rate: f64,
    /// Connect/disconnect cycles per second.
    #[arg(long, default_value_t = 1000.0)]
    cycle_rate: f64,
    /// Cycles in the churn phase.
    #[arg(long, default_value_t = 100_000)]
    cycles: u64,
    /// TCP connections that never finish the upgrade.
    #[arg(long, default_value_t = 500)]
    unfinished: usize,
    /// Sockets that connect and never read.
    #[arg(long, default_value_t = 500)]
    stalled: usize,
    /// How many of the stalled sockets are consultants subscribed to every event.
    #[arg(long, default_value_t = 20)]
    stalled_subscribed: usize,
    /// Connections per second that each send one malformed frame.
    #[arg(long, default_value_t = 100.0)]
    malformed_rate: f64,
    /// Attacks to run, in turn (all at once comes last as `all`; `none` is a quiet control).
    #[arg(long, value_delimiter = ',', default_value = "bad-auth,churn,stalled,malformed,all")]
    attacks: Vec<Attack>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// No attack: a control, to tell drift over the run from harm.
    None,
    BadAuth,
    Churn,
    Stalled,
    Malformed,
    All,
}

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::BadAuth => "bad-auth",
            Attack::Churn => "churn",
            Attack::Stalled => "stalled",
            Attack::Malformed => "malformed",
            Attack::All => "all",
        }
    }

    fn includes(self, other: Attack) -> bool {
        self == other || (self == Attack::All && other != Attack::None)
    }
}

/// What the attackers did and how the server answered, counted over the whole run.
#[derive(Default)]
struct Counters {
    bad_auth_sent: AtomicU64,
    bad_auth_refused: AtomicU64,
    bad_auth_accepted: AtomicU64,
    bad_auth_other: AtomicU64,
    cycles: AtomicU64,
    cycles_left_during_auth: AtomicU64,
    cycles_failed: AtomicU64,
    generator_behind: AtomicU64,
    unfinished_opened: AtomicU64,
    unfinished_closed_by_server: AtomicU64,
    stalled_opened: AtomicU64,
    stalled_failed: AtomicU64,
    malformed_sent: AtomicU64,
    malformed_closed: AtomicU64,
    malformed_answered: AtomicU64,
    malformed_ignored: AtomicU64,
    malformed_failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "badAuth": {"sent": n(&self.bad_auth_sent), "refused": n(&self.bad_auth_refused),
                        "accepted": n(&self.bad_auth_accepted), "other": n(&self.bad_auth_other)},
            "churn": {"cycles": n(&self.cycles), "leftDuringAuth": n(&self.cycles_left_during_auth),
                      "failed": n(&self.cycles_failed)},
            "stalled": {"unfinishedOpened": n(&self.unfinished_opened),
                        "unfinishedClosedByServer": n(&self.unfinished_closed_by_server),
                        "socketsOpened": n(&self.stalled_opened), "socketsFailed": n(&self.stalled_failed)},
            "malformed": {"sent": n(&self.malformed_sent), "closedByServer": n(&self.malformed_closed),
                          "answered": n(&self.malformed_answered), "ignored": n(&self.malformed_ignored),
                          "failed": n(&self.malformed_failed)},
            "generatorBehind": n(&self.generator_behind),
        })
    }
}

/// first, highest and last sample of a server figure over a phase.
#[derive(Default, Clone, Copy)]
struct Span {
    first: Option<u64>,
    max: u64,
    last: u64,
}

impl Span {
    fn add(&mut self, v: u64) {
        self.first.get_or_insert(v);
        self.max = self.max.max(v);
        self.last = v;
    }

    fn json(&self) -> Value {
        json!({"start": self.first, "max": self.max, "end": self.last})
    }
}

/// Per phase: the honest probes' handshake times and the server's samples.
struct PhaseSide {
    name: String,
    hs256: Histogram<u64>,
    es256: Histogram<u64>,
    probes_failed: u64,
    rss_kib: Span,
    tasks: Span,
    connections: Span,
    online_clean_after_ms: Option<u64>,
}

struct Run {
    args: Args,
    load: Arc<Load>,
    sides: Mutex<Vec<PhaseSide>>,
    counters: Counters,
    /// Whether each attack runs now.
    bad_auth: AtomicBool,
    churn: AtomicBool,
    malformed: AtomicBool,
    stop: AtomicBool,
}

impl Run {
    /// Applies `f` to the current phase's record (none once the run is draining).
    fn side(&self, f: impl FnOnce(&mut PhaseSide)) {
        let mut sides = self.sides.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(side) = sides.get_mut(self.load.phase()) {
            f(side)
        }
    }
}

/// Serves the JWKS over plain HTTP, each answer after `delay`.
async fn serve_jwks(listener: TcpListener, delay: Duration) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut request = [0u8; 2048];
            let _ = conn.read(&mut request).await;
            tokio::time::sleep(delay).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                JWKS.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(JWKS.as_bytes()).await;
        });
    }
}

fn es256(kid: &str, sub: &str, role: &str) -> String {
    static KEY: OnceLock<EncodingKey> = OnceLock::new();
    let key = KEY.get_or_init(|| EncodingKey::from_ec_pem(PRIVATE_KEY).expect("the fixture key parses"));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    sign(&header, &claims(sub, role), key)
}

/// Reads `alice_runtime_tasks` and `alice_connections` from `/metrics`.
async fn server_gauges(url: &str) -> Option<(u64, u64)> {
    let authority = wire::authority(url);
    let mut conn = TcpStream::connect(authority).await.ok()?;
    conn.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes()).await.ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await.ok()?;
    let gauge = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
    };
    Some((gauge("alice_runtime_tasks")? as u64, gauge("alice_connections")? as u64))
}

/// Samples the server twice a second into the current phase.
async fn sample(run: Arc<Run>) {
    while !run.stop.load(Ordering::Relaxed) {
        let rss = proc_usage(&run.args.server_pid.to_string()).map(|(_, rss)| rss);
        let gauges = server_gauges(&run.args.url).await;
        run.side(|side| {
            if let Some(rss) = rss {
                side.rss_kib.add(rss);
            }
            if let Some((tasks, connections)) = gauges {
                side.tasks.add(tasks);
                side.connections.add(connections);
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An honest handshake every 100 ms, alternating HS256 and ES256; consultants, so the online
/// list is not touched.
async fn probe(run: Arc<Run>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for n in 0u64.. {
        ticker.tick().await;
        if run.stop.load(Ordering::Relaxed) {
            return;
        }
        let run = run.clone();
        tokio::spawn(async move {
            let sub = format!("probe-{}", n % 50);
            let es = n % 2 == 1;
            let tok = if es {
                es256(KNOWN_KID, &sub, "consultant")
            } else {
                token(&run.args.secret, &sub, "consultant")
            };
            let started = Instant::now();
            let result =
                tokio::time::timeout(Duration::from_secs(15), wire::connect(&run.args.url, &tok)).await;
            let micros = started.elapsed().as_micros() as u64;
            run.side(|side| match result {
                Ok(Ok(_)) => {
                    let _ = if es { side.es256.record(micros) } else { side.hs256.record(micros) };
                }
                _ => side.probes_failed += 1,
            });
        });
    }
}

/// Runs `attempt` `rate` times a second while `on` holds, at most 1,000 at once; a tick with no
/// room counts as the generator falling behind.
async fn at_rate<F, Fut>(run: Arc<Run>, rate: f64, on: impl Fn(&Run) -> bool, attempt: F)
where
    F: Fn(Arc<Run>, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let room = Arc::new(Semaphore::new(1000));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0u64.. {
        ticker.tick().await;
        if run.stop.load(Ordering::Relaxed) {
            return;
        }
        if !on(&run) {
            continue;
        }
        let Ok(permit) = room.clone().try_acquire_owned() else {
            run.counters.generator_behind.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let task = attempt(run.clone(), n);
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

/// One handshake with a token no one could have issued.
async fn bad_auth(run: Arc<Run>, n: u64) {
    let c = &run.counters;
    let tok = if n.is_multiple_of(2) {
        es256(&format!("attacker-{n}"), &format!("intruder-{n}"), "admin")
    } else {
        let mut forged = token("not-the-secret-0123456789abcdef", &format!("intruder-{n}"), "admin");
        forged.push('x');
        forged
    };
    c.bad_auth_sent.fetch_add(1, Ordering::Relaxed);
    let outcome = async {
        let mut ws = wire::open(&run.args.url).await?;
        wire::send_connect(&mut ws, &tok).await?;
        wire::connected(&mut ws).await
    };
    match tokio::time::timeout(Duration::from_secs(15), outcome).await {
        Ok(Ok(())) => c.bad_auth_accepted.fetch_add(1, Ordering::Relaxed),
        Ok(Err(e)) if e.starts_with("refused") => c.bad_auth_refused.fetch_add(1, Ordering::Relaxed),
        _ => c.bad_auth_other.fetch_add(1, Ordering::Relaxed),
    };
}

/// One connect/disconnect cycle as a reader; every fourth leaves right after sending CONNECT.
async fn cycle(run: Arc<Run>, n: u64) {
    let c = &run.counters;
    let tok = token(&run.args.secret, &format!("churn-{}", n % 1000), "reader");
    let leave_early = n.is_multiple_of(4);
    let outcome = async {
        let mut ws = wire::open(&run.args.url).await?;
        wire::send_connect(&mut ws, &tok).await?;
        if !leave_early {
            wire::connected(&mut ws).await?;
            if n % 2 == 1 {
                let _ = ws.close(None).await;
            }
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(15), outcome).await {
        Ok(Ok(())) if leave_early => c.cycles_left_during_auth.fetch_add(1, Ordering::Relaxed),
        Ok(Ok(())) => c.cycles.fetch_add(1, Ordering::Relaxed),
        _ => c.cycles_failed.fetch_add(1, Ordering::Relaxed),
    };
}

/// Connections that stop half-way through the upgrade, and sockets that stop reading; held
/// until the attack ends.
struct Stalled {
    unfinished: Vec<tokio::task::JoinHandle<()>>,
    sockets: Vec<Ws>,
}

async fn stall(run: &Arc<Run>) -> Stalled {
    let args = &run.args;
    let authority = wire::authority(&args.url).to_owned();
    let mut unfinished = Vec::new();
    for _ in 0..args.unfinished {
        let Ok(mut conn) = TcpStream::connect(&authority).await else { continue };
        let head = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
        );
        if conn.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        run.counters.unfinished_opened.fetch_add(1, Ordering::Relaxed);
        let run = run.clone();
        unfinished.push(tokio::spawn(async move {
            let mut byte = [0u8; 1];
            // The server answering or closing ends the wait: either way it let go.
            let _ = conn.read(&mut byte).await;
            run.counters.unfinished_closed_by_server.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let mut sockets = Vec::new();
    for i in 0..args.stalled {
        let subscribed = i < args.stalled_subscribed;
        let sub = format!("stalled-{i}");
        let tok = token(&args.secret, &sub, if subscribed { "consultant" } else { "reader" });
        let opened = async {
            let mut ws = wire::connect(&args.url, &tok).await?;
            if subscribed {
                let subscribe = json!(["subscribe-consultant", {"consultantId": sub}]);
                ws.send(Message::text(format!("42{subscribe}"))).await.map_err(|e| e.to_string())?;
            }
            Ok::<Ws, String>(ws)
        };
        match opened.await {
            Ok(ws) => {
                run.counters.stalled_opened.fetch_add(1, Ordering::Relaxed);
                sockets.push(ws);
            }
            Err(_) => {
                run.counters.stalled_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Stalled { unfinished, sockets }
}

/// The bad frames, in turn.
fn malformed_frame(kind: u64) -> Message {
    match kind % 5 {
        0 => Message::Frame(Frame::message(
            vec![b'4', b'2', 0xff, 0xfe, b'[', 0xc3],
            OpCode::Data(Data::Text),
            true,
        )),
        1 => Message::text("9unknown-packet-type"),
        2 => Message::text(format!(
            "42[\"reader-event\",{{\"eventType\":\"PAGE_TURN\",\"data\":\"{}\"}}]",
            "x".repeat(200_000)
        )),
        3 => Message::text("451-[\"reader-event\",{\"_placeholder\":true,\"num\":0}]"),
        _ => Message::text("42[\"reader-event\",{\"eventType\":\"PAGE_"),
    }
}

/// One connection that sends one malformed frame and waits for what the server does.
async fn malformed(run: Arc<Run>, n: u64) {
    let c = &run.counters;
    let tok = token(&run.args.secret, &format!("malformed-{}", n % 100), "reader");
    let Ok(Ok(mut ws)) =
        tokio::time::timeout(Duration::from_secs(15), wire::connect(&run.args.url, &tok)).await
    else {
        c.malformed_failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if ws.send(malformed_frame(n)).await.is_err() {
        c.malformed_failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if n % 5 == 3 {
        let _ = ws.send(Message::binary(vec![1u8, 2, 3])).await;
    }
    c.malformed_sent.fetch_add(1, Ordering::Relaxed);
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                c.malformed_ignored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.starts_with("42[\"event-error\"") || t.starts_with("44") => {
                    c.malformed_answered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    c.malformed_closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// The readers `get-online-readers` lists now.
async fn online_readers(run: &Run) -> Result<BTreeSet<String>, String> {
    let mut ws = wire::connect(&run.args.url, &token(&run.args.secret, "monitor", "consultant")).await?;
    ws.send(Message::text("42[\"get-online-readers\"]")).await.map_err(|e| e.to_string())?;
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else { return Err("closed".into()) };
        let Some(body) = t.strip_prefix("42") else { continue };
        let Ok(v) = serde_json::from_str::<Value>(body) else { continue };
        if v[0] == "online-readers" {
            let readers = v[1]["readers"].as_array().cloned().unwrap_or_default();
            return Ok(readers.iter().filter_map(|r| r["userId"].as_str().map(str::to_owned)).collect());
        }
    }
}

/// Polls the online list until it holds exactly the honest readers, or `within` passes.
async fn online_clean_after(run: &Run, within: Duration) -> Option<u64> {
    let honest: BTreeSet<String> = (0..run.args.readers).map(|i| format!("bench-r{i}")).collect();
    let started = Instant::now();
    while started.elapsed() < within {
        if online_readers(run).await.ok().as_ref() == Some(&honest) {
            return Some(started.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Starts a new phase named `name`.
fn enter(run: &Run, name: String) -> Instant {
    let mut sides = run.sides.lock().unwrap_or_else(|e| e.into_inner());
    sides.push(PhaseSide {
        name,
        hs256: micros_histogram(),
        es256: micros_histogram(),
        probes_failed: 0,
        rss_kib: Span::default(),
        tasks: Span::default(),
        connections: Span::default(),
        online_clean_after_ms: None,
    });
    run.load.enter(sides.len() - 1);
    Instant::now()
}

/// Runs one attack (or all at once) for its time, then lets it go.
async fn attack(run: &Arc<Run>, which: Attack) {
    let args = &run.args;
    let stalled = if which.includes(Attack::Stalled) { Some(stall(run).await) } else { None };
    run.bad_auth.store(which.includes(Attack::BadAuth), Ordering::Relaxed);
    run.malformed.store(which.includes(Attack::Malformed), Ordering::Relaxed);
    run.churn.store(which.includes(Attack::Churn), Ordering::Relaxed);
    if which == Attack::Churn {
        let target = run.counters.cycles.load(Ordering::Relaxed)
            + run.counters.cycles_left_during_auth.load(Ordering::Relaxed)
            + args.cycles;
        let done = || {
            run.counters.cycles.load(Ordering::Relaxed)
                + run.counters.cycles_left_during_auth.load(Ordering::Relaxed)
        };
        let limit = Instant::now() + Duration::from_secs_f64(args.cycles as f64 / args.cycle_rate * 3.0);
        while done() < target && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(args.attack_seconds)).await;
    }
    run.bad_auth.store(false, Ordering::Relaxed);
    run.malformed.store(false, Ordering::Relaxed);
    run.churn.store(false, Ordering::Relaxed);
    if let Some(Stalled { unfinished, sockets }) = stalled {
        for task in unfinished {
            task.abort();
        }
        drop(sockets);
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let jwks = TcpListener::bind(("127.0.0.1", args.jwks_port)).await.expect("the JWKS port is free");
    tokio::spawn(serve_jwks(jwks, Duration::from_millis(args.jwks_delay_ms)));

    // Phases: warm-up, quiet, then each attack and the quiet after it.
    let load = Load::new(2 + 2 * args.attacks.len());
    let run = Arc::new(Run {
        args: args.clone(),
        load: load.clone(),
        sides: Mutex::new(Vec::new()),
        counters: Counters::default(),
        bad_auth: AtomicBool::new(false),
        churn: AtomicBool::new(false),
        malformed: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    enter(&run, "warm-up".into());
    let mut tasks = Vec::new();
    for i in 0..args.consultants {
        let id = format!("bench-c{i}");
        let tok = token(&args.secret, &id, "consultant");
        tasks.push(tokio::spawn(honest::consultant(args.url.clone(), tok, id, load.clone())));
    }
    let interval = Duration::from_secs_f64(args.readers as f64 / args.rate);
    for i in 0..args.readers {
        let tok = token(&args.secret, &format!("bench-r{i}"), "reader");
        tasks.push(tokio::spawn(honest::reader(args.url.clone(), tok, i as u64, interval, load.clone())));
    }
    let background = [
        tokio::spawn(sample(run.clone())),
        tokio::spawn(probe(run.clone())),
        tokio::spawn(at_rate(
            run.clone(),
            args.bad_auth_rate,
            |r| r.bad_auth.load(Ordering::Relaxed),
            bad_auth,
        )),
        tokio::spawn(at_rate(run.clone(), args.cycle_rate, |r| r.churn.load(Ordering::Relaxed), cycle)),
        tokio::spawn(at_rate(
            run.clone(),
            args.malformed_rate,
            |r| r.malformed.load(Ordering::Relaxed),
            malformed,
        )),
    ];
    tokio::time::sleep(Duration::from_secs(args.warmup + 2)).await;

    let mut seconds = Vec::new();
    let started = enter(&run, "quiet".into());
    tokio::time::sleep(Duration::from_secs(args.attack_seconds)).await;
    seconds.push(started.elapsed().as_secs_f64());
    let mut attacks_before = Vec::new();
    for &which in &args.attacks {
        attacks_before.push(run.counters.snapshot());
        let started = enter(&run, which.name().into());
        attack(&run, which).await;
        seconds.push(started.elapsed().as_secs_f64());
        let started = enter(&run, format!("after {}", which.name()));
        let settle = Duration::from_secs(args.settle_seconds);
        let clean = online_clean_after(&run, settle).await;
        run.side(|side| side.online_clean_after_ms = clean);
        tokio::time::sleep(settle.saturating_sub(started.elapsed())).await;
        seconds.push(started.elapsed().as_secs_f64());
    }
    attacks_before.push(run.counters.snapshot());
    // Let in-flight deliveries land, then stop.
    let last = run.sides.lock().unwrap_or_else(|e| e.into_inner()).len();
    load.enter(last);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run.stop.store(true, Ordering::Relaxed);
    load.stop();
    tasks.iter().for_each(|t| t.abort());
    background.iter().for_each(|t| t.abort());

    let sides = run.sides.lock().unwrap_or_else(|e| e.into_inner());
    let mut phases = Vec::new();
    eprintln!(
        "| phase | delivered/s | p99 | lost, dup | handshake p99 HS256 / ES256 | probes failed | RSS MiB start / max / end | tasks start / max / end | connections max | online list right after |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, side) in sides.iter().enumerate().skip(1) {
        let honest = load.tally(i).report(seconds[i - 1], args.consultants);
        let mib = |k: u64| k as f64 / 1024.0;
        eprintln!(
            "| {} | {:.0} | {:.1} ms | {}, {} | {:.1} / {:.1} ms | {} | {:.1} / {:.1} / {:.1} | {} / {} / {} | {} | {} |",
            side.name,
            honest["deliveredPerSecond"].as_f64().unwrap_or(0.0),
            ms(honest["latencyMicros"]["p99"].as_u64().unwrap_or(0)),
            honest["lost"],
            honest["duplicates"],
            ms(side.hs256.value_at_quantile(0.99)),
            ms(side.es256.value_at_quantile(0.99)),
            side.probes_failed,
            mib(side.rss_kib.first.unwrap_or(0)),
            mib(side.rss_kib.max),
            mib(side.rss_kib.last),
            side.tasks.first.unwrap_or(0),
            side.tasks.max,
            side.tasks.last,
            side.connections.max,
            side.online_clean_after_ms.map_or("-".into(), |t| format!("{t} ms")),
        );
        phases.push(json!({
            "name": side.name,
            "honest": honest,
            "handshakeMicros": {"hs256": percentiles(&side.hs256), "es256": percentiles(&side.es256)},
            "probesFailed": side.probes_failed,
            "server": {"rssKiB": side.rss_kib.json(), "tasks": side.tasks.json(), "connections": side.connections.json()},
            "onlineCleanAfterMs": side.online_clean_after_ms,
        }));
    }
    let attacks: Vec<Value> = args
        .attacks
        .iter()
        .zip(attacks_before.windows(2))
        .map(|(which, w)| json!({"attack": which.name(), "before": w[0], "after": w[1]}))
        .collect();
    eprintln!("attackers, in all: {}", run.counters.snapshot());
    let report = json!({
        "readers": args.readers, "consultants": args.consultants, "rate": args.rate,
        "phases": phases, "attacks": attacks, "attackers": run.counters.snapshot(),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
}
