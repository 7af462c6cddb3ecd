//! The simulated users: readers sending events, consultants watching them. Each follows a script
//! drawn from the seed, reconnects when its connection is lost, and writes what it saw into the
//! shared observations and the trace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{join_all, LocalBoxFuture};
use futures_util::FutureExt;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde_json::{json, Value};
use tokio::time::{sleep, sleep_until, Instant};
use uuid::Uuid;

use crate::check::{ConsultantView, Observations};
use crate::client::{Incoming, SioClient};
use crate::scenario::{Scenario, ACTIVE_FROM_MS, ACTIVE_UNTIL_MS, CHECK_AT_MS, END_MS, QUIET_FROM_MS};
use crate::trace::Trace;
use crate::world::{EPOCH_MS, NODES, SECRET};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_500);
const EVENT_TYPES: [&str; 3] = ["page_turn", "word_lookup", "HELP_REQUEST"];

/// Everything a script needs.
#[derive(Clone)]
struct Ctx {
    scenario: Scenario,
    obs: Arc<Mutex<Observations>>,
    trace: Trace,
    origin: Instant,
}

impl Ctx {
    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    fn now_ms(&self) -> u64 {
        (Instant::now() - self.origin).as_millis() as u64
    }

    fn node(&self, i: usize) -> &'static str {
        NODES[i % self.scenario.nodes]
    }
}

/// Runs every reader and consultant to the end of the simulation.
pub async fn run_all(scenario: Scenario, seed: u64, obs: Arc<Mutex<Observations>>, trace: Trace) {
    let ctx = Ctx { scenario: scenario.clone(), obs, trace, origin: Instant::now() };
    let mut scripts: Vec<LocalBoxFuture<'static, ()>> = Vec::new();
    for k in 0..scenario.readers {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7ead_0000 ^ k as u64);
        scripts.push(reader(ctx.clone(), k, rng).boxed_local());
    }
    for j in 0..scenario.consultants {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc0c0_0000 ^ j as u64);
        scripts.push(consultant(ctx.clone(), j, rng).boxed_local());
    }
    if scenario.scoped {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ 0xad31_0000);
        scripts.push(admin(ctx.clone(), rng).boxed_local());
    }
    join_all(scripts).await;
}

fn token(sub: &str, role: &str) -> String {
    let exp = EPOCH_MS / 1000 + 24 * 3600;
    let claims = json!({ "sub": sub, "role": role, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("HS256 signs")
}

async fn connect(ctx: &Ctx, who: &str, node: &'static str, token: &str) -> Option<SioClient> {
    match SioClient::connect(node, token, CONNECT_TIMEOUT).await {
        Ok(c) => {
            ctx.trace.line(format!("{who} connected to {node}"));
            Some(c)
        }
        Err(e) => {
            ctx.trace.line(format!("{who} could not connect to {node}: {}", e.0));
            None
        }
    }
}

async fn reader(ctx: Ctx, k: usize, mut rng: ChaCha8Rng) {
    let who = format!("r{k}");
    let user = format!("reader-{k}");
    let token = token(&user, "reader");
    let mut node = k;
    let mut conn: Option<SioClient> = None;
    // Acknowledgement id to the event's number and type, for events not yet answered.
    let mut pending: BTreeMap<u64, (usize, &str)> = BTreeMap::new();
    // Events whose answer was lost with a connection: sent again, with the same key, first.
    let mut resend: std::collections::VecDeque<(usize, &str)> = std::collections::VecDeque::new();
    // Some readers leave for good once they are done sending, so the online list must shrink.
    let stays = rng.random_bool(0.75);
    let mut sent = 0;
    let mut leaving = false;
    let mut next_send = ctx.at(ACTIVE_FROM_MS + rng.random_range(0..400));
    sleep(Duration::from_millis(rng.random_range(100..800))).await;

    // Send the script's events, reconnecting whenever the connection is lost.
    while ctx.now_ms() < ACTIVE_UNTIL_MS + 1_500
        && (sent < ctx.scenario.events_per_reader || !pending.is_empty() || !resend.is_empty())
    {
        let Some(c) = conn.as_mut() else {
            conn = connect(&ctx, &who, ctx.node(node), &token).await;
            if conn.is_none() {
                node += 1;
                sleep(Duration::from_millis(rng.random_range(100..400))).await;
            }
            continue;
        };
        let may_send = (!resend.is_empty()
            || sent < ctx.scenario.events_per_reader && ctx.now_ms() < ACTIVE_UNTIL_MS)
            && !leaving;
        tokio::select! {
            biased;
            incoming = c.next() => match incoming {
                Ok(Incoming::Ack(id, reply)) => {
                    if let Some((n, kind)) = pending.remove(&id) {
                        record_receipt(&ctx, &who, &user, n, kind, &reply);
                    }
                }
                Ok(Incoming::Event(name, payload)) => watch_for_leaks(&ctx, &who, &user, &name, &payload),
                Err(e) => {
                    lost(&ctx, &who, &mut pending, &mut resend, &e.0);
                    conn = None;
                    node += 1;
                    leaving = false;
                }
            },
            _ = sleep_until(next_send), if may_send => {
                let (n, kind, again) = match resend.pop_front() {
                    Some((n, kind)) => (n, kind, true),
                    None => {
                        sent += 1;
                        (sent - 1, EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())], false)
                    }
                };
                let mut payload = json!({
                    "eventType": kind,
                    "data": { "reader": k, "n": n },
                    "sessionId": format!("session-{k}"),
                });
                // Every event carries its key, so that a resend is the same event (but where the
                // scenario has some readers send none).
                if !(ctx.scenario.keyless_readers && k % 2 == 1) {
                    payload["clientEventId"] = json!(format!("r{k}-{n}"));
                }
                match c.emit("reader-event", payload).await {
                    Ok(ack) => {
                        pending.insert(ack, (n, kind));
                        let what = if again { "sent again" } else { "sent" };
                        ctx.trace.line(format!("{who} {what} #{n} {kind}"));
                    }
                    Err(e) => {
                        resend.push_front((n, kind));
                        lost(&ctx, &who, &mut pending, &mut resend, &e.0);
                        conn = None;
                        node += 1;
                    }
                }
                next_send += Duration::from_millis(rng.random_range(150..450));
                leaving = ctx.scenario.churn && !again && rng.random_bool(0.08);
            },
            _ = sleep(Duration::from_millis(50)) => {}
        }
        // A churning reader leaves once its events are answered, and comes back elsewhere.
        if leaving && pending.is_empty() {
            if let Some(c) = conn.take() {
                ctx.trace.line(format!("{who} leaves"));
                c.close().await;
                node += 1;
                sleep(Duration::from_millis(rng.random_range(50..600))).await;
            }
            leaving = false;
        }
    }
    let unanswered = pending.len() + resend.len();
    if unanswered > 0 {
        ctx.trace.line(format!("{who} gave up on {unanswered} acknowledgements"));
        ctx.obs.lock().unwrap().unanswered += unanswered as u32;
    }

    if !stays {
        if let Some(c) = conn.take() {
            c.close().await;
        }
        ctx.trace.line(format!("{who} leaves for good"));
        return;
    }
    // Confirm the connection with a round trip until the quiet point, reconnecting if it is gone.
    while ctx.now_ms() < QUIET_FROM_MS {
        if conn.is_none() {
            conn = connect(&ctx, &who, ctx.node(node), &token).await;
            if conn.is_none() {
                node += 1;
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let alive = match conn.as_mut() {
            Some(c) => round_trip(c, "get-recent-events", json!({ "limit": 1 }), |name, payload| {
                watch_for_leaks(&ctx, &who, &user, name, payload)
            })
            .await
            .is_some(),
            None => false,
        };
        if !alive {
            ctx.trace.line(format!("{who} lost its connection"));
            conn = None;
            node += 1;
            continue;
        }
        sleep(Duration::from_millis(500)).await;
    }
    if conn.is_some() {
        ctx.obs.lock().unwrap().online_readers.insert(user.clone());
    }
    // Stay (answering pings, watching for leaks) to the end.
    if let Some(c) = conn.as_mut() {
        while let Ok(Ok(incoming)) = tokio::time::timeout_at(ctx.at(END_MS), c.next()).await {
            if let Incoming::Event(name, payload) = incoming {
                watch_for_leaks(&ctx, &who, &user, &name, &payload);
            }
        }
    }
}

fn record_receipt(ctx: &Ctx, who: &str, user: &str, n: usize, kind: &str, reply: &Value) {
    if reply["ok"] == true {
        let id = reply["eventId"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        let Some(id) = id else {
            ctx.obs.lock().unwrap().leaks.push(format!("{who}: an accepted event's ack has no eventId"));
            return;
        };
        ctx.trace.line(format!("{who} #{n} accepted {id}"));
        let mut obs = ctx.obs.lock().unwrap();
        obs.accepted.insert(id, (user.to_owned(), kind.to_owned()));
    } else {
        let code = reply["error"]["code"].as_str().unwrap_or("?").to_owned();
        ctx.trace.line(format!("{who} #{n} refused {code}"));
        *ctx.obs.lock().unwrap().refused.entry(code).or_default() += 1;
    }
}

fn watch_for_leaks(ctx: &Ctx, who: &str, user: &str, name: &str, payload: &Value) {
    if name == "reader-activity" && payload["userId"] != user {
        ctx.obs.lock().unwrap().leaks.push(format!("{who} received {}'s activity", payload["userId"]));
    }
}

/// A connection broke: the events it left unanswered are sent again, in order, on the next.
fn lost<'a>(
    ctx: &Ctx,
    who: &str,
    pending: &mut BTreeMap<u64, (usize, &'a str)>,
    resend: &mut std::collections::VecDeque<(usize, &'a str)>,
    why: &str,
) {
    ctx.trace
        .line(format!("{who} lost its connection ({} unanswered, sent again next): {why}", pending.len()));
    let mut unanswered: Vec<_> = std::mem::take(pending).into_values().collect();
    unanswered.sort();
    resend.extend(unanswered);
}

/// Emits `event` and waits for its acknowledgement (1 s), handing events that arrive meanwhile to
/// `other`.
async fn round_trip(
    c: &mut SioClient,
    event: &str,
    payload: Value,
    mut other: impl FnMut(&str, &Value),
) -> Option<Value> {
    let id = c.emit(event, payload).await.ok()?;
    let wait = async {
        loop {
            match c.next().await {
                Ok(Incoming::Ack(got, reply)) if got == id => return Some(reply),
                Ok(Incoming::Event(name, payload)) => other(&name, &payload),
                Ok(Incoming::Ack(..)) => {}
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), wait).await.ok().flatten()
}

async fn consultant(ctx: Ctx, j: usize, mut rng: ChaCha8Rng) {
    let user = format!("consultant-{j}");
    let token = token(&user, "consultant");
    let churns = ctx.scenario.churn && j % 2 == 1;
    let mut node = j;
    let mut views = Vec::new();
    let mut connection = 0;
    // The last event this consultant received, on any connection: it resumes from there.
    let mut last_seen: Option<Uuid> = None;
    sleep(Duration::from_millis(rng.random_range(50..600))).await;

    while ctx.now_ms() < CHECK_AT_MS {
        let who = format!("c{j}.{connection}");
        connection += 1;
        let Some(mut c) = connect(&ctx, &who, ctx.node(node), &token).await else {
            node += 1;
            sleep(Duration::from_millis(rng.random_range(100..400))).await;
            continue;
        };
        let mut view = ConsultantView {
            name: who.clone(),
            consultant: j,
            throughout: ctx.now_ms() < ACTIVE_FROM_MS,
            early: ctx.now_ms() < ACTIVE_FROM_MS,
            ..ConsultantView::default()
        };
        // A dashboard that comes back resumes after the last event it received.
        let mut body = json!({ "consultantId": user });
        if let Some(since) = last_seen {
            body["since"] = json!(since.to_string());
        }
        let mut subscribed =
            round_trip(&mut c, "subscribe-consultant", body, |n, p| received(&ctx, &who, &mut view, n, p))
                .await;
        if last_seen.is_some() && subscribed.as_ref().is_some_and(|r| r["ok"] != true) {
            ctx.trace.line(format!("{who} could not resume: {subscribed:?}; subscribing afresh"));
            if let Some(r) = subscribed.as_ref().filter(|r| r["error"]["code"] == "INVALID_PAYLOAD") {
                view.resume_refused = Some(r.to_string());
            }
            let body = json!({ "consultantId": user });
            subscribed = round_trip(&mut c, "subscribe-consultant", body, |n, p| {
                received(&ctx, &who, &mut view, n, p)
            })
            .await;
        }
        if subscribed.as_ref().is_none_or(|r| r["ok"] != true) {
            ctx.trace.line(format!("{who} could not subscribe"));
            node += 1;
            continue;
        }
        if let Some(reply) = &subscribed {
            view.resumed = reply["resumed"] == true;
            if reply.get("resumed").is_some() {
                ctx.trace.line(format!("{who} resumed {} replayed {}", reply["resumed"], reply["replayed"]));
            }
        }
        // A churning consultant leaves now and then while readers are sending.
        let leave_at = (churns && ctx.now_ms() + 500 < ACTIVE_UNTIL_MS)
            .then(|| ctx.at(rng.random_range(ctx.now_ms() + 500..ACTIVE_UNTIL_MS)));
        let lost = loop {
            tokio::select! {
                biased;
                incoming = c.next() => match incoming {
                    Ok(Incoming::Event(name, payload)) => received(&ctx, &who, &mut view, &name, &payload),
                    Ok(Incoming::Ack(..)) => {}
                    Err(e) => {
                        ctx.trace.line(format!("{who} lost its connection: {}", e.0));
                        view.lost = true;
                        break true;
                    }
                },
                _ = sleep_until(leave_at.unwrap_or_else(|| ctx.at(CHECK_AT_MS))), if leave_at.is_some() => {
                    ctx.trace.line(format!("{who} leaves"));
                    break true;
                }
                _ = sleep_until(ctx.at(CHECK_AT_MS)) => break false,
            }
        };
        if lost {
            view.throughout = false;
            last_seen = view.order.last().copied().or(last_seen);
            views.push(view);
            c.close().await;
            node += 1;
            sleep(Duration::from_millis(rng.random_range(50..500))).await;
            continue;
        }
        let listed = round_trip(&mut c, "get-online-readers", Value::Null, |name, payload| {
            received(&ctx, &who, &mut view, name, payload)
        })
        .await;
        match listed {
            Some(reply) if reply["ok"] == true => {
                let online: BTreeSet<String> = reply["readers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["userId"].as_str().map(str::to_owned))
                    .collect();
                ctx.trace.line(format!("{who} sees online {online:?}"));
                view.online = Some(online);
            }
            other => {
                ctx.trace.line(format!("{who} could not list online readers: {other:?}"));
                view.list_failed = true;
            }
        }
        // Deliveries still arriving count too (events accepted late are delivered late).
        while let Ok(Ok(incoming)) = tokio::time::timeout_at(ctx.at(END_MS), c.next()).await {
            if let Incoming::Event(name, payload) = incoming {
                received(&ctx, &who, &mut view, &name, &payload);
            }
        }
        views.push(view);
        break;
    }
    ctx.obs.lock().unwrap().consultants.extend(views);
}

/// When the admin replaces a consultant's readers through the API, in a scoped run: after the
/// table's own rewrites (`tests/consultant_scope.rs`), while readers still send.
pub const ADMIN_PUT_MS: u64 = 4_500;

/// An admin who replaces consultant-2's readers with `PUT /admin/assignments/consultant-2` on a
/// node drawn from the seed: one assigned reader out, one other in. From the moment the request
/// leaves until the node answers (and the allowance after), either set is within the rules.
async fn admin(ctx: Ctx, mut rng: ChaCha8Rng) {
    sleep_until(ctx.at(ADMIN_PUT_MS + rng.random_range(0..500))).await;
    let Some((_, table)) = ctx.obs.lock().unwrap().assignments.last().cloned() else { return };
    let mut mine = table.get("consultant-2").cloned().unwrap_or_default();
    let all: Vec<String> = (0..ctx.scenario.readers).map(|k| format!("reader-{k}")).collect();
    let out = mine.iter().nth(rng.random_range(0..mine.len().max(1))).cloned();
    let others: Vec<&String> = all.iter().filter(|r| !mine.contains(*r)).collect();
    let into = others.get(rng.random_range(0..others.len().max(1))).map(|r| (*r).clone());
    mine.extend(into);
    if let Some(out) = out {
        mine.remove(&out);
    }
    let mut next = table.clone();
    next.insert("consultant-2".into(), mine.clone());
    // From the request on, either set may hold; from the answer on, the new one.
    let mut either = next.clone();
    either
        .get_mut("consultant-2")
        .expect("just set")
        .extend(table.get("consultant-2").into_iter().flatten().cloned());
    let node = ctx.node(rng.random_range(0..ctx.scenario.nodes));
    ctx.obs.lock().unwrap().assignments.push((ctx.now_ms(), either));
    ctx.trace.line(format!("admin puts consultant-2 {mine:?} on {node}"));
    let body = json!({ "readers": mine }).to_string();
    match put(node, "/admin/assignments/consultant-2", &token("admin-0", "admin"), &body).await {
        Ok(status) if status.contains(" 200 ") => {
            ctx.trace.line(format!("admin's put answered {status}"));
            ctx.obs.lock().unwrap().assignments.push((ctx.now_ms(), next));
        }
        other => ctx.obs.lock().unwrap().leaks.push(format!("the admin's PUT on {node} failed: {other:?}")),
    }
}

/// One HTTP/1.1 request over the simulated network; the status line of its answer.
async fn put(node: &str, path: &str, token: &str, body: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp =
        turmoil::net::TcpStream::connect(format!("{node}:3000")).await.map_err(|e| e.to_string())?;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {node}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut answer)).await;
    read.map_err(|_| "no answer".to_owned())?.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Counts a `reader-activity` a consultant socket received, and notes whom each `online-readers`
/// it was sent listed.
fn received(ctx: &Ctx, who: &str, view: &mut ConsultantView, name: &str, payload: &Value) {
    if name == "online-readers" {
        let listed = payload["readers"].as_array().into_iter().flatten();
        let at = ctx.now_ms();
        view.listed.extend(listed.filter_map(|r| r["userId"].as_str()).map(|u| (u.to_owned(), at)));
        return;
    }
    if name != "reader-activity" {
        return;
    }
    if let Some(id) = payload["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
        ctx.trace.line(format!("{who} got {id}"));
        *view.received.entry(id).or_default() += 1;
        view.order.push(id);
        let reader = payload["userId"].as_str().unwrap_or_default().to_owned();
        view.arrivals.push((reader, ctx.now_ms()));
    }
}
