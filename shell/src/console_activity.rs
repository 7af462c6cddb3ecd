//! `GET /console/activity`: the last hour, minute by minute, for the console's charts. A
//! consultant or admin token; a consultant under consultant scope `assigned` gets its own
//! readers' figures only (the core decides, `core/src/activity.rs`). Delivery latency is this
//! node's, from its delivery histogram (`delivery_minutes.rs`).
//!
//! An answer takes the driver time in proportion to the readers online, so each view (every
//! admin's, each consultant's own) is worked out at most once a second and otherwise answered from
//! the last one: a console asking in a loop costs the driver nothing more.

use std::collections::HashMap;
use std::sync::Mutex;

use alice_core::{ActivitySeries, Millis, Role};
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

/// How long an answer is given again to the same view.
const ANSWER_KEPT_MS: u64 = 1_000;
/// Most views whose answers are kept at once.
const MAX_KEPT: usize = 1_024;

/// The last answer of each view, and when it was worked out.
#[derive(Default)]
pub struct Answers(Mutex<HashMap<String, (Millis, Value)>>);

impl Answers {
    /// `view`'s answer if it was worked out less than [`ANSWER_KEPT_MS`] before `now`.
    fn fresh(&self, view: &str, now: Millis) -> Option<Value> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (at, answer) = kept.get(view)?;
        is_fresh(*at, now).then(|| answer.clone())
    }

    /// Keeps `view`'s answer worked out at `now`; when too many views are kept, the stale ones go
    /// first, and if none is stale this one is not kept.
    fn keep(&self, view: String, now: Millis, answer: &Value) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT && !kept.contains_key(&view) {
            kept.retain(|_, (at, _)| is_fresh(*at, now));
            if kept.len() >= MAX_KEPT {
                return;
            }
        }
        kept.insert(view, (now, answer.clone()));
    }
}

/// An answer worked out `at` may be given again `now` (a clock stepped back makes it stale).
fn is_fresh(at: Millis, now: Millis) -> bool {
    now >= at && now.since(at) < ANSWER_KEPT_MS
}

async fn activity(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let viewer = match authorize(&state, &headers, &[Role::Consultant, Role::Admin]).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // Every admin sees the same; a consultant may see only its own readers.
    let view = match viewer.role {
        Role::Admin => String::new(),
        _ => viewer.user_id.to_string(),
    };
    // One reading of the clock, so that both halves of the answer cover the same minutes.
    let wall = state.clock.wall();
    if let Some(answer) = state.activity_answers.fresh(&view, wall) {
        return Json(answer).into_response();
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    if !state.driver.send(Command::Activity { viewer, wall, reply }).await {
        return unavailable();
    }
    let Ok(series) = answer.await else { return unavailable() };
    let (p50, p99) = state.delivery_minutes.quantiles(wall.0);
    let answer = body(&series, &p50, &p99);
    state.activity_answers.keep(view, wall, &answer);
    Json(answer).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_given_again_for_a_second_and_only_to_its_view() {
        let answers = Answers::default();
        let at = Millis(1_000_000);
        answers.keep("c1".into(), at, &json!(1));
        assert_eq!(answers.fresh("c1", at.plus(999)), Some(json!(1)));
        assert_eq!(answers.fresh("c1", at.plus(1_000)), None, "a second later it is worked out again");
        assert_eq!(answers.fresh("c2", at), None, "another consultant's view is its own");
        assert_eq!(answers.fresh("c1", Millis(at.0 - 1)), None, "a clock stepped back sees nothing fresh");
    }

    #[test]
    fn the_views_kept_are_bounded() {
        let answers = Answers::default();
        let at = Millis(1_000_000);
        for n in 0..MAX_KEPT {
            answers.keep(format!("c{n}"), at, &json!(n));
        }
        answers.keep("late".into(), at, &json!("late"));
        assert_eq!(answers.fresh("late", at), None, "full of fresh views: not kept");
        answers.keep("later".into(), at.plus(ANSWER_KEPT_MS), &json!("later"));
        assert_eq!(
            answers.fresh("later", at.plus(ANSWER_KEPT_MS)),
            Some(json!("later")),
            "stale ones made room"
        );
        assert_eq!(answers.0.lock().unwrap().len(), 1);
    }
}
