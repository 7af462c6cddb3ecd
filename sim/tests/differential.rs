//! Keeps the fake Redis honest: random sequences of the stream commands the shell uses go to the
//! fake and to a real redis-server, over RESP2 and RESP3, and every reply must be the same.
//!
//! The real server is one of the test's own, on a free port. Without `redis-server` on the PATH the
//! test says so loudly and skips, unless `ALICE_REQUIRE_SERVICES=1`, where it fails.
//!
//! `~` trims are the one place the two may rightly differ (Redis drops whole nodes, the fake trims
//! exactly): see [`Step::Approx`] for how they are compared.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alice_sim::redis::FakeRedis;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use redis::aio::MultiplexedConnection;
use redis::Value;

const SEQUENCES: u64 = 100;
const COMMANDS: usize = 80;
const KEYS: [&str; 2] = ["s1", "s2"];
const GROUPS: [&str; 2] = ["g1", "g2"];
const CONSUMERS: [&str; 2] = ["c1", "c2"];

struct RealRedis {
    child: Child,
    port: u16,
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_real() -> Option<RealRedis> {
    let port = free_port();
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        // Nodes of 4 entries rather than 100, so a `~` trim on these short streams really drops
        // whole nodes and stops short of the threshold, as it does on a long stream.
        .args(["--stream-node-max-entries", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Some(RealRedis { child, port }),
        Err(e) => {
            if std::env::var("ALICE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("ALICE_REQUIRE_SERVICES=1 but redis-server could not start: {e}");
            }
            eprintln!(
                "\n!!! SKIPPED: redis-server could not start ({e}); the fake Redis was not compared !!!\n"
            );
            None
        }
    }
}

async fn connect(port: u16, resp3: bool) -> MultiplexedConnection {
    let url = format!("redis://127.0.0.1:{port}/{}", if resp3 { "?protocol=resp3" } else { "" });
    let client = redis::Client::open(url).expect("a valid URL");
    for _ in 0..100 {
        if let Ok(c) = client.get_multiplexed_async_connection().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no Redis answered on port {port}");
}

/// One step of a random sequence.
enum Step {
    /// A command both servers must answer the same.
    Same(Vec<String>),
    /// A `~` trim (`XADD` or `XTRIM`), then the exact trim to the same threshold. Redis' `~` drops
    /// only whole nodes and may keep more than asked; the fake trims exactly, which Redis's "at
    /// least" allows. So how much `~` trimmed is not compared: `XADD`'s reply (its id, or an error)
    /// does not depend on it and must match, and of two `XTRIM` counts only the sum must. The exact
    /// trim leaves both servers with the same entries, so every later reply is compared as usual.
    Approx { trim: Vec<String>, exact: Vec<String> },
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// An id near those written so far: sometimes one of them, sometimes not.
fn some_id(rng: &mut ChaCha8Rng, next_ms: u64) -> String {
    format!("{}-{}", rng.random_range(0..next_ms + 2), rng.random_range(0..2))
}

/// A trim strategy and threshold: a length (0 empties the stream) or an id, sometimes
/// milliseconds alone.
fn threshold(rng: &mut ChaCha8Rng, next_ms: u64) -> [String; 2] {
    if rng.random_bool(0.5) {
        return ["MAXLEN".into(), rng.random_range(0..8).to_string()];
    }
    let id = if rng.random_bool(0.2) {
        rng.random_range(0..next_ms + 2).to_string()
    } else {
        some_id(rng, next_ms)
    };
    ["MINID".into(), id]
}

/// `threshold` exactly, with or without the optional `=`.
fn exact_trim(rng: &mut ChaCha8Rng, next_ms: u64) -> Vec<String> {
    let [strategy, at] = threshold(rng, next_ms);
    if rng.random_bool(0.5) {
        vec![strategy, "=".into(), at]
    } else {
        vec![strategy, at]
    }
}

/// `~` trim options, and the exact ones to the same threshold that `Step::Approx` follows them with.
fn approx_trim(rng: &mut ChaCha8Rng, next_ms: u64) -> (Vec<String>, Vec<String>) {
    let [strategy, at] = threshold(rng, next_ms);
    let mut approx = vec![strategy.clone(), "~".into(), at.clone()];
    if rng.random_bool(0.3) {
        approx.extend(["LIMIT".into(), rng.random_range(0..10).to_string()]);
    }
    (approx, vec![strategy, "=".into(), at])
}

/// One random command over a small key space, with explicit ids so both servers agree on them.
fn command(rng: &mut ChaCha8Rng, next_ms: &mut u64) -> Step {
    let key = KEYS[rng.random_range(0..KEYS.len())].to_owned();
    let group = GROUPS[rng.random_range(0..GROUPS.len())].to_owned();
    let consumer = CONSUMERS[rng.random_range(0..CONSUMERS.len())].to_owned();
    let count = rng.random_range(1..5).to_string();
    let same = |w: &[&str]| Step::Same(words(w));
    match rng.random_range(0..32) {
        0..=4 => {
            let id = if rng.random_bool(0.9) {
                *next_ms += rng.random_range(0..3);
                format!("{}-{}", *next_ms, rng.random_range(0..3))
            } else {
                some_id(rng, *next_ms)
            };
            let mut c = words(&["XADD", &key]);
            if rng.random_bool(0.1) {
                c.push("NOMKSTREAM".into());
            }
            let mut exact = None;
            match rng.random_range(0..10) {
                0..=1 => c.extend(exact_trim(rng, *next_ms)),
                // As the shell trims the bus: approximately, far above what the test writes, so
                // neither server trims and the replies can be compared as they are.
                2 => c.extend(words(&["MAXLEN", "~", "100000"])),
                3 => {
                    let (approx, then) = approx_trim(rng, *next_ms);
                    c.extend(approx);
                    exact = Some([words(&["XTRIM", &key]), then].concat());
                }
                _ => {}
            }
            c.extend(words(&[&id, "f", &rng.random_range(0..100).to_string()]));
            match exact {
                Some(exact) => Step::Approx { trim: c, exact },
                None => Step::Same(c),
            }
        }
        5 => same(&["XLEN", &key]),
        6 => same(&["XRANGE", &key, "-", "+", "COUNT", &count]),
        7 => same(&["XREVRANGE", &key, "+", &format!("({}", some_id(rng, *next_ms)), "COUNT", &count]),
        8..=9 => same(&["XDEL", &key, &some_id(rng, *next_ms)]),
        10 => same(&["XREAD", "COUNT", &count, "STREAMS", &key, &some_id(rng, *next_ms)]),
        11 => same(&["XREAD", "STREAMS", "s1", "s2", &some_id(rng, *next_ms), "0"]),
        // Redis checks blocked clients' timeouts about every 100 ms: block for real only rarely.
        12 if rng.random_bool(0.1) => same(&["XREAD", "BLOCK", "5", "STREAMS", &key, "$"]),
        12 => same(&["XREAD", "BLOCK", "5", "STREAMS", &key, "0"]),
        13..=15 => {
            // A group in the middle of the stream is one whose lag Redis may not know.
            let start = match rng.random_range(0..5) {
                0..=1 => "0".to_owned(),
                2..=3 => "$".to_owned(),
                _ => some_id(rng, *next_ms),
            };
            let mut c = words(&["XGROUP", "CREATE", &key, &group, &start]);
            if rng.random_bool(0.7) {
                c.push("MKSTREAM".into());
            }
            Step::Same(c)
        }
        16..=19 => {
            let from = if rng.random_bool(0.6) { ">" } else { "0" };
            same(&["XREADGROUP", "GROUP", &group, &consumer, "COUNT", &count, "STREAMS", &key, from])
        }
        20 if rng.random_bool(0.1) => {
            same(&["XREADGROUP", "GROUP", &group, &consumer, "BLOCK", "5", "STREAMS", &key, ">"])
        }
        20 => same(&["XREADGROUP", "GROUP", &group, &consumer, "BLOCK", "5", "STREAMS", &key, "0"]),
        21 => same(&["XACK", &key, &group, &some_id(rng, *next_ms), &some_id(rng, *next_ms)]),
        22 => {
            // Idle 0 claims everything; an hour claims nothing but still drops deleted entries.
            let idle = if rng.random_bool(0.7) { "0" } else { "3600000" };
            let start = if rng.random_bool(0.5) { "0-0".to_owned() } else { some_id(rng, *next_ms) };
            let mut c = words(&["XAUTOCLAIM", &key, &group, &consumer, idle, &start, "COUNT", &count]);
            if rng.random_bool(0.3) {
                c.push("JUSTID".into());
            }
            Step::Same(c)
        }
        23 => same(&["DEL", &key]),
        24..=25 if rng.random_bool(0.3) => {
            let (approx, exact) = approx_trim(rng, *next_ms);
            let xtrim = words(&["XTRIM", &key]);
            Step::Approx { trim: [xtrim.clone(), approx].concat(), exact: [xtrim, exact].concat() }
        }
        24..=25 => Step::Same([words(&["XTRIM", &key]), exact_trim(rng, *next_ms)].concat()),
        // Every field, `entries-read` and `lag` included, after whatever came before (deletions,
        // trims, groups placed anywhere): the fake follows Redis 7.0's rules for those two rule for
        // rule, so no sequence needs to leave them out.
        26..=28 => same(&["XINFO", "GROUPS", &key]),
        29..=30 => same(&["XPENDING", &key, &group]),
        _ => {
            let id = format!("{}-1", *next_ms + 1);
            match rng.random_range(0..18) {
                0 => same(&["XADD", &key, "0-0", "f", "v"]),
                1 => same(&["XADD", &key, "not-an-id", "f", "v"]),
                2 => same(&["XADD", &key, "5-1", "f"]),
                3 => same(&["XREAD", "STREAMS", &key]),
                4 => same(&["XTRIM", &key]),
                5 => same(&["XTRIM", &key, "MAXLEN"]),
                6 => same(&["XTRIM", &key, "MAXLEN", "1", "MINID"]),
                7 => same(&["XTRIM", &key, "MAXLEN", "~"]),
                8 => same(&["XTRIM", &key, "MAXLEN", "-1"]),
                9 => same(&["XTRIM", &key, "MINID", "~", "+"]),
                10 => same(&["XTRIM", &key, "MINID", "=", "1", "LIMIT", "5"]),
                11 => same(&["XADD", &key, "MAXLEN", "1", "MINID", "1", &id, "f", "v"]),
                12 => same(&["XADD", &key, "LIMIT", "5", &id, "f", "v"]),
                13 => same(&["XADD", &key, "MINID", "~", "1", "LIMIT", "-1", &id, "f", "v"]),
                14 => same(&["XINFO", "GROUPS"]),
                15 => same(&["XINFO", "GROUPS", &key, "extra"]),
                16 if rng.random_bool(0.5) => same(&["XINFO"]),
                16 => same(&["XINFO", "NOPE", &key]),
                _ if rng.random_bool(0.5) => same(&["XPENDING", &key]),
                _ => same(&["XPENDING", &key, &group, "extra"]),
            }
        }
    }
}

async fn query(conn: &mut MultiplexedConnection, args: &[String]) -> Result<Value, String> {
    let mut cmd = redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a);
    }
    cmd.query_async::<Value>(conn).await.map_err(|e| e.to_string())
}

/// Serves a fake Redis on a local port; returns the port.
async fn start_fake() -> u16 {
    let fake = FakeRedis::new(
        std::sync::Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        }),
        0,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let fake_port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let fake = fake.clone();
            tokio::spawn(async move { fake.serve(stream).await });
        }
    });
    fake_port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_redis_answers_as_redis_does() {
    let Some(real) = start_real() else { return };
    let fake_port = start_fake().await;

    let mut compared = 0;
    for resp3 in [false, true] {
        let mut theirs = connect(real.port, resp3).await;
        let mut ours = connect(fake_port, resp3).await;
        for sequence in 0..SEQUENCES {
            let seed = sequence + if resp3 { 1 << 32 } else { 0 };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for conn in [&mut theirs, &mut ours] {
                query(conn, &["FLUSHALL".into()]).await.expect("FLUSHALL");
            }
            let mut next_ms = 1;
            let mut history = Vec::new();
            for _ in 0..COMMANDS {
                let differs = |history: &[String]| {
                    format!(
                        "the fake differs from redis-server (RESP{}, sequence seed {seed}) after:\n  {}",
                        if resp3 { 3 } else { 2 },
                        history.join("\n  ")
                    )
                };
                match command(&mut rng, &mut next_ms) {
                    Step::Same(args) => {
                        let (want, got) = (query(&mut theirs, &args).await, query(&mut ours, &args).await);
                        history.push(args.join(" "));
                        assert_eq!(got, want, "{}", differs(&history));
                    }
                    Step::Approx { trim, exact } => {
                        let (want, got) = (query(&mut theirs, &trim).await, query(&mut ours, &trim).await);
                        let (want_then, got_then) =
                            (query(&mut theirs, &exact).await, query(&mut ours, &exact).await);
                        history.push(trim.join(" "));
                        history.push(format!("{}  (after the `~` trim: see Step::Approx)", exact.join(" ")));
                        match (&want, &got, &want_then, &got_then) {
                            (Ok(Value::Int(a)), Ok(Value::Int(b)), Ok(Value::Int(c)), Ok(Value::Int(d))) => {
                                assert_eq!(
                                    b + d,
                                    a + c,
                                    "entries the two trims deleted: {}",
                                    differs(&history)
                                );
                            }
                            _ => {
                                assert_eq!(got, want, "{}", differs(&history));
                                assert!(
                                    matches!((&want_then, &got_then), (Ok(Value::Int(_)), Ok(Value::Int(_)))),
                                    "{want_then:?} / {got_then:?}: {}",
                                    differs(&history)
                                );
                            }
                        }
                    }
                }
                compared += 1;
            }
        }
    }
    println!("{compared} replies compared, all equal");
}

/// A read blocked on an empty stream is woken by another connection's write, and replies with
/// exactly that entry, on both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_reads_wake_on_a_write() {
    let Some(real) = start_real() else { return };
    let fake_port = start_fake().await;
    let blocked = [
        "XREAD BLOCK 5000 STREAMS s1 $",
        "XREADGROUP GROUP g1 c1 BLOCK 5000 STREAMS s1 >",
        "XREADGROUP GROUP g1 c1 COUNT 5 STREAMS s1 0",
    ];
    let mut replies = Vec::new();
    for port in [real.port, fake_port] {
        let mut reader = connect(port, false).await;
        let mut writer = connect(port, false).await;
        let words = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        query(&mut writer, &words("FLUSHALL")).await.expect("FLUSHALL");
        query(&mut writer, &words("XGROUP CREATE s1 g1 $ MKSTREAM")).await.expect("a group");
        let mut seen = Vec::new();
        for (n, line) in blocked.iter().enumerate() {
            let args = words(line);
            let read = tokio::spawn(async move { query(&mut reader, &args).await.map(|v| (v, reader)) });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let id = format!("{}-1", n + 1);
            query(&mut writer, &words(&format!("XADD s1 {id} f {n}"))).await.expect("XADD");
            let (value, back) = read.await.expect("the reader").expect("a reply");
            reader = back;
            seen.push(value);
        }
        // The woken group reads created the consumer and left entries pending.
        for line in ["XINFO GROUPS s1", "XPENDING s1 g1"] {
            seen.push(query(&mut writer, &words(line)).await.expect(line));
        }
        replies.push(seen);
    }
    assert_eq!(replies[1], replies[0], "the fake woke differently from redis-server");
}

/// Cases too rare for the random sequences, each checked against redis-server over RESP2 and RESP3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases_answer_as_redis_does() {
    let Some(real) = start_real() else { return };
    let fake_port = start_fake().await;
    let lines = [
        "XADD s 1-1 f v",
        "XADD s 2-1 f v",
        "XADD s 3-1 f v",
        "XADD s 4-1 f v",
        "XGROUP CREATE s g 0",
        "XREADGROUP GROUP g c COUNT 1 STREAMS s >",
        // Redis 7.0 counts one more read here although the group passed over a deleted entry:
        // `entries-read` 2 and `lag` 2, not 3 and 1.
        "XDEL s 2-1",
        "XREADGROUP GROUP g c COUNT 1 STREAMS s >",
        "xinfo groups s",
        "XPENDING s g",
        // Claiming nothing creates no consumer; claiming does.
        "XAUTOCLAIM s g idle 3600000 0-0",
        "XAUTOCLAIM s g busy 0 0-0 COUNT 1",
        "XINFO GROUPS s",
        "XPENDING s g",
        // Trimmed empty, the stream still knows how many entries it had: lag 0 for any group
        // at or before its last id.
        "XTRIM s MAXLEN 0",
        "XGROUP CREATE s g2 1-1",
        "XINFO GROUPS s",
        "XPENDING s g2",
        // Options that run to the end, or into what should be the id.
        "XADD s NOMKSTREAM NOMKSTREAM NOMKSTREAM",
        "XADD s NOMKSTREAM NOMKSTREAM MAXLEN",
        "XADD s MAXLEN 1 f v",
        "XADD s LIMIT 5 NOMKSTREAM",
        "XADD s LIMIT 5 bad f v",
        "XADD s MAXLEN ~ 1 LIMIT 0 5-1 f v",
        "XADD s MINID 5 =",
        "XTRIM s MINID 5 LIMIT",
        "XTRIM nokey MINID ~ 5 LIMIT 2",
        // The last possible id: nothing more can be added, whatever the id asked for.
        "XADD s 18446744073709551615-18446744073709551615 f v",
        "XADD s * f v",
        "XADD s 6-1 f v",
        "XINFO GROUPS s",
        "XINFO groups nokey",
        "XPENDING nokey g",
    ];
    let mut replies = Vec::new();
    for port in [real.port, fake_port] {
        let mut seen = Vec::new();
        for resp3 in [false, true] {
            let mut conn = connect(port, resp3).await;
            query(&mut conn, &["FLUSHALL".into()]).await.expect("FLUSHALL");
            for line in lines {
                let args: Vec<String> = line.split(' ').map(str::to_owned).collect();
                seen.push((resp3, line, query(&mut conn, &args).await));
            }
        }
        replies.push(seen);
    }
    for (want, got) in replies[0].iter().zip(&replies[1]) {
        assert_eq!(got, want, "the fake differs from redis-server");
    }
}
