//! Errors: [`ApiError`] (what a request fails with, rendered as
//! `{"detail": "..."}` with its status code) and [`ServerError`] (what
//! starting or running the daemon fails with).

use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use weft_core::branches::BranchError;
use weft_core::provider::ProviderError;
use weft_core::{IdError, SessionError, StoreError};

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and where it can be, what to do about it.
    pub detail: String,
}

/// A failed request: a status code and a `detail` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message sent as `detail`.
    pub detail: String,
}

impl ApiError {
    /// An error with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409 Conflict (a lifecycle rule or a running turn).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 422 Unprocessable Entity (a well-formed body with a bad field).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 500 Internal Server Error.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// 503 Service Unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// A branch session `session` does not have. Named in the URL path
    /// (`field` None), it is a missing resource: 404. Named in a body or
    /// query field, it is a bad value of that field: 422 naming it.
    pub fn unknown_branch(
        session: impl std::fmt::Display,
        branch: &str,
        field: Option<&str>,
    ) -> Self {
        let text = format!(
            "session {session} has no branch {branch:?}: GET /api/v1/sessions/{session}/branches lists its branches"
        );
        match field {
            None => Self::not_found(text),
            Some(field) => Self::unprocessable(format!("{field}: {text}")),
        }
    }

    /// A refused branch or mail operation on session `session`. An unknown
    /// branch follows [`ApiError::unknown_branch`] (`unknown_field` is the
    /// body or query field that named it, None for the path); a taken name
    /// or the last branch is 409; another bad argument is 422 naming
    /// `invalid_field`.
    pub fn from_branch(
        session: impl std::fmt::Display,
        e: BranchError,
        unknown_field: Option<&str>,
        invalid_field: &str,
    ) -> Self {
        match e {
            BranchError::UnknownBranch(b) => Self::unknown_branch(session, &b, unknown_field),
            BranchError::NameTaken(_) | BranchError::LastBranch(_) => Self::conflict(e.to_string()),
            BranchError::Invalid(m) => Self::unprocessable(format!("{invalid_field}: {m}")),
        }
    }
}

impl ApiError {
    /// The `detail` a client gets: for a 500 (the server's own failure)
    /// without the server's file paths, which the daemon's log keeps.
    pub fn public_detail(&self) -> String {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            without_paths(&self.detail)
        } else {
            self.detail.clone()
        }
    }
}

/// `text` with every absolute file path (`/…`, `~/…`) replaced by `…`.
pub(crate) fn without_paths(text: &str) -> String {
    const OPEN: &[char] = &['"', '\'', '(', '[', '{', '<', '=', '`'];
    const CLOSE: &[char] = &['"', '\'', ')', ']', '}', '>', ',', ';', '`'];
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let rest = word.trim_start_matches(OPEN);
        out.push_str(&word[..word.len() - rest.len()]);
        if !(rest.starts_with('/') || rest.starts_with("~/")) {
            out.push_str(rest);
            continue;
        }
        let end = rest.find(CLOSE).unwrap_or(rest.len());
        let (path, tail) = rest.split_at(end);
        // A trailing `:` or `.` ends the sentence, not the path.
        let kept = path.trim_end_matches([':', '.']);
        out.push('…');
        out.push_str(&path[kept.len()..]);
        out.push_str(tail);
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, detail = %self.detail, "request failed");
        }
        let detail = self.public_detail();
        (self.status, Json(ErrorBody { detail })).into_response()
    }
}

/// The status a store failure maps to.
fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotFound(_) | StoreError::NoMatch(_) => StatusCode::NOT_FOUND,
        StoreError::AlreadyExists(_)
        | StoreError::Conflict { .. }
        | StoreError::Ambiguous { .. }
        | StoreError::Refused(_)
        | StoreError::LeaseLost { .. } => StatusCode::CONFLICT,
        StoreError::InvalidId(_) => StatusCode::BAD_REQUEST,
        StoreError::InvalidBatch(_) | StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Corrupt { .. } | StoreError::Io { .. } | StoreError::Backend { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(store_status(&e), e.to_string())
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let status = match &e {
            SessionError::Store(s) => store_status(s),
            SessionError::Provider(ProviderError::Cancelled) | SessionError::Cancelled => {
                StatusCode::CONFLICT
            }
            SessionError::Provider(ProviderError::NotConfigured(_)) | SessionError::NoProvider => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SessionError::Provider(_) => StatusCode::BAD_GATEWAY,
            SessionError::Mount(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SessionError::InvalidId(_) => StatusCode::BAD_REQUEST,
            SessionError::Denied(_) => StatusCode::FORBIDDEN,
            SessionError::NotInitialized | SessionError::Ended => StatusCode::CONFLICT,
            SessionError::Invalid(_) | SessionError::InvalidSchema(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            // The model's answer, not the request, was wrong.
            SessionError::StructuredOutput { .. } => StatusCode::BAD_GATEWAY,
            SessionError::Branch(b) => match b {
                BranchError::NameTaken(_) | BranchError::LastBranch(_) => StatusCode::CONFLICT,
                BranchError::UnknownBranch(_) | BranchError::Invalid(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
            },
        };
        Self::new(status, e.to_string())
    }
}

/// What starting or running the daemon can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A non-loopback bind without a token.
    #[error(
        "refusing to listen on {host} without a token: anyone who can reach that address could run sessions; pass --token (or set WEFT_SERVER__TOKEN), or bind 127.0.0.1"
    )]
    InsecureBind {
        /// The host asked for.
        host: String,
    },
    /// The host is not an IP address (or `localhost`).
    #[error("invalid host {host:?}: give an IP address such as 127.0.0.1, ::1 or 0.0.0.0")]
    InvalidHost {
        /// The host asked for.
        host: String,
    },
    /// A setting is out of range.
    #[error("invalid server configuration: {0}")]
    InvalidConfig(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_show_server_paths() {
        let e = ApiError::from(StoreError::Io {
            path: "/home/ann/.weft/projects/p/sessions/s1/log.jsonl".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let detail = e.public_detail();
        assert!(!detail.contains("/home"), "{detail}");
        assert!(detail.starts_with("storage I/O failed at …: "), "{detail}");
        assert!(detail.contains("(os error 28)"), "{detail}");
        let e = ApiError::from(StoreError::Corrupt {
            location: "\"/srv/weft/x/log.jsonl\" line 3".into(),
            detail: "bad json".into(),
        });
        assert_eq!(
            e.public_detail(),
            "corrupt session data in \"…\" line 3: bad json"
        );
        // Other errors keep their detail as it is.
        let e = ApiError::unprocessable("amplifiedDir: \"/etc\" is outside /srv/p");
        assert_eq!(e.public_detail(), e.detail);
    }

    #[test]
    fn without_paths_keeps_everything_else() {
        assert_eq!(
            without_paths("cannot open ~/x/y and (/a/b), see https://x.example/a. ok /"),
            "cannot open … and (…), see https://x.example/a. ok …"
        );
        assert_eq!(without_paths("a/b stays"), "a/b stays");
    }
}
