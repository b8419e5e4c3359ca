//! Branches and mail (LionAGI `Session` semantics): list, make, show,
//! remove, split and pick the default branch; a branch's transcript and
//! background turns on it; mail between branches; and the messages of
//! several branches in log order (`concat_messages`).
//!
//! Every change goes through [`crate::live::Core::update`] (the live
//! session when this daemon has one, else the store), so it is a record in
//! the session log on every backend.
//!
//! Errors: a branch named in the URL path that the session does not have
//! is a 404; a branch named in a body or query field (`from`, `to`,
//! `branches`) is a 422 naming the field. A taken name, removing the last
//! branch, or disturbing a branch that runs a turn is a 409.

use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use weft_core::branches::{self, NewBranch};
use weft_core::message::{ContentBlock, Role};
use weft_core::record::RecordKind;
use weft_core::view::SessionView;
use weft_core::{BranchId, Message, SessionId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PathBranch, PathId, PathPair};
use crate::live::{Need, Prompt};
use crate::model::{
    BranchDetail, BranchInfo, BranchMessage, BranchPromptRequest, CollectMailRequest,
    CollectMailResponse, ConcatParams, LimitParams, MailInfo, MailParams, MessageContent,
    MultitaskParams, NewBranchRequest, RemoveBranchParams, RewindRequest, RewindResponse,
    SendMailRequest, SendMessageResponse, SplitRequest, TranscriptMessage,
};
use crate::routes::AppState;
use crate::routes::messages::{accepted, transcript_of};

/// The API view of every branch of `view`.
fn branch_infos(core: &AppState, view: &SessionView) -> Vec<BranchInfo> {
    view.branches
        .iter()
        .map(|b| {
            let (running, queued) = core.branch_status(&view.meta.id, &b.branch.id);
            BranchInfo::from_view(
                b,
                b.branch.id == view.meta.default_branch,
                view.inbox(&b.branch.id).len(),
                running,
                queued,
            )
        })
        .collect()
}

/// The session's view, after checking it exists (404).
async fn view_of(core: &AppState, id: &SessionId) -> Result<SessionView, ApiError> {
    core.meta(id).await?;
    Ok(core.store().view(id).await?)
}

/// The id of the branch `name` (id or name) names in `view`; `field` as in
/// [`ApiError::unknown_branch`].
fn branch_id(view: &SessionView, name: &str, field: Option<&str>) -> Result<BranchId, ApiError> {
    view.branch(name)
        .map(|b| b.branch.id.clone())
        .ok_or_else(|| ApiError::unknown_branch(&view.meta.id, name, field))
}

/// A message of a new branch's `messages` field.
fn loaded_message(index: usize, m: BranchMessage) -> Result<Message, ApiError> {
    let field = format!("messages[{index}]");
    let role = match m.role.as_deref() {
        None | Some("") => Role::User,
        Some(r) => {
            Role::from_str(r).map_err(|e| ApiError::unprocessable(format!("{field}.role: {e}")))?
        }
    };
    let content = match m.content {
        MessageContent::Text(text) => vec![ContentBlock::text(text)],
        MessageContent::Blocks(blocks) if blocks.is_empty() => {
            return Err(ApiError::unprocessable(format!(
                "{field}.content: give a string or at least one content block"
            )));
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    // The branch is set when the branch is made.
    let mut message = Message::new(BranchId::main(), role, content);
    message.sender = m.sender;
    Ok(message)
}

/// A session's branches, in creation order.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/branches", tag = "branches",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The branches", body = Vec<BranchInfo>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    )
)]
pub(crate) async fn list_branches(
    State(core): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Vec<BranchInfo>>, ApiError> {
    let view = view_of(&core, &id).await?;
    Ok(Json(branch_infos(&core, &view)))
}

/// Makes a branch (optionally with a system message, loaded messages,
/// tools and a model/provider of its own).
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/branches", tag = "branches",
    params(("id" = String, Path, description = "Session id")),
    request_body = NewBranchRequest,
    responses(
        (status = 201, description = "The new branch", body = BranchInfo),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in detail)", body = ErrorBody),
    )
)]
pub(crate) async fn new_branch(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<NewBranchRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| loaded_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = NewBranch {
        name: req.name,
        system: req.system.filter(|s| !s.trim().is_empty()),
        messages,
        tools: req.tools,
        model: req.model.filter(|m| !m.trim().is_empty()),
        provider: req.provider.filter(|p| !p.trim().is_empty()),
        system_sender: req.system_sender,
        system_datetime: req.system_datetime.map(Into::into),
        user: req.user,
    };
    let info = core
        .update(&id, |view, _| {
            let (branch, kinds) = branches::new_branch(view, spec.clone(), Utc::now())
                .map_err(|e| ApiError::from_branch(&id, e, Some("name"), "name"))?;
            let count = kinds
                .iter()
                .filter(|k| matches!(k, RecordKind::Message(_)))
                .count();
            Ok((
                BranchInfo::from_branch(&branch, count, false, 0, false, 0),
                kinds,
            ))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// One branch with its messages.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/branches/{branch}", tag = "branches",
    params(
        ("id" = String, Path, description = "Session id"),
        ("branch" = String, Path, description = "Branch id or name"),
    ),
    responses(
        (status = 200, description = "The branch and its messages", body = BranchDetail),
        (status = 404, description = "Unknown session or branch", body = ErrorBody),
    )
)]
pub(crate) async fn get_branch(
    State(core): State<AppState>,
    PathBranch(PathPair { id, name }): PathBranch,
) -> Result<Json<BranchDetail>, ApiError> {
    let view = view_of(&core, &id).await?;
    let b = view
        .branch(&name)
        .ok_or_else(|| ApiError::unknown_branch(&id, &name, None))?;
    let (running, queued) = core.branch_status(&id, &b.branch.id);
    Ok(Json(BranchDetail {
        branch: BranchInfo::from_view(
            b,
            b.branch.id == view.meta.default_branch,
            view.inbox(&b.branch.id).len(),
            running,
            queued,
        ),
        messages: transcript_of(&b.messages, None),
    }))
}

/// Removes a branch (its messages stay in the log; undelivered mail for it
/// is dropped). Removing the default makes the first remaining branch the
/// default; the last branch cannot be removed. `?delete=true` deletes it
/// too: its messages leave every view and export and its undelivered mail
/// is dropped (a record; the log keeps them).
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}/branches/{branch}", tag = "branches",
    params(
        ("id" = String, Path, description = "Session id"),
        ("branch" = String, Path, description = "Branch id or name"),
        RemoveBranchParams,
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Unknown session or branch", body = ErrorBody),
        (status = 409, description = "The last branch, or a turn runs (or waits) on it", body = ErrorBody),
    )
)]
pub(crate) async fn delete_branch(
    State(core): State<AppState>,
    PathBranch(PathPair { id, name }): PathBranch,
    ApiQuery(params): ApiQuery<RemoveBranchParams>,
) -> Result<StatusCode, ApiError> {
    core.update(&id, |view, _| {
        let kinds = branches::remove_branch(view, &name, params.delete)
            .map_err(|e| ApiError::from_branch(&id, e, None, "branch"))?;
        Ok(((), kinds))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Clones a branch into a new one (LionAGI `split`): its settings once,
/// every message with a new id, `metadata.clone_from` = the original id,
/// `sender` = the source branch, `recipient` = the new one.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/branches/{branch}/split", tag = "branches",
    params(
        ("id" = String, Path, description = "Session id"),
        ("branch" = String, Path, description = "The branch to clone (id or name)"),
    ),
    request_body = SplitRequest,
    responses(
        (status = 201, description = "The new branch", body = BranchInfo),
        (status = 404, description = "Unknown session or branch", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "The name is invalid", body = ErrorBody),
    )
)]
pub(crate) async fn split_branch(
    State(core): State<AppState>,
    PathBranch(PathPair { id, name }): PathBranch,
    ApiJson(req): ApiJson<SplitRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let new_name = req.name.filter(|n| !n.trim().is_empty());
    let info = core
        .update(&id, |view, _| {
            let (branch, kinds) = branches::split(view, &name, new_name.clone(), Utc::now())
                .map_err(|e| ApiError::from_branch(&id, e, None, "name"))?;
            let count = kinds
                .iter()
                .filter(|k| matches!(k, RecordKind::Message(_)))
                .count();
            Ok((
                BranchInfo::from_branch(&branch, count, false, 0, false, 0),
                kinds,
            ))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Takes back (undoes) the last turns of a branch: they leave its
/// conversation (the model's context, transcripts, exports); the log keeps
/// them. Refused while the branch runs a turn.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/rewind", tag = "branches",
    params(("id" = String, Path, description = "Session id")),
    request_body = RewindRequest,
    responses(
        (status = 200, description = "What left the conversation", body = RewindResponse),
        (status = 404, description = "Unknown session or branch", body = ErrorBody),
        (status = 409, description = "The branch is running a turn, or has fewer turns", body = ErrorBody),
        (status = 422, description = "turns is not a whole number ≥ 1", body = ErrorBody),
    )
)]
pub(crate) async fn rewind(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<RewindRequest>,
) -> Result<Json<RewindResponse>, ApiError> {
    if req.turns == 0 {
        return Err(ApiError::unprocessable("turns: rewind at least one turn"));
    }
    let branch = req.branch.filter(|b| !b.trim().is_empty());
    let done = core
        .update(&id, |view, _| {
            // More turns than the branch has: a conflict with its state.
            let (done, kinds) = weft_core::rewind::rewind(view, branch.as_deref(), req.turns)
                .map_err(|e| match e {
                    weft_core::branches::BranchError::Invalid(m) => {
                        ApiError::conflict(format!("turns: {m}"))
                    }
                    other => ApiError::from_branch(&id, other, None, "turns"),
                })?;
            Ok((done, kinds))
        })
        .await?;
    Ok(Json(RewindResponse {
        branch: done.branch.to_string(),
        to_seq: done.to_seq,
        turns: done.turns,
        messages: done.messages,
    }))
}

/// Makes a branch the session's default (prompts without a branch run on
/// it; the session transcript shows it).
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/branches/{branch}/default", tag = "branches",
    params(
        ("id" = String, Path, description = "Session id"),
        ("branch" = String, Path, description = "Branch id or name"),
    ),
    responses(
        (status = 204, description = "It is the default now"),
        (status = 404, description = "Unknown session or branch", body = ErrorBody),
    )
)]
pub(crate) async fn set_default_branch(
    State(core): State<AppState>,
    PathBranch(PathPair { id, name }): PathBranch,
) -> Result<StatusCode, ApiError> {
    core.update(&id, |view, _| {
        let kinds = branches::change_default_branch(view, &name)
            .map_err(|e| ApiError::from_branch(&id, e, None, "branch"))?;
        Ok(((), kinds))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A branch's transcript (the session transcript's shape); `?limit=N`
/// gives the last N messages.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/branches/{branch}/transcript", tag = "branches",
    params(
        ("id" = String, Path, description = "Session id"),
        ("branch" = String, Path, description = "Branch id or name"),
        LimitParams,
    ),
    responses(
        (status = 200, description = "The messages, oldest first", body = Vec<TranscriptMessage>),
        (status = 404, description = "Unknown session or branch", body = ErrorBody),
    )
)]
pub(crate) async fn branch_transcript(
    State(core): State<AppState>,
    PathBranch(PathPair { id, name }): PathBranch,
    ApiQuery(params): ApiQuery<LimitParams>,
) -> Result<Json<Vec<TranscriptMessage>>, ApiError> {
    let view = view_of(&core, &id).await?;
    let b = view
        .branch(&name)
        .ok_or_else(|| ApiError::unknown_branch(&id, &name, None))?;
    Ok(Json(transcript_of(&b.messages, params.limit)))
}

/// Runs the model on a prompt on this branch in the background (follow
/// it on `/stream`). Branches run their turns concurrently; the multitask
/// policy applies per branch.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/branches/{branch}/send-message", tag = "branches",
    params(
        ("id" = String, Path, description = "Session id"),
        ("branch" = String, Path, description = "Branch id or name"),
        MultitaskParams,
    ),
    request_body = BranchPromptRequest,
    responses(
        (status = 202, description = "Accepted: executing, queued or interrupting", body = SendMessageResponse),
        (status = 404, description = "Unknown session or branch", body = ErrorBody),
        (status = 409, description = "Not active, or a turn runs on this branch (without ?multitask)", body = ErrorBody),
        (status = 422, description = "An empty prompt, or a bad ?multitask", body = ErrorBody),
        (status = 502, description = "The provider failed", body = ErrorBody),
        (status = 503, description = "No provider is configured for the session's plan", body = ErrorBody),
    )
)]
pub(crate) async fn branch_send_message(
    State(core): State<AppState>,
    PathBranch(PathPair { id, name }): PathBranch,
    ApiQuery(params): ApiQuery<MultitaskParams>,
    ApiJson(req): ApiJson<BranchPromptRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let submitted = core
        .submit(
            &id,
            Prompt {
                text: req.content,
                branch: Some(name),
                branch_in_path: true,
                policy: params.multitask.unwrap_or_default(),
                need: Need::Active,
                create: None,
                run_as: None,
                want_result: false,
                response_format: None,
            },
        )
        .await?;
    Ok(accepted(&id, &submitted))
}

/// Sends mail from one branch to another, or to every other branch. It
/// waits in the recipients' inboxes until collected.
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/mail", tag = "mail",
    params(("id" = String, Path, description = "Session id")),
    request_body = SendMailRequest,
    responses(
        (status = 201, description = "The mail, waiting for its recipients", body = MailInfo),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "An unknown branch (from, to) or a bad field, named in detail", body = ErrorBody),
    )
)]
pub(crate) async fn send_mail(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<SendMailRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let to = match (req.to.filter(|t| !t.trim().is_empty()), req.broadcast) {
        (Some(_), true) => {
            return Err(ApiError::unprocessable(
                "to, broadcast: give a recipient or broadcast: true, not both",
            ));
        }
        (None, false) => {
            return Err(ApiError::unprocessable(
                "to: name the receiving branch, or set broadcast: true to send to every other branch",
            ));
        }
        (to, _) => to,
    };
    let from = req.from;
    let info = core
        .update(&id, |view, _| {
            let sender = branch_id(view, &from, Some("from"))?;
            if let Some(to) = &to {
                branch_id(view, to, Some("to"))?;
            } else if view.branches.iter().all(|b| b.branch.id == sender) {
                return Err(ApiError::unprocessable(format!(
                    "broadcast: session {id} has no other branch to send to"
                )));
            }
            let (mail, kinds) = branches::send_mail(
                view,
                &from,
                to.as_deref(),
                req.category,
                req.item.clone(),
                Utc::now(),
            )
            .map_err(|e| ApiError::from_branch(&id, e, Some("to"), "item"))?;
            // The batch is this one record, right after the head read.
            let seq = view.meta.last_seq + 1;
            Ok((MailInfo::from_mail(&mail, seq, &mail.to), kinds))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Mail waiting to be collected (`?to=` only for one branch), in send
/// order.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/mail", tag = "mail",
    params(("id" = String, Path, description = "Session id"), MailParams),
    responses(
        (status = 200, description = "The pending mail", body = Vec<MailInfo>),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "Unknown branch in ?to", body = ErrorBody),
    )
)]
pub(crate) async fn list_mail(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<MailParams>,
) -> Result<Json<Vec<MailInfo>>, ApiError> {
    let view = view_of(&core, &id).await?;
    let to = match params.to.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) => Some(branch_id(&view, t, Some("invalid query parameter: to"))?),
        None => None,
    };
    Ok(Json(
        view.mail
            .iter()
            .filter(|p| to.as_ref().is_none_or(|t| p.waiting.contains(t)))
            .map(MailInfo::from_pending)
            .collect(),
    ))
}

/// Delivers waiting mail (LionAGI `collect` / `collect_all`), for one
/// recipient (`to`) or all, from one sender (`from`) or all, in send order
/// per sender: message mail enters the recipient's conversation, tool and
/// model mail change its settings. Collecting for all branches leaves the
/// mail of branches running a turn in their inboxes (`held`).
#[utoipa::path(
    post, path = "/api/v1/sessions/{id}/mail/collect", tag = "mail",
    params(("id" = String, Path, description = "Session id")),
    request_body = CollectMailRequest,
    responses(
        (status = 200, description = "How many deliveries were made", body = CollectMailResponse),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 409, description = "`to` runs a turn: its mail is delivered between turns", body = ErrorBody),
        (status = 422, description = "An unknown branch (from, to), named in detail", body = ErrorBody),
    )
)]
pub(crate) async fn collect_mail(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiJson(req): ApiJson<CollectMailRequest>,
) -> Result<Json<CollectMailResponse>, ApiError> {
    let to = req.to.filter(|t| !t.trim().is_empty());
    let from = req.from.filter(|f| !f.trim().is_empty());
    let response = core
        .update(&id, |view, busy| {
            let sender = match &from {
                Some(f) => Some(branch_id(view, f, Some("from"))?),
                None => None,
            };
            let recipient = match &to {
                Some(t) => Some(branch_id(view, t, Some("to"))?),
                None => None,
            };
            let map = |e| ApiError::from_branch(&id, e, Some("to"), "to");
            let now = Utc::now();
            let mut held: Vec<BranchId> = Vec::new();
            if recipient.is_none() {
                for p in &view.mail {
                    if sender.as_ref().is_some_and(|s| s != &p.mail.from) {
                        continue;
                    }
                    for w in &p.waiting {
                        if busy.contains(w) && !held.contains(w) {
                            held.push(w.clone());
                        }
                    }
                }
            }
            let (delivered, kinds) = if held.is_empty() {
                branches::collect_mail(view, to.as_deref(), from.as_deref(), now).map_err(map)?
            } else {
                // Branch by branch, leaving out the busy ones.
                let mut delivered = 0;
                let mut kinds = Vec::new();
                for b in view
                    .branches
                    .iter()
                    .filter(|b| !held.contains(&b.branch.id))
                {
                    let (n, more) = branches::collect_mail(
                        view,
                        Some(b.branch.id.as_str()),
                        from.as_deref(),
                        now,
                    )
                    .map_err(map)?;
                    delivered += n;
                    kinds.extend(more);
                }
                (delivered, kinds)
            };
            let held = held
                .iter()
                .map(|b| {
                    view.branch(b.as_str())
                        .map_or_else(|| b.to_string(), |v| v.branch.name.clone())
                })
                .collect();
            Ok((CollectMailResponse { delivered, held }, kinds))
        })
        .await?;
    Ok(Json(response))
}

/// The messages of several branches (default: all) in log order, each
/// with its seq and branch (LionAGI `concat_messages`).
/// `?exclude_clone=true` leaves out messages cloned by a split,
/// `?exclude_load=true` messages loaded into a branch.
#[utoipa::path(
    get, path = "/api/v1/sessions/{id}/messages", tag = "branches",
    params(("id" = String, Path, description = "Session id"), ConcatParams),
    responses(
        (status = 200, description = "The messages, in log order", body = Vec<TranscriptMessage>),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 422, description = "Unknown branch in ?branches", body = ErrorBody),
    )
)]
pub(crate) async fn concat_messages(
    State(core): State<AppState>,
    PathId(id): PathId,
    ApiQuery(params): ApiQuery<ConcatParams>,
) -> Result<Json<Vec<TranscriptMessage>>, ApiError> {
    let view = view_of(&core, &id).await?;
    let names: Option<Vec<String>> = params
        .branches
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|names| !names.is_empty());
    let messages = branches::concat_messages(
        &view,
        names.as_deref(),
        params.exclude_clone,
        params.exclude_load,
    )
    .map_err(|e| {
        ApiError::from_branch(
            &id,
            e,
            Some("invalid query parameter: branches"),
            "invalid query parameter: branches",
        )
    })?;
    Ok(Json(
        messages
            .iter()
            .map(|m| TranscriptMessage::from_message(m.seq, &m.message))
            .collect(),
    ))
}
