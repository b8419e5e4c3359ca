//! # weft-server
//!
//! weft's daemon: the amplifierd v1 session API under `/api/v1/sessions`
//! (camelCase JSON, errors as `{"detail": "..."}`), SSE streams whose
//! durable events carry the session log's `seq` as their id (so a client
//! resumes with `Last-Event-ID`), agentkernel's `POST /run`,
//! `POST /api/v1/chat`, `GET /api/v1/agents` and `GET /health`, and an
//! OpenAPI document at `/openapi.json`, and a web UI at `/` (its files
//! embedded in the binary; see `web`).
//!
//! Sessions have branches (LionAGI: make, split, remove, pick the default,
//! run turns on a branch — concurrently across branches), mail between
//! branches, the messages of several branches in log order, and keyed
//! state with `app:`/`user:`/`temp:` scopes (agentkernel), all under
//! `/api/v1/sessions/{id}/…` and all records of the session log.
//!
//! The server knows nothing of backends, providers or terminals: the
//! embedder hands it a [`ServerContext`] (a store, a module registry, a
//! [`PlanSource`] that turns profile names into mount plans, the project,
//! the approval policy). The CLI's `weft serve` builds one over the same
//! store and configuration as every other `weft` command.
//!
//! ```no_run
//! # async fn demo(ctx: weft_server::ServerContext) -> Result<(), weft_server::ServerError> {
//! let config = weft_server::ServerConfig::default(); // 127.0.0.1:8420
//! weft_server::serve(config, ctx, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Safety: it binds 127.0.0.1 by default and refuses a non-loopback
//! address without a token; with a token every request needs
//! `Authorization: Bearer <token>` (compared in constant time). Bodies are
//! limited (1 MiB by default), ids are validated on every path, plain
//! requests time out, and shutdown cancels running turns, lets them record
//! their partial state, and ends every stream.
//!
//! Tenants ([`tokens`], `tenancy`): with a token file
//! ([`ServerConfig::tokens`], made by `weft token create`) each token has a
//! tenant and a [`Scope`]; sessions record their tenant, another tenant's
//! session answers 404 exactly as a missing one on every session route,
//! lists are filtered, `read` tokens only GET, cleanup is admin-only, and
//! admin tokens (and the single `--token`) see everything.
//!
//! Web pages cannot drive it (cross-site requests, DNS rebinding), on every
//! route and before authentication:
//! - a request must be addressed (`Host`) to a loopback name or address, the
//!   address the server is bound to or reached on, or a name in
//!   [`ServerConfig::public_hosts`]: else **421**;
//! - a request that may change state (not GET/HEAD/OPTIONS) from another
//!   `Origin` than the server's own (`http://` + its `Host`), or marked
//!   `Sec-Fetch-Site: cross-site`/`same-site`, is refused with **403**
//!   unless its origin is in [`ServerConfig::allowed_origins`];
//! - only allowed origins get CORS headers and preflight answers;
//! - a non-empty body must be sent as `Content-Type: application/json`
//!   (**415**) and be a JSON object (**422**).
//!
//! Slow clients are bounded on every route: headers by
//! [`ServerConfig::header_timeout`] (the connection is closed), bodies by
//! [`ServerConfig::body_timeout`] (**408**); at most
//! [`ServerConfig::max_connections`] connections are served at once, the
//! others wait to be accepted. Streams run as long as their client stays.

#![warn(missing_docs)]

mod accept;
mod answers;
mod auth;
mod config;
mod context;
mod error;
mod extract;
mod guard;
mod host;
mod live;
mod model;
mod openapi;
mod routes;
mod sse;
mod tenancy;
pub mod tokens;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{DEFAULT_BODY_LIMIT, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT, ServerConfig};
pub use context::{PlanError, PlanSource, ServerContext, StaticPlanSource};
pub use error::{ApiError, ErrorBody, ServerError};
pub use model::{
    AgentEntry, BranchDetail, BranchInfo, BranchMessage, BranchPromptRequest, CancelParams,
    CancelResponse, ChatRequest, CleanupRequest, CleanupResponse, CollectMailRequest,
    CollectMailResponse, CreateSessionRequest, FailRequest, ForkRequest, ForkedFromInfo, Health,
    MailInfo, MessageContent, Multitask, NewBranchRequest, ProfileEntry, RunRequest, RunResponse,
    SearchHitInfo, SearchParams, SendMailRequest, SendMessageRequest, SendMessageResponse,
    SessionInfo, SetStateRequest, SplitFromInfo, SplitRequest, StateEntry, TokenUsage,
    TranscriptMessage, UpdateSessionRequest,
};
pub use openapi::ApiDoc;
pub use tenancy::Caller;
pub use tokens::constant_time_eq;
pub use tokens::{Scope, TokenEntry, TokenError, TokenFile, TokenSet};

use crate::live::Core;
use crate::routes::{agentkernel, branches, docs, messages, search, sessions, state};

/// Every route the server answers, as `(method, path)`; the OpenAPI
/// document covers each of them (a test checks it).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/sessions/"),
    ("get", "/api/v1/sessions/"),
    ("get", "/api/v1/sessions/{id}"),
    ("patch", "/api/v1/sessions/{id}"),
    ("delete", "/api/v1/sessions/{id}"),
    ("post", "/api/v1/sessions/{id}/start"),
    ("post", "/api/v1/sessions/{id}/complete"),
    ("post", "/api/v1/sessions/{id}/fail"),
    ("post", "/api/v1/sessions/{id}/terminate"),
    ("post", "/api/v1/sessions/{id}/messages"),
    ("get", "/api/v1/sessions/{id}/transcript"),
    ("post", "/api/v1/sessions/{id}/send-message"),
    ("get", "/api/v1/sessions/{id}/stream"),
    ("post", "/api/v1/sessions/{id}/execute"),
    ("post", "/api/v1/sessions/{id}/cancel"),
    ("post", "/api/v1/sessions/{id}/fork"),
    ("get", "/api/v1/sessions/{id}/children"),
    ("post", "/api/v1/sessions/{id}/rewind"),
    ("post", "/api/v1/sessions/cleanup"),
    ("get", "/api/v1/sessions/{id}/branches"),
    ("post", "/api/v1/sessions/{id}/branches"),
    ("get", "/api/v1/sessions/{id}/branches/{branch}"),
    ("delete", "/api/v1/sessions/{id}/branches/{branch}"),
    ("post", "/api/v1/sessions/{id}/branches/{branch}/split"),
    ("post", "/api/v1/sessions/{id}/branches/{branch}/default"),
    ("get", "/api/v1/sessions/{id}/branches/{branch}/transcript"),
    (
        "post",
        "/api/v1/sessions/{id}/branches/{branch}/send-message",
    ),
    ("post", "/api/v1/sessions/{id}/mail"),
    ("get", "/api/v1/sessions/{id}/mail"),
    ("post", "/api/v1/sessions/{id}/mail/collect"),
    ("get", "/api/v1/sessions/{id}/messages"),
    ("get", "/api/v1/sessions/{id}/state"),
    ("delete", "/api/v1/sessions/{id}/state"),
    ("get", "/api/v1/sessions/{id}/state/{key}"),
    ("put", "/api/v1/sessions/{id}/state/{key}"),
    ("delete", "/api/v1/sessions/{id}/state/{key}"),
    ("get", "/api/v1/profiles"),
    ("get", "/api/v1/search"),
    ("post", "/run"),
    ("post", "/api/v1/chat"),
    ("get", "/api/v1/agents"),
    ("get", "/health"),
    ("get", "/openapi.json"),
];

fn build(core: Arc<Core>) -> Router {
    let config = core.config.clone();
    // Plain requests: bounded by the request timeout.
    let plain = Router::new()
        .route(
            "/api/v1/sessions",
            get(sessions::list_sessions).post(sessions::create_session),
        )
        .route(
            "/api/v1/sessions/",
            get(sessions::list_sessions).post(sessions::create_session),
        )
        .route("/api/v1/sessions/cleanup", post(sessions::cleanup_sessions))
        .route(
            "/api/v1/sessions/{id}",
            get(sessions::get_session)
                .patch(sessions::update_session)
                .delete(sessions::delete_session),
        )
        .route("/api/v1/sessions/{id}/start", post(sessions::start_session))
        .route(
            "/api/v1/sessions/{id}/complete",
            post(sessions::complete_session),
        )
        .route("/api/v1/sessions/{id}/fail", post(sessions::fail_session))
        .route(
            "/api/v1/sessions/{id}/terminate",
            post(sessions::terminate_session),
        )
        .route("/api/v1/sessions/{id}/fork", post(sessions::fork_session))
        .route("/api/v1/sessions/{id}/cancel", post(messages::cancel))
        .route(
            "/api/v1/sessions/{id}/children",
            get(sessions::list_children),
        )
        .route("/api/v1/sessions/{id}/rewind", post(branches::rewind))
        .route(
            "/api/v1/sessions/{id}/messages",
            post(messages::append_message).get(branches::concat_messages),
        )
        .route(
            "/api/v1/sessions/{id}/branches",
            get(branches::list_branches).post(branches::new_branch),
        )
        .route(
            "/api/v1/sessions/{id}/branches/{branch}",
            get(branches::get_branch).delete(branches::delete_branch),
        )
        .route(
            "/api/v1/sessions/{id}/branches/{branch}/split",
            post(branches::split_branch),
        )
        .route(
            "/api/v1/sessions/{id}/branches/{branch}/default",
            post(branches::set_default_branch),
        )
        .route(
            "/api/v1/sessions/{id}/branches/{branch}/transcript",
            get(branches::branch_transcript),
        )
        .route(
            "/api/v1/sessions/{id}/branches/{branch}/send-message",
            post(branches::branch_send_message),
        )
        .route(
            "/api/v1/sessions/{id}/mail",
            get(branches::list_mail).post(branches::send_mail),
        )
        .route(
            "/api/v1/sessions/{id}/mail/collect",
            post(branches::collect_mail),
        )
        .route(
            "/api/v1/sessions/{id}/state",
            get(state::all_state).delete(state::clear_state),
        )
        .route(
            "/api/v1/sessions/{id}/state/{key}",
            get(state::get_state)
                .put(state::put_state)
                .delete(state::delete_state),
        )
        .route(
            "/api/v1/sessions/{id}/transcript",
            get(messages::transcript),
        )
        .route(
            "/api/v1/sessions/{id}/send-message",
            post(messages::send_message),
        )
        .route("/api/v1/profiles", get(docs::profiles))
        .route("/api/v1/search", get(search::search))
        .route("/api/v1/agents", get(agentkernel::agents))
        .route("/health", get(agentkernel::health))
        .route("/openapi.json", get(openapi::openapi))
        .layer(middleware::from_fn_with_state(
            config.request_timeout,
            extract::timeout,
        ));
    // Streams and synchronous runs: no request timeout (their bodies are
    // still bounded by the body timeout, their headers by the header
    // timeout).
    let long = Router::new()
        .route("/api/v1/sessions/{id}/stream", get(messages::stream))
        .route("/api/v1/sessions/{id}/execute", post(messages::execute))
        .route("/run", post(agentkernel::run))
        .route("/api/v1/chat", post(agentkernel::chat));
    // Unknown routes answer inside the API's layers (token check, JSON
    // errors), also once the web UI's routes are merged in.
    let mut app = plain
        .merge(long)
        .route_layer(middleware::from_fn_with_state(core.clone(), tenancy::guard))
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .with_state(core)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn(extract::json_errors));
    let auth = auth::Authenticator {
        token: config.token.clone().filter(|t| !t.is_empty()),
        tokens: config.tokens.clone().map(TokenSet::new),
    };
    if auth.enabled() {
        app = app.layer(middleware::from_fn_with_state(
            Arc::new(auth),
            auth::require_token,
        ));
    }
    // The web UI: static files, outside the token check (the page asks
    // for the token and sends it with its API calls).
    let app = app.merge(web::router());
    // Outermost: the perimeter runs before authentication, routing and
    // body reading, on every route.
    app.layer(middleware::from_fn_with_state(
        Arc::new(guard::Perimeter::new(&config)),
        guard::guard,
    ))
}

/// The daemon's routes, for serving or for in-process tests (with
/// `tower::ServiceExt::oneshot` or a listener of your own). Idle live
/// sessions are only swept by [`serve`].
pub fn router(ctx: ServerContext, config: ServerConfig) -> Router {
    build(Arc::new(Core::new(ctx, config)))
}

/// Serves on the address in `config` until `shutdown` completes. Refuses a
/// non-loopback address without a token ([`ServerConfig::validate`]).
pub async fn serve(
    config: ServerConfig,
    ctx: ServerContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = config.validate()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    serve_on(listener, config, ctx, shutdown).await
}

/// Serves on a bound `listener` (its address overrides `config.host` and
/// `config.port`, and is checked the same way).
pub async fn serve_on(
    listener: TcpListener,
    mut config: ServerConfig,
    ctx: ServerContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener.local_addr()?;
    config.host = local.ip().to_string();
    config.port = local.port();
    config.validate()?;
    let core = Arc::new(Core::new(ctx, config.clone()));
    let app = build(core.clone());

    let sweeper = {
        let core = core.clone();
        let every =
            (config.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                core.sweep();
            }
        })
    };

    let signalled = CancellationToken::new();
    let graceful = {
        let core = core.clone();
        let signalled = signalled.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: cancelling running turns");
            core.shutdown_turns().await;
            signalled.cancel();
        }
    };
    tracing::info!(address = %local, "weft server listening");
    let connections = tokio::spawn(accept::serve_connections(
        listener,
        app,
        accept::Limits::from(&config),
        signalled.clone(),
    ));
    let abort = connections.abort_handle();
    graceful.await;
    let grace = config.shutdown_grace;
    let result = match tokio::time::timeout(grace, connections).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServerError::Io(std::io::Error::other(format!(
            "the connection loop failed: {e}"
        )))),
        Err(_) => {
            tracing::warn!("connections still open {grace:?} after shutdown; closing them");
            abort.abort();
            Ok(())
        }
    };
    sweeper.abort();
    result
}
