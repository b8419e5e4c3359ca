//! The OpenAPI document (`GET /openapi.json`), generated from the
//! handlers' and types' annotations, plus the conventions every route
//! shares ([`Conventions`]): the optional bearer token, the responses the
//! perimeter, the extractors and the store can give on any route, and the
//! shape of the `{id}`, `{branch}` and `{key}` path segments. schemathesis
//! checks the document against a live daemon (`scripts/schemathesis`).

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, RefOr, Required, Schema};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::model::{
    AgentEntry, AppendMessageRequest, AppliedSettings, BranchDetail, BranchInfo, BranchMessage,
    BranchPromptRequest, CancelResponse, ChatRequest, CleanupRequest, CleanupResponse,
    CollectMailRequest, CollectMailResponse, ContentBlockDoc, CreateSessionRequest, FailRequest,
    ForkRequest, ForkedFromInfo, Health, ImageSourceDoc, LlmOverridesRequest, MailInfo,
    MessageUsage, Multitask, NewBranchRequest, ProfileEntry, RewindRequest, RewindResponse,
    RunRequest, RunResponse, SearchHitInfo, SendMailRequest, SendMessageRequest,
    SendMessageResponse, SessionInfo, SetStateRequest, SettingsOverridesRequest, SplitFromInfo,
    SplitRequest, SseEvent, StateEntry, SystemDatetimeParam, TokenUsage, TranscriptMessage,
    UpdateSessionRequest,
};
use crate::routes::{agentkernel, branches, docs, messages, search, sessions, state};

/// A session id: `weft_core::id::validate_id`'s rule.
pub(crate) const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// No control characters (Rust's `char::is_control`: C0, DEL and C1).
const NO_CONTROL: &str = "\\x00-\\x1f\\x7f-\\x9f";

/// Routes that run as long as their turn or stream: no request timeout.
const LONG_ROUTES: &[&str] = &[
    "/api/v1/sessions/{id}/stream",
    "/api/v1/sessions/{id}/execute",
    "/run",
    "/api/v1/chat",
];

/// Applies what every route shares: the bearer scheme (optional: a
/// tokenless daemon needs none), the path segments' shape, the responses
/// any route can give, and request bodies that may be left out when every
/// field is optional (an empty body counts as `{}`).
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let optional_bodies: Vec<String> = components
            .schemas
            .iter()
            .filter(|(_, schema)| matches!(schema, RefOr::T(Schema::Object(o)) if o.required.is_empty()))
            .map(|(name, _)| format!("#/components/schemas/{name}"))
            .collect();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let long = LONG_ROUTES.contains(&path.as_str());
            for (method, op) in operations(item) {
                shape_path_segments(op);
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    body_conventions(body, &optional_bodies);
                }
                shared_responses(op, method, long);
            }
        }
    }
}

/// The operations of a path item, with their method.
fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// A string schema with these bounds.
fn string_schema(pattern: &str, min: usize, max: usize) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .min_length(Some(min))
            .max_length(Some(max))
            .build(),
    ))
}

/// `{id}`, `{branch}` and `{key}` as the extractors check them (anything
/// else is a 400); query and header values are never null (a parameter
/// is left out instead).
fn shape_path_segments(op: &mut Operation) {
    for param in op.parameters.iter_mut().flatten() {
        let RefOr::T(param) = param else { continue };
        if param.parameter_in != ParameterIn::Path {
            if let Some(RefOr::T(Schema::Object(o))) = param.schema.as_mut()
                && let SchemaType::Array(types) = &o.schema_type
            {
                let kept: Vec<Type> = types
                    .iter()
                    .filter(|t| **t != Type::Null)
                    .cloned()
                    .collect();
                o.schema_type = match kept.as_slice() {
                    [one] => SchemaType::Type(one.clone()),
                    _ => SchemaType::Array(kept),
                };
            }
            continue;
        }
        param.schema = match param.name.as_str() {
            "id" => Some(string_schema(ID_PATTERN, 1, 128)),
            // 1 to 128 characters, not all blank, no control characters.
            "branch" => Some(string_schema(
                &format!("^[^{NO_CONTROL}]*[^\\s{NO_CONTROL}][^{NO_CONTROL}]*$"),
                1,
                128,
            )),
            "key" => Some(string_schema(&format!("^[^{NO_CONTROL}]+$"), 1, 256)),
            _ => continue,
        };
    }
}

/// JSON bodies are `application/json`; a body whose fields are all
/// optional may be left out.
fn body_conventions(body: &mut RequestBody, optional_bodies: &[String]) {
    let all_optional = body.content.values().any(|c| match c {
        RefOr::T(Content {
            schema: Some(RefOr::Ref(r)),
            ..
        }) => optional_bodies.contains(&r.ref_location),
        _ => false,
    });
    body.required = Some(if all_optional {
        Required::False
    } else {
        Required::True
    });
}

/// Adds the responses any route can give, where the route does not
/// document them more precisely itself.
fn shared_responses(op: &mut Operation, method: &str, long: bool) {
    let has_body = op.request_body.is_some();
    let params: Vec<ParameterIn> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p.parameter_in.clone()),
            RefOr::Ref(_) => None,
        })
        .collect();
    let in_path = params.contains(&ParameterIn::Path);
    let in_query = params.contains(&ParameterIn::Query);
    let changes = method != "get";
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "ErrorBody",
                            )))),
                        )
                        .build(),
                )
            });
    };
    if in_path {
        add("400", "A malformed path segment (named in detail)");
        add("404", "Unknown session");
    }
    if has_body {
        add("400", "The body is not valid JSON");
        add("408", "The body did not arrive within the body timeout");
        add(
            "413",
            "The body is over the server's size limit (--body-limit)",
        );
        add(
            "415",
            "The body is not sent as `Content-Type: application/json`",
        );
        add("422", "A field of the body is invalid (named in detail)");
    } else if changes {
        add(
            "415",
            "A body was sent without `Content-Type: application/json`",
        );
    }
    if changes && in_path {
        add(
            "409",
            "Another writer changed the session meanwhile, or its status does not allow this",
        );
    }
    if in_query {
        add("422", "A query parameter is invalid (named in detail)");
    }
    add(
        "401",
        "The server has a token and the request does not carry it as `Authorization: Bearer <token>`",
    );
    add(
        "403",
        "Refused: a cross-origin request (Origin / Sec-Fetch-Site), or an action that needs approval",
    );
    add(
        "421",
        "The Host header names neither a loopback address nor the server's configured name",
    );
    add(
        "500",
        "The server failed (storage); detail says what failed, the daemon's log has the rest",
    );
    if !long {
        add("504", "The request took longer than the request timeout");
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "weft",
        description = "weft's daemon: the amplifierd v1 session API (camelCase JSON, errors as {\"detail\"}), SSE streams resumable with Last-Event-ID, and agentkernel's /run. When the server has a token every request needs `Authorization: Bearer <token>`; without one (the default on loopback) none. Request bodies are JSON (`Content-Type: application/json`); a body whose fields are all optional may be left out."
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
        sessions::list_children,
        sessions::cleanup_sessions,
        messages::append_message,
        messages::transcript,
        messages::send_message,
        messages::execute,
        messages::cancel,
        messages::stream,
        branches::list_branches,
        branches::new_branch,
        branches::get_branch,
        branches::delete_branch,
        branches::split_branch,
        branches::set_default_branch,
        branches::rewind,
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
        search::search,
        openapi,
        agentkernel::run,
        agentkernel::chat,
        agentkernel::agents,
        agentkernel::health,
    ),
    components(schemas(
        ErrorBody, SessionInfo, TokenUsage, ForkedFromInfo, CreateSessionRequest,
        AppliedSettings, SettingsOverridesRequest, LlmOverridesRequest,
        ContentBlockDoc, ImageSourceDoc, MessageUsage, SseEvent,
        UpdateSessionRequest, FailRequest, AppendMessageRequest,
        TranscriptMessage, SendMessageRequest, SendMessageResponse, ForkRequest,
        CleanupRequest, CleanupResponse, ProfileEntry, RunRequest, ChatRequest, RunResponse,
        AgentEntry, Health, Multitask, BranchInfo, BranchDetail, SplitFromInfo, BranchMessage,
        NewBranchRequest, SystemDatetimeParam, SplitRequest, RewindRequest, RewindResponse, BranchPromptRequest, SendMailRequest, MailInfo,
        CollectMailRequest, CollectMailResponse, StateEntry, SetStateRequest, SearchHitInfo, CancelResponse,
    )),
    modifiers(&Conventions),
    security((), ("bearer" = [])),
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

/// This API's OpenAPI document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Json(DOC.get_or_init(ApiDoc::openapi).clone())
}
