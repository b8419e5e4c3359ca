//! Request extractors and middleware that keep every failure in the API's
//! error shape: `{"detail": "..."}` with a status that says what was wrong
//! (400 malformed JSON or id, 408 a body that arrives too slowly, 413 over
//! the body limit, 415 not sent as JSON, 422 not an object or a field with
//! a bad value, naming the field).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use weft_core::SessionId;

use crate::error::ApiError;
use crate::guard::BodyTimeout;

/// A JSON object body: the one place that decides what a request body may
/// be. An empty body counts as `{}` (whatever its content type); any other
/// body must be sent as `Content-Type: application/json` (or a `+json`
/// type; parameters such as `charset` allowed), else 415: a web page
/// cannot send those cross-origin without a CORS preflight, which the
/// daemon only answers for allowed origins. The body must arrive within
/// the server's body timeout (else 408) and its top level must be an object
/// (else 422: serde would otherwise read a struct from an array).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = content_type_is_json(req.headers());
        let deadline = req.extensions().get::<BodyTimeout>().map(|t| t.0);
        let read = Bytes::from_request(req, state);
        let read = match deadline {
            Some(deadline) => tokio::time::timeout(deadline, read).await.map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s: send the whole body at once",
                        deadline.as_secs_f64()
                    ),
                )
            })?,
            None => read.await,
        };
        let bytes = read.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "the request body is over the server's size limit (see --body-limit)",
                )
            } else {
                ApiError::new(status, e.body_text())
            }
        })?;
        if bytes.is_empty() {
            return parse(b"{}").map(ApiJson);
        }
        let trimmed = bytes.trim_ascii();
        if json_type != Some(true) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON: send `Content-Type: application/json`",
            ));
        }
        if trimmed.first() != Some(&b'{') {
            // Not an object: say so, unless it is not JSON at all.
            parse::<serde_json::Value>(trimmed)?;
            return Err(ApiError::unprocessable(
                "the request body must be a JSON object",
            ));
        }
        parse(trimmed).map(ApiJson)
    }
}

/// Some(true) for a JSON content type, Some(false) for another one, None
/// when there is no content type.
fn content_type_is_json(headers: &HeaderMap) -> Option<bool> {
    let Ok(value) = headers.get(header::CONTENT_TYPE)?.to_str() else {
        return Some(false);
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")),
    )
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(v)| v)
        .map_err(|e| match e {
            JsonRejection::JsonDataError(e) => ApiError::unprocessable(format!(
                "invalid request body: {}",
                strip_prefix(&e.body_text())
            )),
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(format!(
                "the request body is not valid JSON: {}",
                strip_prefix(&e.body_text())
            )),
            other => ApiError::new(other.status(), other.body_text()),
        })
}

/// axum's messages start with a generic sentence; keep the useful part
/// (`field: what was wrong`).
fn strip_prefix(text: &str) -> &str {
    for prefix in [
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to parse the request body as JSON: ",
        "Failed to deserialize query string: ",
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest;
        }
    }
    text
}

/// Query parameters; a bad one is a 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::unprocessable(format!(
                    "invalid query parameter: {}",
                    strip_prefix(&e.body_text())
                ))
            })
    }
}

/// A session id from the path, validated (bad: 400 naming the id).
pub struct PathId(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(PathId(parse_session_id(&raw)?))
    }
}

/// A session id and a second path segment (a branch id or name, a state
/// key), both validated: a malformed one is a 400 naming it.
pub struct PathPair {
    /// The session.
    pub id: SessionId,
    /// The second segment, percent-decoded.
    pub name: String,
}

/// A session id and a branch (id or name) from the path.
pub struct PathBranch(pub PathPair);

/// A session id and a state key from the path.
pub struct PathKey(pub PathPair);

async fn path_pair(parts: &mut Parts) -> Result<(SessionId, String), ApiError> {
    let axum::extract::Path((raw, name)) =
        axum::extract::Path::<(String, String)>::from_request_parts(parts, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok((parse_session_id(&raw)?, name))
}

impl<S: Send + Sync> FromRequestParts<S> for PathBranch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let (id, name) = path_pair(parts).await?;
        if name.trim().is_empty()
            || name.chars().count() > 128
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(format!(
                "branch: {name:?} is not a branch id or name (1 to 128 characters, no control characters)"
            )));
        }
        Ok(PathBranch(PathPair { id, name }))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let (id, name) = path_pair(parts).await?;
        weft_core::state::check_key(&name).map_err(ApiError::bad_request)?;
        Ok(PathKey(PathPair { id, name }))
    }
}

/// Validates a session id from a request.
pub fn parse_session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Middleware: a plain request that takes longer than `timeout` is
/// answered with 504.
pub(crate) async fn timeout(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request took longer than {} s and was abandoned",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Middleware: error responses produced outside the handlers (unknown
/// route, wrong method, body limit) get the `{"detail"}` shape too.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || content_type_is_json(response.headers()) == Some(true)
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let detail = match (status, text) {
        (StatusCode::NOT_FOUND, _) => {
            "no such endpoint: GET /openapi.json lists the endpoints".to_string()
        }
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            "this endpoint does not take that method: GET /openapi.json lists the endpoints"
                .to_string()
        }
        (_, Some(text)) => text,
        (status, None) => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let mut out = ApiError::new(status, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
