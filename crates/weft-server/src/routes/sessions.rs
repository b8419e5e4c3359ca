//! Sessions: create, list, show, rename, delete, the lifecycle
//! transitions, fork and cleanup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;
use weft_core::SessionId;
use weft_core::SessionStatus;
use weft_core::project_profile::directory_profile;
use weft_core::record::MetaPatch;
use weft_core::session::{self, MAX_NAME_CHARS, NameTooLong, Project, SessionMeta};
use weft_core::settings::{SETTINGS_KEY, SettingsOverrides};
use weft_core::store::{ForkPoint, ListCursor, ListFilter, ListQuery, StoreError};

use crate::context::{PlanError, refuse_other_plan};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::model::{
    CleanupRequest, CleanupResponse, CreateSessionRequest, DeleteParams, FailRequest, ForkRequest,
    ListParams, SessionInfo, UpdateSessionRequest,
};
use crate::routes::AppState;
use crate::tenancy::Caller;

/// A session name from a request, trimmed; 422 when it is longer than
/// [`MAX_NAME_CHARS`] (the schema's `maxLength`, counted before trimming).
fn check_name(field: &str, name: &Option<String>) -> Result<Option<String>, ApiError> {
    let Some(n) = name else {
        return Ok(None);
    };
    let chars = n.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(ApiError::unprocessable(format!(
            "{field}: {}",
            NameTooLong { chars }
        )));
    }
    session::check_name(n)
        .map(|n| Some(n.to_string()))
        .map_err(|e| ApiError::unprocessable(format!("{field}: {e}")))
}

/// Resolves `amplifiedDir` inside the server's project directory.
fn resolve_dir(root: &str, raw: Option<&str>) -> Result<Project, ApiError> {
    let raw = raw.unwrap_or(".");
    let root = Path::new(root);
    let candidate: PathBuf = if Path::new(raw).is_absolute() {
        PathBuf::from(raw)
    } else {
        root.join(raw)
    };
    let canonical = std::fs::canonicalize(&candidate).map_err(|_| {
        ApiError::unprocessable(format!(
            "amplifiedDir: {raw:?} does not exist in the server's project directory {}",
            root.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(ApiError::unprocessable(format!(
            "amplifiedDir: {raw:?} is not a directory"
        )));
    }
    let root_c = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if !canonical.starts_with(&root_c) {
        return Err(ApiError::unprocessable(format!(
            "amplifiedDir: {raw:?} is outside the server's project directory {}",
            root.display()
        )));
    }
    Ok(Project::from_dir(&canonical))
}

/// Creates a session (status `created`).
#[utoipa::path(
    post, path = "/api/v1/sessions/", tag = "sessions",
    request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "The new session", body = SessionInfo),
        (status = 422, description = "A field is invalid (named in detail): an unknown or bad settingsOverrides key, a profile the daemon does not run, or an amplifiedDir whose default-profile marker is invalid", body = ErrorBody),
    )
)]
pub(crate) async fn create_session(
    State(core): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateSessionRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let ctx = &core.ctx;
    let project = resolve_dir(&ctx.project.dir, req.amplified_dir.as_deref())?;
    let name = check_name("name", &req.name)?.filter(|n| !n.is_empty());
    let overrides = match req.settings_overrides {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            let o = SettingsOverrides::parse(&map)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
            o.check_modules(&ctx.registry)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
            (!o.is_empty()).then_some(o)
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "settingsOverrides: must be a JSON object",
            ));
        }
    };
    let parent = match &req.parent_session_id {
        Some(raw) => {
            let id = SessionId::parse(raw.as_str())
                .map_err(|e| ApiError::unprocessable(format!("parentSessionId: {e}")))?;
            match core.store().get(&id).await {
                Ok(meta) if caller.can_see(&meta) => Some(meta),
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    return Err(ApiError::unprocessable(format!(
                        "parentSessionId: session {id} not found"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    if let Some(asked) = req.profile_name.as_deref()
        && let Some(detail) = refuse_other_plan(ctx.plans.as_ref(), "profileName", asked, &[])
    {
        return Err(ApiError::unprocessable(detail));
    }
    // No profile named: the directory's default profile, unless the daemon
    // runs one fixed plan.
    let from_dir = match (&req.profile_name, ctx.plans.fixed_plan()) {
        (None, None) => directory_profile(Path::new(&project.dir))
            .map_err(|e| ApiError::unprocessable(format!("amplifiedDir: {e}")))?,
        _ => None,
    };
    let asked = req
        .profile_name
        .clone()
        .or_else(|| from_dir.as_ref().map(|d| d.name.clone()));
    let profile = match ctx.plans.plan(asked.as_deref()).await {
        Ok((_, name)) => name,
        Err(PlanError::UnknownProfile(detail)) => {
            return Err(ApiError::unprocessable(match &from_dir {
                Some(d) => format!(
                    "amplifiedDir: {} names default_profile {:?}, which this server cannot load: {detail}",
                    d.source.display(),
                    d.name
                ),
                None => format!("profileName: {detail}"),
            }));
        }
        Err(PlanError::Unavailable(detail)) => {
            // The profile exists but cannot run yet (no provider, …): the
            // session can still be made; its first prompt reports this.
            tracing::warn!(detail, "creating a session whose plan is not runnable yet");
            asked.clone().unwrap_or_else(|| "base".into())
        }
    };
    let mut meta = SessionMeta::new(SessionId::new_v7(), project, profile);
    meta.name = name;
    meta.description = req.description.filter(|d| !d.trim().is_empty());
    meta.user = Some(ctx.user.clone());
    if let Some(tenant) = &caller.tenant {
        meta.set_tenant(tenant);
    }
    if let Some(parent) = parent {
        meta.parent_id = Some(parent.id.clone());
        meta.trace_id = parent.trace_id.clone();
    }
    if let Some(overrides) = overrides {
        meta.metadata
            .insert(SETTINGS_KEY.into(), overrides.to_value());
        meta.model = overrides.model.clone();
    }
    let meta = core.store().create(meta, Vec::new()).await?;
    Ok((StatusCode::CREATED, Json(core.info(&meta).await)))
}

/// Lists sessions, newest first (all projects). The next page's cursor is
/// in the `x-next-cursor` header.
#[utoipa::path(
    get, path = "/api/v1/sessions/", tag = "sessions",
    params(ListParams),
    responses(
        (status = 200, description = "A page of sessions", body = Vec<SessionInfo>,
            headers(("x-next-cursor" = String, description = "Pass as `cursor` for the next page"))),
        (status = 422, description = "A query parameter is invalid", body = ErrorBody),
    )
)]
pub(crate) async fn list_sessions(
    State(core): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    list_page(&core, &caller, params, None).await
}

/// The sub-agent sessions a session delegated to (its children, each
/// continued conversation once), newest first, in the shape of the
/// sessions list; the next page's cursor is in the `x-next-cursor` header.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/children", tag = "sessions",
    params(("id" = String, Path, description = "Session id of the parent"), ListParams),
    responses(
        (status = 200, description = "A page of the session's child sessions", body = Vec<SessionInfo>,
            headers(("x-next-cursor" = String, description = "Pass as `cursor` for the next page"))),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid", body = ErrorBody),
    )
)]
pub(crate) async fn list_children(
    State(core): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    core.meta(&id).await?;
    list_page(&core, &caller, params, Some(id)).await
}

/// A page of the sessions `params` select (the children of `parent`, when
/// given) that `caller` may see, with the `x-next-cursor` header. For a
/// tenant's token the store's pages are read on until the page is full or
/// the store has no more (the filter is applied here, the same on every
/// backend).
async fn list_page(
    core: &AppState,
    caller: &Caller,
    params: ListParams,
    parent: Option<SessionId>,
) -> Result<(HeaderMap, Json<Vec<SessionInfo>>), ApiError> {
    let mut cursor = match params.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(ListCursor::decode(c).map_err(|e| {
            ApiError::unprocessable(format!("invalid query parameter: cursor: {e}"))
        })?),
        None => None,
    };
    let limit = params.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::unprocessable(
            "invalid query parameter: limit: give a page size from 1 to 500",
        ));
    }
    let filter = ListFilter {
        status: params.status,
        profile: params.profile_name,
        project: params.project.filter(|p| !p.is_empty()),
        top_level_only: params.top_level.unwrap_or(false),
        name_contains: params.name.filter(|n| !n.is_empty()),
        parent_id: parent,
        ..Default::default()
    };
    let mut sessions = Vec::new();
    let next = loop {
        let page = core
            .store()
            .list(&ListQuery {
                filter: filter.clone(),
                cursor: cursor.clone(),
                limit,
            })
            .await?;
        let mut more = page.next_cursor;
        for (i, meta) in page.sessions.iter().enumerate() {
            if !caller.can_see(meta) {
                continue;
            }
            sessions.push(meta.clone());
            if sessions.len() == limit {
                // Full: the next page starts after this one, unless it was
                // the store's last.
                if i + 1 < page.sessions.len() || more.is_some() {
                    more = Some(ListCursor::after(meta));
                }
                break;
            }
        }
        match more {
            Some(next) if sessions.len() < limit => cursor = Some(next),
            other => break other,
        }
    };
    let body: Vec<SessionInfo> =
        futures::future::join_all(sessions.iter().map(|m| core.info(m))).await;
    let mut headers = HeaderMap::new();
    if let Some(next) = next
        && let Ok(value) = HeaderValue::from_str(&next.encode())
    {
        headers.insert("x-next-cursor", value);
    }
    Ok((headers, Json(body)))
}

/// One session.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    )
)]
pub(crate) async fn get_session(
    State(core): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<SessionInfo>, ApiError> {
    let meta = core.meta(&id).await?;
    Ok(Json(core.info(&meta).await))
}

/// Renames a session or changes its description (empty string: clear).
#[utoipa::path(
    patch, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    request_body = UpdateSessionRequest,
    responses(
        (status = 200, description = "The updated session", body = SessionInfo),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
pub(crate) async fn update_session(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<UpdateSessionRequest>,
) -> Result<Json<SessionInfo>, ApiError> {
    let patch = MetaPatch {
        name: check_name("name", &req.name)?,
        description: req.description.map(|d| d.trim().to_string()),
        ..Default::default()
    };
    let meta = core.update_meta(&id, patch).await?;
    Ok(Json(core.info(&meta).await))
}

/// Deletes a session (a running turn is cancelled first).
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), DeleteParams),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Unknown id", body = ErrorBody),
    )
)]
pub(crate) async fn delete_session(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    core.delete(&id, params.with_children).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// created → active.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/start", tag = "lifecycle",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Started"),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "Not created (detail names the status)", body = ErrorBody),
    )
)]
pub(crate) async fn start_session(
    State(core): State<AppState>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    core.transition(&id, SessionStatus::Active, None, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// active → completed.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/complete", tag = "lifecycle",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Completed"),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "Not active, or a turn is running", body = ErrorBody),
    )
)]
pub(crate) async fn complete_session(
    State(core): State<AppState>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    core.transition(&id, SessionStatus::Completed, None, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// active → failed, with the error.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/fail", tag = "lifecycle",
    params(("id" = String, Path, description = "Session id")),
    request_body = FailRequest,
    responses(
        (status = 204, description = "Failed"),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "Not active, or a turn is running", body = ErrorBody),
        (status = 422, description = "errorMessage missing", body = ErrorBody),
    )
)]
pub(crate) async fn fail_session(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<FailRequest>,
) -> Result<StatusCode, ApiError> {
    core.transition(
        &id,
        SessionStatus::Failed,
        Some(req.error_message),
        req.error_details,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// created|active → terminated; a running turn is cancelled and its
/// partial state recorded.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/terminate", tag = "lifecycle",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Terminated"),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "Already ended", body = ErrorBody),
    )
)]
pub(crate) async fn terminate_session(
    State(core): State<AppState>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    core.terminate(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forks a session after a turn (or a seq) into a new session.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/fork", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    request_body = ForkRequest,
    responses(
        (status = 201, description = "The new session", body = SessionInfo),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "No such turn or seq", body = ErrorBody),
    )
)]
pub(crate) async fn fork_session(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<ForkRequest>,
) -> Result<impl IntoResponse, ApiError> {
    core.meta(&id).await?;
    let point = match (req.turn, req.seq) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable(
                "turn, seq: give one of them, not both",
            ));
        }
        (Some(turn), None) => ForkPoint::Turn(turn),
        (None, Some(seq)) => ForkPoint::Seq(seq),
        (None, None) => ForkPoint::End,
    };
    let name = check_name("name", &req.name)?.filter(|n| !n.is_empty());
    let meta = core
        .store()
        .fork(&id, point, None, name)
        .await
        .map_err(|e| match e {
            StoreError::Invalid(m) => ApiError::unprocessable(format!(
                "{}: {m}",
                if req.seq.is_some() { "seq" } else { "turn" }
            )),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(core.info(&meta).await)))
}

/// Removes sessions not updated for some days; never an active one.
#[utoipa::path(
    post, path = "/api/v1/sessions/cleanup", tag = "sessions",
    request_body = CleanupRequest,
    responses(
        (status = 200, description = "What was removed", body = CleanupResponse),
        (status = 422, description = "olderThanDays is invalid", body = ErrorBody),
    )
)]
pub(crate) async fn cleanup_sessions(
    State(core): State<AppState>,
    ApiJson(req): ApiJson<CleanupRequest>,
) -> Result<Json<CleanupResponse>, ApiError> {
    let secs = req
        .older_than_days
        .checked_mul(86_400)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .ok_or_else(|| ApiError::unprocessable("olderThanDays: at most 36500 days"))?;
    let report = core
        .store()
        .cleanup(Duration::from_secs(secs), req.dry_run)
        .await?;
    if !report.dry_run {
        core.forget(&report.removed);
    }
    Ok(Json(CleanupResponse {
        removed_count: report.removed.len(),
        removed: report.removed.iter().map(ToString::to_string).collect(),
        kept_active: report.kept_active.iter().map(ToString::to_string).collect(),
        dry_run: report.dry_run,
    }))
}
