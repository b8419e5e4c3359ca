//! Bearer-token authentication.
//!
//! When the server has a token (`--token`) or a token file (`--tokens`,
//! `$WEFT_HOME/tokens.toml`), every request must carry
//! `Authorization: Bearer <token>`; comparisons take the same time
//! wherever the first difference is. The request then carries its
//! [`Caller`] (tenant and scope) for [`crate::tenancy`] to apply.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::tenancy::Caller;
use crate::tokens::{TokenSet, constant_time_eq};

/// The token a request carries, if it has a bearer `Authorization` header.
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

/// Who may call the daemon: the single `--token` (an admin token of no
/// tenant) and/or the token file.
pub(crate) struct Authenticator {
    /// The single token of `--token`.
    pub(crate) token: Option<String>,
    /// The token file (`--tokens`, `$WEFT_HOME/tokens.toml`).
    pub(crate) tokens: Option<TokenSet>,
}

impl Authenticator {
    /// Whether any token is required.
    pub(crate) fn enabled(&self) -> bool {
        self.token.is_some() || self.tokens.is_some()
    }

    fn caller(&self, given: &[u8]) -> Result<Option<Caller>, ApiError> {
        // Both are always checked, so the time taken does not tell which
        // kind of token was close.
        let single = self
            .token
            .as_deref()
            .is_some_and(|t| constant_time_eq(given, t.as_bytes()));
        let listed = match &self.tokens {
            Some(set) => set.check(given).map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the daemon cannot read its token file: {e}"),
                )
            })?,
            None => None,
        };
        Ok(if single {
            Some(Caller::admin())
        } else {
            listed.map(|entry| Caller {
                tenant: Some(entry.tenant),
                scope: entry.scope,
            })
        })
    }
}

/// Middleware: rejects requests without a known token with 401; the
/// request carries its [`Caller`] on.
pub(crate) async fn require_token(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match bearer(&request) {
        Some(given) => match auth.caller(given) {
            Ok(Some(caller)) => caller,
            Ok(None) => return unauthorized("the bearer token is wrong or has been revoked"),
            Err(error) => return error.into_response(),
        },
        None => {
            return unauthorized(
                "this server requires a token: send the header `Authorization: Bearer <token>`",
            );
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn unauthorized(detail: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}
