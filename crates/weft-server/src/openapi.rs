//! The OpenAPI document (`GET /openapi.json`), generated from the
//! handlers' and types' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::model::{
    AgentEntry, AppendMessageRequest, BranchDetail, BranchInfo, BranchMessage, BranchPromptRequest,
    ChatRequest, CleanupRequest, CleanupResponse, CollectMailRequest, CollectMailResponse,
    CreateSessionRequest, FailRequest, ForkRequest, ForkedFromInfo, Health, MailInfo, Multitask,
    NewBranchRequest, ProfileEntry, RunRequest, RunResponse, SendMailRequest, SendMessageRequest,
    SendMessageResponse, SessionInfo, SetStateRequest, SplitFromInfo, SplitRequest, StateEntry,
    TokenUsage, TranscriptMessage, UpdateSessionRequest,
};
use crate::routes::{agentkernel, branches, docs, messages, sessions, state};

/// Adds the bearer-token scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "weft",
        description = "weft's daemon: the amplifierd v1 session API (camelCase JSON, errors as {\"detail\"}), SSE streams resumable with Last-Event-ID, and agentkernel's /run. When the server has a token every request needs `Authorization: Bearer <token>`."
    ),
    paths(
        sessions::create_session,
        sessions::list_sessions,
        sessions::get_session,
        sessions::update_session,
        sessions::delete_session,
        sessions::start_session,
        sessions::complete_session,
        sessions::fail_session,
        sessions::terminate_session,
        sessions::fork_session,
        sessions::cleanup_sessions,
        messages::append_message,
        messages::transcript,
        messages::send_message,
        messages::execute,
        messages::stream,
        branches::list_branches,
        branches::new_branch,
        branches::get_branch,
        branches::delete_branch,
        branches::split_branch,
        branches::set_default_branch,
        branches::branch_transcript,
        branches::branch_send_message,
        branches::send_mail,
        branches::list_mail,
        branches::collect_mail,
        branches::concat_messages,
        state::all_state,
        state::clear_state,
        state::get_state,
        state::put_state,
        state::delete_state,
        docs::profiles,
        docs::openapi,
        agentkernel::run,
        agentkernel::chat,
        agentkernel::agents,
        agentkernel::health,
    ),
    components(schemas(
        ErrorBody, SessionInfo, TokenUsage, ForkedFromInfo, CreateSessionRequest,
        UpdateSessionRequest, FailRequest, AppendMessageRequest,
        TranscriptMessage, SendMessageRequest, SendMessageResponse, ForkRequest,
        CleanupRequest, CleanupResponse, ProfileEntry, RunRequest, ChatRequest, RunResponse,
        AgentEntry, Health, Multitask, BranchInfo, BranchDetail, SplitFromInfo, BranchMessage,
        NewBranchRequest, SplitRequest, BranchPromptRequest, SendMailRequest, MailInfo,
        CollectMailRequest, CollectMailResponse, StateEntry, SetStateRequest,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "sessions", description = "Sessions: create, list, show, rename, delete, fork, cleanup"),
        (name = "lifecycle", description = "created → active → completed | failed | terminated"),
        (name = "messages", description = "Transcript, prompts and streams"),
        (name = "branches", description = "Branches of a session (LionAGI): make, split, remove, default, transcript, turns per branch, concat_messages"),
        (name = "mail", description = "Mail between branches: send, list pending, collect"),
        (name = "state", description = "Session state with app:/user:/temp: scopes (agentkernel)"),
        (name = "agentkernel", description = "agentkernel-compatible endpoints"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;
