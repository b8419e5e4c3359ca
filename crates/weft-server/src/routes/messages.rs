//! Messages and turns: append to the transcript, read it, run prompts in
//! the background (`send-message`) or streamed (`execute`), and follow a
//! session (`stream`).

use std::str::FromStr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use weft_core::message::{ContentBlock, Role};
use weft_core::view::LoggedMessage;
use weft_core::{BranchId, Message, ResponseFormat, SessionId};

use crate::answers::{self, Stamp};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::live::{Accepted, Need, Prompt, Submitted};
use crate::model::{
    AppendMessageRequest, CancelParams, CancelResponse, ExecuteParams, MessageContent,
    MultitaskParams, SendMessageRequest, SendMessageResponse, SseEvent, StreamParams,
    TranscriptMessage, TranscriptParams,
};
use crate::routes::AppState;
use crate::sse::{Compat, StreamSpec, events};

/// Appends a message to the transcript without running the model.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Session id")),
    request_body = AppendMessageRequest,
    responses(
        (status = 201, description = "The message as stored", body = TranscriptMessage),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "Not active, or a turn is running", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
pub(crate) async fn append_message(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<AppendMessageRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let role = match req.role.as_deref() {
        None | Some("") => Role::User,
        Some(r) => Role::from_str(r).map_err(|e| ApiError::unprocessable(format!("role: {e}")))?,
    };
    let content = match req.content {
        MessageContent::Text(text) => vec![ContentBlock::text(text)],
        MessageContent::Blocks(blocks) if blocks.is_empty() => {
            return Err(ApiError::unprocessable(
                "content: give a string or at least one content block",
            ));
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    let sender = req
        .agent
        .or_else(|| (role == Role::User).then(|| "user".to_string()));
    // Its branch is decided where it is appended.
    let mut message = Message::new(BranchId::main(), role, content);
    message.sender = sender;
    let (seq, message) = core
        .append_message(&id, req.branch.as_deref(), message)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TranscriptMessage::from_message(seq, &message)),
    ))
}

/// The transcript of the default branch (or `?branch=`); `?limit=N` gives
/// the last N messages.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/transcript", tag = "messages",
    params(("id" = String, Path, description = "Session id"), TranscriptParams),
    responses(
        (status = 200, description = "The messages, oldest first", body = Vec<TranscriptMessage>),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "Unknown branch", body = ErrorBody),
    )
)]
pub(crate) async fn transcript(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<TranscriptParams>,
) -> Result<Response, ApiError> {
    let meta = core.meta(&id).await?;
    let branch = params.branch.filter(|b| !b.is_empty());
    let key = answers::Key {
        id,
        branch,
        limit: params.limit,
    };
    // The log has not changed since this answer was made: send it again.
    if let Some(body) = core.answers.get(&key, Stamp::of(&meta)) {
        return Ok(json_bytes(body));
    }
    let view = core.store().view(&key.id).await?;
    let messages = match key.branch.as_deref() {
        Some(b) => view.branch(b).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "invalid query parameter: branch: session {} has no branch {b:?}",
                key.id
            ))
        })?,
        None => match view.default_branch() {
            Some(b) => b,
            None => return Ok(Json(Vec::<TranscriptMessage>::new()).into_response()),
        },
    }
    .messages
    .as_slice();
    let body = serde_json::to_vec(&transcript_of(messages, key.limit))
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode the transcript: {e}")))?;
    let stamp = Stamp::of(&view.meta);
    core.answers.put(key, stamp, body.clone());
    Ok(json_bytes(body))
}

/// A `200 OK` with an already encoded JSON body (what `Json` sends).
fn json_bytes(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The API view of a branch's messages; `limit` keeps the last N.
pub(crate) fn transcript_of(
    messages: &[LoggedMessage],
    limit: Option<usize>,
) -> Vec<TranscriptMessage> {
    let skip = limit.map_or(0, |n| messages.len().saturating_sub(n));
    messages[skip..]
        .iter()
        .map(TranscriptMessage::from_logged)
        .collect()
}

/// Runs the model on a prompt in the background; follow it on `/stream`.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/send-message", tag = "messages",
    params(("id" = String, Path, description = "Session id"), MultitaskParams),
    request_body = SendMessageRequest,
    responses(
        (status = 202, description = "Accepted: executing, queued or interrupting", body = SendMessageResponse),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "Not active, or a turn is running on the branch (without ?multitask)", body = ErrorBody),
        (status = 422, description = "Unknown branch, an empty prompt, or an invalid responseFormat", body = ErrorBody),
        (status = 502, description = "The provider failed", body = ErrorBody),
        (status = 503, description = "No provider is configured for the session's plan", body = ErrorBody),
    )
)]
pub(crate) async fn send_message(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<MultitaskParams>,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let submitted = core
        .submit(
            &id,
            Prompt {
                text: req.content,
                branch: req.branch,
                branch_in_path: false,
                policy: params.multitask.unwrap_or_default(),
                need: Need::Active,
                create: None,
                run_as: None,
                want_result: false,
                response_format: response_format(req.response_format)?,
            },
        )
        .await?;
    Ok(accepted(&id, &submitted))
}

/// A request's `response_format` (a JSON Schema, or `{name, schema,
/// strict}`), checked: an invalid one is a 422 before any turn starts.
pub(crate) fn response_format(value: Option<Value>) -> Result<Option<ResponseFormat>, ApiError> {
    value
        .filter(|v| !v.is_null())
        .map(ResponseFormat::from_value)
        .transpose()
        .map_err(|e| ApiError::unprocessable(format!("response_format: {e}")))
}

/// The 202 answer to a prompt accepted for a background turn.
pub(crate) fn accepted(
    id: &SessionId,
    submitted: &Submitted,
) -> (StatusCode, Json<SendMessageResponse>) {
    let (status, position) = match submitted.accepted {
        Accepted::Started => ("executing", None),
        Accepted::Queued(n) => ("queued", Some(n)),
        Accepted::Interrupting => ("interrupting", None),
    };
    (
        StatusCode::ACCEPTED,
        Json(SendMessageResponse {
            status: status.into(),
            session_id: id.to_string(),
            branch: submitted.branch.to_string(),
            turn: submitted.turn.to_string(),
            position,
        }),
    )
}

fn sse_response<S>(core: &AppState, stream: S) -> Response
where
    S: futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>
        + Send
        + 'static,
{
    let sse = Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(core.config.keepalive)
            .text("keepalive"),
    );
    ([("x-accel-buffering", "no")], sse).into_response()
}

/// Cancels the running turn (of `?branch=`, else of every branch): it
/// stops at once and records its partial answer; prompts queued behind it
/// still run. Answers how many turns were cancelled (0: none was running
/// in this server).
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/cancel", tag = "messages",
    params(("id" = String, Path, description = "Session id"), CancelParams),
    responses(
        (status = 200, description = "How many running turns were cancelled", body = CancelResponse),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "Unknown branch", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<CancelParams>,
) -> Result<Json<CancelResponse>, ApiError> {
    let view = core.store().view(&id).await?;
    let branch = match params.branch.as_deref().filter(|b| !b.is_empty()) {
        Some(name) => Some(
            view.branch(name)
                .map(|b| b.branch.id.clone())
                .ok_or_else(|| ApiError::unknown_branch(&id, name, Some("branch")))?,
        ),
        None => None,
    };
    let cancelled = core.cancel_turns(&id, branch.as_ref());
    Ok(Json(CancelResponse { cancelled }))
}

/// Runs a prompt and streams its turn as SSE, ending with a `done` event
/// (`{status, result | error, sessionId, turn}`, and `structured`, the
/// validated JSON answer, for a turn with a `responseFormat`; an answer
/// still invalid after one repair is a `failed` `done`). A client that
/// goes away does not stop the turn.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/execute", tag = "messages",
    params(("id" = String, Path, description = "Session id"), ExecuteParams),
    request_body = SendMessageRequest,
    responses(
        (status = 200, description = "An SSE stream of the turn's events, then `done`", content_type = "text/event-stream", body = SseEvent),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "Not active, or a turn is running (without ?multitask)", body = ErrorBody),
        (status = 422, description = "An empty prompt, or an invalid responseFormat", body = ErrorBody),
        (status = 502, description = "The provider failed", body = ErrorBody),
        (status = 503, description = "No provider is configured for the session's plan", body = ErrorBody),
    )
)]
pub(crate) async fn execute(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<ExecuteParams>,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let compat = Compat::parse(params.compat.as_deref()).map_err(ApiError::unprocessable)?;
    core.meta(&id).await?;
    let slot = core.slot(&id);
    // Subscribe before the turn starts, so nothing of it is missed.
    let rx = slot.feed.subscribe(None).await?;
    let submitted = core
        .submit(
            &id,
            Prompt {
                text: req.content,
                branch: req.branch,
                branch_in_path: false,
                policy: params.multitask.unwrap_or_default(),
                need: Need::Active,
                create: None,
                run_as: None,
                want_result: true,
                response_format: response_format(req.response_format)?,
            },
        )
        .await?;
    let spec = StreamSpec {
        session_id: id,
        compat,
        connected: false,
        turn: Some(submitted.turn),
        done: submitted.done,
    };
    Ok(sse_response(&core, events(core.clone(), rx, spec)))
}

/// Follows a session: its records (with `id:` = seq) and kernel events,
/// including those of the sub-agent sessions it delegates to, tagged
/// `child_session_id`. `Last-Event-ID` (or `?last_event_id=`) replays the
/// records after it.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/stream", tag = "messages",
    params(
        ("id" = String, Path, description = "Session id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The last seq received (at most the session's head); the records after it are replayed"),
        StreamParams,
    ),
    responses(
        (status = 200, description = "An SSE stream: `connected`, then records and events (a sub-agent's events tagged `child_session_id`)", content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "Malformed id, or a Last-Event-ID that is not a seq of this session", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    )
)]
pub(crate) async fn stream(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let compat = Compat::parse(params.compat.as_deref()).map_err(ApiError::unprocessable)?;
    let last = crate::sse::last_event_id(&headers, params.last_event_id)?;
    core.meta(&id).await?;
    let slot = core.slot(&id);
    let rx = slot.feed.subscribe(last).await?;
    slot.touch();
    crate::sse::resume_from(last, rx.head())?;
    let spec = StreamSpec {
        session_id: id,
        compat,
        connected: true,
        turn: None,
        done: None,
    };
    let stream = events(core.clone(), rx, spec);
    // The test fault (off unless configured): end the first stream to
    // reach N events there, as a dropped connection would.
    let fault = core.config.test_drop_stream_after;
    let faulty = core.clone();
    let stream = futures::StreamExt::scan(
        futures::StreamExt::enumerate(stream),
        (),
        move |_, (sent, event)| {
            let drop_here = fault == Some(sent)
                && !faulty
                    .stream_dropped
                    .swap(true, std::sync::atomic::Ordering::SeqCst);
            std::future::ready((!drop_here).then_some(event))
        },
    );
    Ok(sse_response(&core, stream))
}
