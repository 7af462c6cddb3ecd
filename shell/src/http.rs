//! HTTP for operators: `/health`, `/stats`, `/metrics`, the dead-letter replay and (in
//! `admin_assignments.rs`) consultant assignments. Reads the core through the driver's snapshot;
//! never exposes internal errors to callers.

use std::sync::Arc;
use std::time::Duration;

use alice_core::{Principal, Role, TokenCheck};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::time::Instant;

use crate::auth::{token_from, Verifier};
use crate::clock::Clock;
use crate::driver::{Command, DriverHandle, Snapshot};
use crate::log::consumer::DeadLetters;
use crate::redis_link::RedisHealth;
use crate::store::EventStore;

const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);
const DAY_MS: u64 = 24 * 3600 * 1000;

#[derive(Clone)]
pub struct HttpState {
    pub driver: DriverHandle,
    pub verifier: Verifier,
    pub store: Arc<dyn EventStore>,
    /// Where consultant assignments are read and written.
    pub assignments: crate::assignments::AssignmentSource,
    /// The histograms the server observes.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The delivery histogram minute by minute, for the console's chart.
    pub delivery_minutes: Arc<crate::delivery_minutes::DeliveryMinutes>,
    /// The console's last activity answer per view.
    pub activity_answers: Arc<crate::console_activity::Answers>,
    /// This node's consumer group's dead letters, in a cluster.
    pub dead_letters: Option<Arc<DeadLetters>>,
    /// Present when the node is part of a Redis cluster.
    pub redis: Option<Arc<RedisHealth>>,
    pub clock: Arc<dyn Clock>,
    pub started: Instant,
    pub metrics_token: Option<String>,
    pub presence_ttl_ms: u64,
}

/// Queue and dead-letter sizes: events this node holds (waiting for the log, or for the store
/// behind a local outbox) plus, in a cluster, what this node's store has yet to take from the log.
fn queue_sizes(state: &HttpState, snap: &Snapshot) -> (u64, u64) {
    let (mut queued, mut dead) = (snap.stats.queue_size as u64, snap.stats.dlq_size as u64);
    if let Some(r) = &state.redis {
        queued += r.unstored.get();
        dead += r.dlq_len.get();
    }
    (queued, dead)
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/admin/dlq/replay", post(replay))
        .merge(crate::admin_assignments::router())
        .merge(crate::console_activity::router())
        .with_state(state)
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub(crate) fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "Server is shutting down")
}

/// The caller's principal from `Authorization: Bearer`, if it holds one of `roles`.
pub(crate) async fn authorize(
    state: &HttpState,
    headers: &HeaderMap,
    roles: &[Role],
) -> Result<Principal, Response> {
    let header = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let token = token_from(None, header);
    let claims = match state.verifier.verify(token.as_deref()).await {
        TokenCheck::Verified(claims) => claims,
        TokenCheck::Missing => return Err(error(StatusCode::UNAUTHORIZED, "Authentication token required")),
        TokenCheck::Invalid => return Err(error(StatusCode::UNAUTHORIZED, "Invalid authentication token")),
    };
    match Principal::from_claims(&claims, state.clock.wall()) {
        Ok(p) if roles.contains(&p.role) => Ok(p),
        Ok(_) => Err(error(StatusCode::FORBIDDEN, "Insufficient permissions")),
        Err(e) => Err(error(StatusCode::UNAUTHORIZED, alice_core::ConnectRefusal::from(e).message())),
    }
}

async fn health(State(state): State<HttpState>) -> Response {
    let Some(snap) = state.driver.snapshot().await else { return unavailable() };
    let started = Instant::now();
    let store_ok = matches!(tokio::time::timeout(STORE_PING_TIMEOUT, state.store.ping()).await, Ok(Ok(())));
    let latency_ms = started.elapsed().as_millis() as u64;
    let (queued, dead) = queue_sizes(&state, &snap);
    let self_heard_ago = snap.stats.bus_last_self_heard.map(|t| snap.now.since(t));
    let mut checks = serde_json::Map::new();
    let mut store = json!({
        "status": if store_ok { "ok" } else { "down" },
        "kind": state.store.kind(),
        "latencyMs": latency_ms,
        "queueSize": queued,
        "queueCapacity": snap.stats.queue_capacity,
        "dlqSize": dead,
    });
    if let (Some(r), true) = (&state.redis, state.store.is_embedded()) {
        // A file of this node's own that joined the log late lacks part of the cluster's events.
        store["missingLogRanges"] = json!(r.log_missing.get());
    }
    checks.insert("store".into(), store);
    let (redis_up, bus_silent) = match &state.redis {
        None => {
            checks.insert(
                "bus".into(),
                json!({ "status": "ok", "kind": "in-process", "lastSelfHeardMsAgo": self_heard_ago }),
            );
            (true, false)
        }
        Some(r) => {
            let up = r.is_up();
            // Our own heartbeats come back through Redis at least three times per TTL.
            let silent = up
                && self_heard_ago.is_none_or(|ago| ago > 2 * state.presence_ttl_ms)
                && state.started.elapsed() > Duration::from_millis(2 * state.presence_ttl_ms);
            checks.insert("redis".into(), json!({ "status": if up { "ok" } else { "down" } }));
            checks.insert(
                "bus".into(),
                json!({
                    "status": if !up { "down" } else if silent { "degraded" } else { "ok" },
                    "kind": "redis-streams",
                    "lastSelfHeardMsAgo": self_heard_ago,
                    "outbox": snap.stats.bus_outbox,
                    "repairs": snap.stats.bus_repairs,
                    "duplicates": snap.stats.bus_duplicates,
                    "gaps": snap.stats.bus_gaps,
                }),
            );
            // A full bus outbox drops messages: the node cannot keep its promises.
            let outbox_full = snap.stats.bus_outbox >= alice_core::bus_outbox::CAPACITY;
            (up, silent || outbox_full)
        }
    };
    let status = if snap.queue_full || bus_silent {
        "unhealthy"
    } else if !store_ok || !redis_up {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "timestamp": snap.wall.rfc3339(),
        "uptime": state.started.elapsed().as_secs_f64(),
        "checks": checks,
    });
    let code = if status == "unhealthy" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(body)).into_response()
}

async fn stats(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, &[Role::Consultant, Role::Admin]).await {
        return r;
    }
    let Some(snap) = state.driver.snapshot().await else { return unavailable() };
    let since = alice_core::Millis(snap.wall.0.saturating_sub(DAY_MS));
    let dashboard = match state.store.dashboard(since).await {
        Ok(rows) => json!(rows),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard query failed");
            json!([])
        }
    };
    let s = &snap.stats;
    let (queued, dead) = queue_sizes(&state, &snap);
    Json(json!({
        "queueStats": { "queueSize": queued, "dlqSize": dead, "isProcessing": s.is_processing },
        "onlineUsersCount": s.online_readers,
        "dashboardStats": dashboard,
        "connections": s.connections,
        "node": snap.node_id,
        "nodes": snap.nodes,
        "eventsPerMinute": snap.events_per_minute,
        "eventsAccepted": s.events_accepted,
        "deliveries": s.deliveries,
        "timestamp": snap.wall.rfc3339(),
    }))
    .into_response()
}

async fn replay(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers, &[Role::Admin]).await {
        return r;
    }
    let (reply, rx) = tokio::sync::oneshot::channel();
    if !state.driver.send(Command::ReplayDeadLetters { reply }).await {
        return unavailable();
    }
    let Ok(local) = rx.await else { return unavailable() };
    let cluster = match &state.dead_letters {
        Some(d) => d.replay().await,
        None => Ok(0),
    };
    match cluster {
        Ok(n) => Json(json!({ "replayed": local + n })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "dead-letter replay from Redis failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "Dead letters could not be replayed now; try again")
        }
    }
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let header = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        if token_from(None, header).as_deref() != Some(expected.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "Metrics token required");
        }
    }
    let Some(snap) = state.driver.snapshot().await else { return unavailable() };
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks() as i64;
    let mut gauges = vec![("runtime_tasks", "Tasks alive in the server's runtime", tasks)];
    if let Some(r) = &state.redis {
        gauges.extend([
            ("redis_up", "Whether this node reaches Redis", i64::from(r.is_up())),
            (
                "redis_unstored",
                "Entries of the cluster's log this node's store has not taken yet",
                r.unstored.get() as i64,
            ),
            ("redis_log_length", "Entries in the cluster's log stream", r.log_len.get() as i64),
            (
                "redis_dlq_length",
                "Events in this node's store group's dead-letter stream",
                r.dlq_len.get() as i64,
            ),
        ]);
        if state.store.is_embedded() {
            gauges.push((
                "store_missing_ranges",
                "Stretches of the cluster's log this node's own file lacks (trimmed before it joined)",
                r.log_missing.get() as i64,
            ));
        }
    }
    let text = state.metrics.render(&snap, gauges);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
