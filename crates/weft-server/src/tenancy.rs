//! Tenants: which sessions a request may see, and what its token's
//! [`Scope`] lets it do. Applied in one place, [`guard`], a layer on every
//! route:
//! - `read` tokens may only send GET (and HEAD/OPTIONS) requests: anything
//!   else is 403;
//! - `POST /api/v1/sessions/cleanup` removes old sessions of every tenant,
//!   so it needs an `admin` token (403 for `write`);
//! - a route with a session id in its path (`/api/v1/sessions/{id}/…`) on a
//!   session of another tenant answers 404 with the body a missing session
//!   gets, so a token cannot even learn that the session exists.
//!
//! The handlers apply the same rule where a session id comes in a body or
//! a listing: `parentSessionId` on create, `session_id` on `/run` and
//! `/api/v1/chat`, and the sessions and children lists (filtered to the
//! caller's tenant). New sessions record the caller's tenant
//! ([`weft_core::session::META_TENANT`]); forks and delegated sessions take
//! their source's. `admin` tokens see every session; a daemon without
//! tokens, or its single `--token`, acts as admin.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use weft_core::{SessionId, SessionMeta};

use crate::error::ApiError;
use crate::live::Core;
use crate::tokens::Scope;

/// Who sent a request: the tenant of its token and the token's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant (None: the daemon's single `--token`, or no token at all).
    pub tenant: Option<String>,
    /// What the token may do.
    pub scope: Scope,
}

impl Caller {
    /// An admin of no tenant: the single `--token`, or a daemon without
    /// tokens.
    pub fn admin() -> Self {
        Self {
            tenant: None,
            scope: Scope::Admin,
        }
    }

    /// Whether this caller may see `meta`'s session.
    pub fn can_see(&self, meta: &SessionMeta) -> bool {
        self.scope == Scope::Admin
            || (self.tenant.is_some() && meta.tenant() == self.tenant.as_deref())
    }

    /// The 404 a session this caller may not see gets: the very answer a
    /// missing session gets.
    pub(crate) fn hidden(id: &SessionId) -> ApiError {
        ApiError::not_found(format!("session {id} not found"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::admin))
    }
}

/// The scope a request needs.
fn needed(method: &Method, path: &str) -> Scope {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Scope::Read
    } else if path.trim_end_matches('/') == "/api/v1/sessions/cleanup" {
        Scope::Admin
    } else {
        Scope::Write
    }
}

/// Middleware (a route layer: it runs after routing, so it sees the path's
/// parameters): the scope check, then the tenant check of the path's
/// session (see the module doc).
pub(crate) async fn guard(State(core): State<Arc<Core>>, request: Request, next: Next) -> Response {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::admin);
    let need = needed(request.method(), request.uri().path());
    if caller.scope < need {
        let detail = match need {
            Scope::Admin => {
                "this request acts on every tenant's sessions: only an admin token may send it"
            }
            _ => "this token has the read scope: it may only send GET requests; use a write token",
        };
        return ApiError::new(StatusCode::FORBIDDEN, detail).into_response();
    }
    if caller.scope == Scope::Admin {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let id = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|Path(params)| params.get("id").cloned())
        .and_then(|raw| SessionId::parse(raw.as_str()).ok());
    if let Some(id) = id {
        match core.store().get(&id).await {
            Ok(meta) if !caller.can_see(&meta) => {
                return Caller::hidden(&id).into_response();
            }
            // Visible, missing (the handler says so) or a store error (the
            // handler meets it too).
            _ => {}
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::session::Project;

    #[test]
    fn scopes_needed() {
        assert_eq!(needed(&Method::GET, "/api/v1/sessions/"), Scope::Read);
        assert_eq!(needed(&Method::POST, "/run"), Scope::Write);
        assert_eq!(
            needed(&Method::POST, "/api/v1/sessions/cleanup"),
            Scope::Admin
        );
    }

    #[test]
    fn who_sees_what() {
        let mut meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let a = Caller {
            tenant: Some("a".into()),
            scope: Scope::Write,
        };
        let b = Caller {
            tenant: Some("b".into()),
            scope: Scope::Read,
        };
        assert!(!a.can_see(&meta), "a session of no tenant is admin-only");
        meta.set_tenant("a");
        assert!(a.can_see(&meta));
        assert!(!b.can_see(&meta));
        assert!(Caller::admin().can_see(&meta));
    }
}
