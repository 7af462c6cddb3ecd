//! `GET /console/activity`: the last hour, minute by minute, for the console's charts. A
//! consultant or admin token; a consultant under consultant scope `assigned` gets its own
//! readers' figures only (the core decides, `core/src/activity.rs`). Delivery latency is this
//! node's, from its delivery histogram (`delivery_minutes.rs`).

use alice_core::{ActivitySeries, Role};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::driver::Command;
use crate::http::{authorize, unavailable, HttpState};

pub fn router() -> Router<HttpState> {
    Router::new().route("/console/activity", get(activity))
}

async fn activity(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let viewer = match authorize(&state, &headers, &[Role::Consultant, Role::Admin]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // One reading of the clock, so that both halves of the answer cover the same minutes.
    let wall = state.clock.wall();
    let (reply, answer) = tokio::sync::oneshot::channel();
    if !state.driver.send(Command::Activity { viewer, wall, reply }).await {
        return unavailable();
    }
    let Ok(series) = answer.await else { return unavailable() };
    let (p50, p99) = state.delivery_minutes.quantiles(wall.0);
    Json(body(&series, &p50, &p99)).into_response()
}

fn body(series: &ActivitySeries, p50: &[Option<f64>], p99: &[Option<f64>]) -> Value {
    let first = series.first_minute.0 / 1000;
    let minutes: Vec<u64> = (0..series.online.len() as u64).map(|i| first + 60 * i).collect();
    let ms = |q: &[Option<f64>]| -> Vec<Option<f64>> {
        q.iter().map(|s| s.map(|s| (s * 1e6).round() / 1e3)).collect()
    };
    json!({
        "minutes": minutes,
        "eventsByType": series.by_type.iter()
            .map(|(t, n)| json!({ "eventType": t, "perMinute": n }))
            .collect::<Vec<_>>(),
        "onlineReaders": series.online,
        "deliveryMs": { "p50": ms(p50), "p99": ms(p99) },
        "readers": series.readers.iter()
            .map(|(user, n)| json!({ "userId": user, "perMinute": n }))
            .collect::<Vec<_>>(),
    })
}
