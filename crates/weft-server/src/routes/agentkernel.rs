//! agentkernel's API on the same server: `POST /run`, `POST /api/v1/chat`,
//! `GET /api/v1/agents`, `GET /health`.
//!
//! `agent` names a profile first; a name that is not a profile names a
//! sub-agent of the default profile (of the session's profile, for a
//! session that exists), the built-in `assistant` included (a daemon that
//! runs one mount plan takes only that plan's name or one of its
//! sub-agents: anything else is a 422, never silently ignored). The turn
//! runs with that agent's system prompt, providers and tools; a new
//! session records it as `agentName`. `agent` is honoured on every call:
//! agents take turns in one session (agentkernel's multi-agent sessions),
//! each with its own plan, all on the session's shared history and state.
//! Without `agent` the session runs its own plan. `session_id` continues
//! that session — whatever its status; an ended one is resumed — or, when
//! no session has that id, creates it. The call waits for the answer.

use axum::Json;
use axum::extract::State;
use weft_core::profiles::list_profiles;
use weft_core::{ResponseFormat, SessionId};

use crate::context::{PlanError, refuse_other_plan};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, parse_session_id};
use crate::live::{Need, NewSession, Prompt};
use crate::model::{AgentEntry, ChatRequest, Health, MultitaskParams, RunRequest, RunResponse};
use crate::routes::AppState;
use crate::routes::messages::response_format;
use crate::tenancy::Caller;

/// What `/run` and `/api/v1/chat` ask for, whatever their field names.
struct Ask {
    agent: Option<String>,
    prompt: Option<String>,
    session_id: Option<String>,
}

async fn run_prompt(
    core: &AppState,
    caller: &Caller,
    ask: Ask,
    params: MultitaskParams,
    prompt_field: &str,
    response_format: Option<ResponseFormat>,
) -> Result<RunResponse, ApiError> {
    let Ask {
        agent,
        prompt,
        session_id,
    } = ask;
    let Some(prompt) = prompt.filter(|p| !p.trim().is_empty()) else {
        return Err(ApiError::unprocessable(format!(
            "{prompt_field}: required, the prompt to run"
        )));
    };
    let id = match session_id.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => parse_session_id(raw)
            .map_err(|e| ApiError::unprocessable(format!("session_id: {}", e.detail)))?,
        None => SessionId::new_v7(),
    };
    // Another tenant's session is as missing as on every other route
    // (not created over either).
    match core.store().get(&id).await {
        Ok(meta) if !caller.can_see(&meta) => return Err(Caller::hidden(&id)),
        _ => {}
    }
    let mut create = NewSession {
        tenant: caller.tenant.clone(),
        ..Default::default()
    };
    let plans = core.ctx.plans.as_ref();
    let agent = agent.filter(|a| !a.is_empty());
    let named = agent.is_some();
    match agent {
        None => {}
        // One mount plan: `agent` may name it or one of its sub-agents.
        Some(agent) if plans.fixed_plan().is_some() => {
            let (plan, _) = plans
                .plan(None)
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
            let agents: Vec<String> = plan.all_agents().into_iter().map(|(n, _)| n).collect();
            if let Some(detail) = refuse_other_plan(plans, "agent", &agent, &agents) {
                return Err(ApiError::unprocessable(detail));
            }
            if agents.contains(&agent) {
                create.agent = Some(agent);
            }
        }
        Some(agent) => match plans.plan(Some(&agent)).await {
            Ok(_) => create.profile = Some(agent),
            Err(PlanError::UnknownProfile(_)) => create.agent = Some(agent),
            Err(PlanError::Unavailable(m)) => return Err(ApiError::unavailable(m)),
        },
    }
    let submitted = core
        .submit(
            &id,
            Prompt {
                text: prompt,
                branch: None,
                branch_in_path: false,
                policy: params.multitask.unwrap_or_default(),
                need: Need::Any,
                run_as: named.then(|| create.clone()),
                create: Some(create),
                want_result: true,
                response_format,
            },
        )
        .await?;
    let done = submitted
        .done
        .ok_or_else(|| ApiError::internal("the turn's result was not kept"))?;
    let answer = done
        .await
        .map_err(|_| ApiError::internal("the turn ended without a result"))??;
    Ok(RunResponse {
        result: answer.text,
        session_id: id.to_string(),
        structured: answer.structured,
    })
}

/// Runs a prompt and answers with the result (agentkernel).
#[utoipa::path(
    post, path = "/run", tag = "agentkernel",
    params(MultitaskParams),
    request_body = RunRequest,
    responses(
        (status = 200, description = "The answer", body = RunResponse),
        (status = 404, description = "Unknown agent, or session_id names a session of another tenant", body = ErrorBody),
        (status = 409, description = "A turn is running in that session, or it was cancelled", body = ErrorBody),
        (status = 422, description = "message/prompt missing, a bad session_id, an invalid response_format, or (a daemon that runs one mount plan) another agent", body = ErrorBody),
        (status = 502, description = "The provider failed, or the answer did not match response_format after one repair", body = ErrorBody),
        (status = 503, description = "No provider is configured for the plan", body = ErrorBody),
    )
)]
pub(crate) async fn run(
    State(core): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<MultitaskParams>,
    ApiJson(req): ApiJson<RunRequest>,
) -> Result<Json<RunResponse>, ApiError> {
    let prompt = req.message.or(req.prompt);
    let format = response_format(req.response_format)?;
    run_prompt(
        &core,
        &caller,
        Ask {
            agent: req.agent,
            prompt,
            session_id: req.session_id,
        },
        params,
        "message",
        format,
    )
    .await
    .map(Json)
}

/// Runs a prompt and answers with the result (agentkernel's chat).
#[utoipa::path(
    post, path = "/api/v1/chat", tag = "agentkernel",
    params(MultitaskParams),
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The answer", body = RunResponse),
        (status = 404, description = "Unknown agent, or session_id names a session of another tenant", body = ErrorBody),
        (status = 409, description = "A turn is running in that session", body = ErrorBody),
        (status = 422, description = "prompt missing, a bad session_id, an invalid response_format, or (a daemon that runs one mount plan) another agent", body = ErrorBody),
        (status = 502, description = "The provider failed, or the answer did not match response_format after one repair", body = ErrorBody),
        (status = 503, description = "No provider is configured for the plan", body = ErrorBody),
    )
)]
pub(crate) async fn chat(
    State(core): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<MultitaskParams>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Json<RunResponse>, ApiError> {
    let format = response_format(req.response_format)?;
    run_prompt(
        &core,
        &caller,
        Ask {
            agent: req.agent,
            prompt: req.prompt,
            session_id: req.session_id,
        },
        params,
        "prompt",
        format,
    )
    .await
    .map(Json)
}

/// The agents `/run` accepts: profiles, then the default profile's
/// sub-agents (the built-in `assistant` among them).
#[utoipa::path(
    get, path = "/api/v1/agents", tag = "agentkernel",
    responses((status = 200, description = "The agents", body = Vec<AgentEntry>))
)]
pub(crate) async fn agents(State(core): State<AppState>) -> Json<Vec<AgentEntry>> {
    let mut out: Vec<AgentEntry> = list_profiles(&core.ctx.home)
        .into_iter()
        .map(|p| AgentEntry {
            name: p.name,
            kind: "profile".into(),
            description: p.description,
        })
        .collect();
    if let Ok((plan, _)) = core.ctx.plans.plan(None).await {
        out.extend(
            plan.all_agents()
                .into_iter()
                .map(|(name, spec)| AgentEntry {
                    name,
                    kind: "agent".into(),
                    description: spec.description,
                }),
        );
    }
    Json(out)
}

/// Liveness and load.
#[utoipa::path(
    get, path = "/health", tag = "agentkernel",
    responses((status = 200, description = "The server is up", body = Health))
)]
pub(crate) async fn health(State(core): State<AppState>) -> Json<Health> {
    let (live, running) = core.load();
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        store: core.store().kind().into(),
        live_sessions: live,
        running_turns: running,
    })
}
