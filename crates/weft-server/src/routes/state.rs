//! Session state (agentkernel's `Session.set/get`, ADK scopes): a JSON
//! key/value map whose key prefix is its scope — `app:` (shared by the
//! sessions of one profile), `user:` (shared by one owner's sessions),
//! `temp:` (the running turn only, never stored) and plain keys (this
//! session, as `state` records in its log, so deletes and clears stick).
//!
//! `PUT` takes the value wrapped, `{"value": <any JSON>}`, so any JSON
//! (objects with a `value` key included) is stored as given. `temp:` keys
//! cannot be set or deleted over HTTP (422): a request is not a turn.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use weft_core::state::{StateScope, scope_of};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, PathId, PathKey, PathPair};
use crate::model::{SetStateRequest, StateEntry};
use crate::routes::AppState;

/// The scope name of `key`: `app`, `user`, `temp` or `session`.
fn scope_name(key: &str) -> &'static str {
    match scope_of(key, "", None) {
        StateScope::Temp => "temp",
        StateScope::Shared(ns) if ns.starts_with("app:") => "app",
        StateScope::Shared(_) => "user",
        StateScope::Session => "session",
    }
}

/// All state the session sees: its own keys, the shared `app:` and
/// `user:` keys, and the `temp:` keys of a turn running now.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/state", tag = "state",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Key → value", body = Object),
        (status = 404, description = "Unknown id", body = ErrorBody),
    )
)]
pub(crate) async fn all_state(
    State(core): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Map<String, Value>>, ApiError> {
    Ok(Json(core.state_all(&id).await?))
}

/// Removes every key of the session's own (the clear is a record, so it
/// survives restarts); shared `app:`/`user:` keys stay.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}/state", tag = "state",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Cleared"),
        (status = 404, description = "Unknown id", body = ErrorBody),
    )
)]
pub(crate) async fn clear_state(
    State(core): State<AppState>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    core.clear_state(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One key.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/state/{key}", tag = "state",
    params(
        ("id" = String, Path, description = "Session id"),
        ("key" = String, Path, description = "The key (its prefix is its scope)"),
    ),
    responses(
        (status = 200, description = "The key's value", body = StateEntry),
        (status = 400, description = "Malformed key", body = ErrorBody),
        (status = 404, description = "Unknown id, or the key is not set", body = ErrorBody),
    )
)]
pub(crate) async fn get_state(
    State(core): State<AppState>,
    PathKey(PathPair { id, name: key }): PathKey,
) -> Result<Json<StateEntry>, ApiError> {
    match core.state_get(&id, &key).await? {
        Some(value) => Ok(Json(StateEntry {
            scope: scope_name(&key).into(),
            key,
            value,
        })),
        None => Err(ApiError::not_found(format!(
            "session {id} has no state key {key:?}: GET /api/v1/sessions/{id}/state lists its keys"
        ))),
    }
}

/// Sets a key; the body is `{"value": <any JSON>}`.
#[utoipa::path(
    put, path = "/api/v1/sessions/{id}/state/{key}", tag = "state",
    params(
        ("id" = String, Path, description = "Session id"),
        ("key" = String, Path, description = "The key (its prefix is its scope)"),
    ),
    request_body = SetStateRequest,
    responses(
        (status = 200, description = "The key as stored", body = StateEntry),
        (status = 400, description = "Malformed key", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "A temp: key, or no `value`", body = ErrorBody),
    )
)]
pub(crate) async fn put_state(
    State(core): State<AppState>,
    PathKey(PathPair { id, name: key }): PathKey,
    ApiJson(req): ApiJson<SetStateRequest>,
) -> Result<Json<StateEntry>, ApiError> {
    core.change_state(&id, &key, Some(req.value.clone()))
        .await?;
    Ok(Json(StateEntry {
        scope: scope_name(&key).into(),
        key,
        value: req.value,
    }))
}

/// Deletes a key (deleting a key that is not set does nothing).
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}/state/{key}", tag = "state",
    params(
        ("id" = String, Path, description = "Session id"),
        ("key" = String, Path, description = "The key (its prefix is its scope)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed key", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "A temp: key", body = ErrorBody),
    )
)]
pub(crate) async fn delete_state(
    State(core): State<AppState>,
    PathKey(PathPair { id, name: key }): PathKey,
) -> Result<StatusCode, ApiError> {
    core.change_state(&id, &key, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
