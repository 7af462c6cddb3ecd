//! `GET` and `PUT /admin/assignments/:consultantId` (PROTOCOL.md, "Consultant scope"): an admin
//! reads or replaces a consultant's active readers. A `PUT` is written to the table first, then
//! applied by this node's core before the answer; a bad body changes nothing. And
//! `GET /assignments/mine`: a consultant reads its own (as the suite's row-level security lets it).

use std::collections::BTreeSet;

use alice_core::principal::{is_uuid_user_id, MAX_USER_ID_CHARS};
use alice_core::Role;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::driver::Command;
use crate::http::{authorize, error, unavailable, HttpState};
use crate::store::StoreError;

/// Most readers one consultant may be assigned in one `PUT`.
pub const MAX_ASSIGNED_READERS: usize = 10_000;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/admin/assignments/{consultant_id}", get(read).put(replace))
        .route("/assignments/mine", get(mine))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_USER_ID_CHARS
}

fn answer(consultant_id: &str, readers: impl IntoIterator<Item = String>) -> Response {
    let readers: Vec<String> = readers.into_iter().collect();
    Json(json!({ "consultantId": consultant_id, "readers": readers })).into_response()
}

fn store_failed(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "consultant assignments: store call failed");
    match e {
        StoreError::Rejected(_) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "The database refused these assignments")
        }
        StoreError::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, "Store unavailable"),
    }
}

/// The readers a `PUT` body names, or what is wrong with it.
pub fn readers_of(body: &[u8]) -> Result<BTreeSet<String>, String> {
    let shape = "Body must be a JSON object { \"readers\": [userId, ...] }";
    let value: Value = serde_json::from_slice(body).map_err(|_| shape.to_owned())?;
    let Some(list) = value.get("readers").and_then(Value::as_array) else { return Err(shape.to_owned()) };
    if list.len() > MAX_ASSIGNED_READERS {
        return Err(format!("At most {MAX_ASSIGNED_READERS} readers per consultant"));
    }
    list.iter()
        .map(|r| match r.as_str() {
            Some(id) if valid_id(id) => Ok(id.to_owned()),
            _ => Err(format!("Each reader must be a user id of 1 to {MAX_USER_ID_CHARS} characters")),
        })
        .collect()
}

/// On a table whose id columns are `uuid` (the Alice Suite's), every id must be the form
/// PostgreSQL gives back: another would be stored rewritten (uppercase, braced) or refused, and
/// this node would apply and answer ids the table does not hold. The refusal, if any.
fn refuse_unless_uuids<'a>(state: &HttpState, mut ids: impl Iterator<Item = &'a str>) -> Option<Response> {
    if !state.assignments.ids_are_uuids() || ids.all(is_uuid_user_id) {
        return None;
    }
    Some(error(
        StatusCode::BAD_REQUEST,
        "On this database, consultant and reader ids are lowercase hyphenated UUIDs",
    ))
}

/// One consultant's active readers, as `GET` answers them.
async fn read_one(state: &HttpState, consultant: &str) -> Response {
    match state.assignments.load(Some(consultant)).await {
        Ok(mut table) => answer(consultant, table.remove(consultant).unwrap_or_default()),
        Err(e) => store_failed(&e),
    }
}

async fn read(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(consultant_id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, &[Role::Admin]).await {
        return r;
    }
    if !valid_id(&consultant_id) {
        return error(StatusCode::BAD_REQUEST, "consultantId must be 1 to 128 characters");
    }
    if let Some(refused) = refuse_unless_uuids(&state, std::iter::once(consultant_id.as_str())) {
        return refused;
    }
    read_one(&state, &consultant_id).await
}

async fn mine(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let consultant = match authorize(&state, &headers, &[Role::Consultant]).await {
        Ok(p) => p.user_id,
        Err(r) => return r,
    };
    read_one(&state, &consultant).await
}

async fn replace(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(consultant_id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&state, &headers, &[Role::Admin]).await {
        return r;
    }
    if !valid_id(&consultant_id) {
        return error(StatusCode::BAD_REQUEST, "consultantId must be 1 to 128 characters");
    }
    let readers = match readers_of(&body) {
        Ok(readers) => readers,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let ids = std::iter::once(consultant_id.as_str()).chain(readers.iter().map(String::as_str));
    if let Some(refused) = refuse_unless_uuids(&state, ids) {
        return refused;
    }
    if let Err(e) = state.assignments.replace(&consultant_id, &readers).await {
        return store_failed(&e);
    }
    let (reply, applied) = tokio::sync::oneshot::channel();
    let command = Command::Assign { consultant_id: consultant_id.clone(), readers: readers.clone(), reply };
    if !state.driver.send(command).await || applied.await.is_err() {
        return unavailable();
    }
    tracing::info!(consultant = %consultant_id, readers = readers.len(), "assignments replaced");
    answer(&consultant_id, readers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_names_readers_or_says_what_is_wrong() {
        assert_eq!(
            readers_of(br#"{"readers": ["b", "a", "b"]}"#).unwrap(),
            ["a".to_owned(), "b".to_owned()].into()
        );
        assert!(readers_of(br#"{"readers": []}"#).unwrap().is_empty());
        for bad in [&b"not json"[..], br#"[]"#, br#"{"reader": ["a"]}"#, br#"{"readers": "a"}"#] {
            assert!(readers_of(bad).unwrap_err().starts_with("Body must be"), "{bad:?}");
        }
        for bad in [
            br#"{"readers": [""]}"#.to_vec(),
            br#"{"readers": [1]}"#.to_vec(),
            format!(r#"{{"readers": ["{}"]}}"#, "x".repeat(129)).into_bytes(),
        ] {
            assert!(readers_of(&bad).unwrap_err().starts_with("Each reader"));
        }
        let many = serde_json::to_vec(
            &json!({ "readers": (0..=MAX_ASSIGNED_READERS).map(|i| i.to_string()).collect::<Vec<_>>() }),
        )
        .unwrap();
        assert!(readers_of(&many).unwrap_err().starts_with("At most"));
    }
}
