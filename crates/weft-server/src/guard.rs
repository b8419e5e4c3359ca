//! The daemon's perimeter against web pages: the checks every request
//! passes before authentication, routing or reading its body.
//!
//! A browser lets any page send requests to `127.0.0.1`, and a page whose
//! DNS name is rebound to `127.0.0.1` can even read the answers. So:
//!
//! - **Host**: a request must be addressed to a loopback name or address
//!   (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`, any port), to the
//!   address the daemon is bound to or reached on, or to a name configured
//!   in [`ServerConfig::public_hosts`]. Anything else (a rebound attacker
//!   name) or no `Host` at all: 421. This covers reads too.
//! - **Origin**: a request that may change state (any method but GET, HEAD
//!   and OPTIONS) is refused with 403 when its `Origin` is neither the
//!   daemon's own (`http://` + the `Host` it was addressed by) nor listed in
//!   [`ServerConfig::allowed_origins`], or when it has no `Origin` but the
//!   browser marked it `Sec-Fetch-Site: cross-site` / `same-site`.
//! - **CORS**: only allowed origins get `Access-Control-Allow-Origin` (and
//!   answers to their preflights); no other response carries CORS headers,
//!   so browsers keep foreign pages from reading them.
//!
//! The third leg, `Content-Type: application/json` on every body (which a
//! page cannot send cross-origin without a preflight), is enforced where
//! bodies are read: [`crate::extract::ApiJson`]. This module also hands
//! that extractor the body read deadline ([`BodyTimeout`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::host::{normalize_origin, split_host};

/// The local address a connection was accepted on (a request extension
/// set by the accept loop): a `Host` naming exactly that IP is this
/// server, whatever the bind address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAddr(pub(crate) SocketAddr);

/// How long the request's body may take to arrive (a request extension
/// set by [`guard`], read by the JSON extractor).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub(crate) Duration);

/// The perimeter's settings, normalised once from [`ServerConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Perimeter {
    /// Lowercase host names from `public_hosts`, without port.
    public_hosts: Vec<String>,
    /// The bound address, when it names one interface that is not
    /// loopback.
    bound: Option<IpAddr>,
    /// Normalised allowed origins.
    origins: Vec<String>,
    body_timeout: Duration,
}

impl Perimeter {
    /// The perimeter for `config` (invalid entries were refused by
    /// [`ServerConfig::validate`]; here they are skipped).
    pub(crate) fn new(config: &ServerConfig) -> Self {
        let bound = config
            .ip()
            .ok()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
        Self {
            public_hosts: config
                .public_hosts
                .iter()
                .filter_map(|h| split_host(h.trim()).map(|(name, _)| name))
                .collect(),
            bound,
            origins: config
                .allowed_origins
                .iter()
                .filter_map(|o| normalize_origin(o).ok())
                .collect(),
            body_timeout: config.body_timeout,
        }
    }

    /// Whether `host` (a `Host` value's name part) is this server.
    fn host_allowed(&self, host: &str, local: Option<SocketAddr>) -> bool {
        if is_loopback_name(host) || self.public_hosts.iter().any(|h| h == host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                Some(ip) == self.bound || local.map(|l| l.ip().to_canonical()) == Some(ip)
            }
            Err(_) => false,
        }
    }

    fn origin_listed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }
}

/// Whether `host` (lowercase, no port or brackets) is a loopback name or
/// address.
fn is_loopback_name(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>()
        .map(|ip| ip.to_canonical().is_loopback())
        .unwrap_or(false)
}

/// The origin a request came from, normalised (None: no `Origin`; an
/// unparseable one, like `null`, is kept as it is: it never matches).
fn request_origin(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::ORIGIN)?;
    let text = raw.to_str().unwrap_or("<not text>");
    Some(normalize_origin(text).unwrap_or_else(|_| text.to_string()))
}

fn refuse(status: StatusCode, detail: String) -> Response {
    ApiError::new(status, detail).into_response()
}

/// Middleware: the perimeter checks (see the module doc), then the request
/// with its [`BodyTimeout`], and CORS headers for allowed origins.
pub(crate) async fn guard(
    State(perimeter): State<Arc<Perimeter>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Host: from the header, or from an absolute-form request target.
    let host_value = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().to_string()),
        None => request
            .headers()
            .get(header::HOST)
            .map(|v| v.to_str().unwrap_or("<not text>").to_string()),
    };
    let Some(host_value) = host_value else {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "the request has no Host header: send one naming this server, e.g. `Host: 127.0.0.1`"
                .into(),
        );
    };
    let local = request.extensions().get::<LocalAddr>().map(|l| l.0);
    match split_host(host_value.trim()) {
        Some((name, _)) if perimeter.host_allowed(&name, local) => {}
        Some((name, _)) => {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server does not answer to the host name {name:?} (it answers to loopback names); if that is this machine's name, start the daemon with --public-host {name}"
                ),
            );
        }
        None => {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "the Host header {host_value:?} is not a host name: send one naming this server, e.g. `Host: 127.0.0.1`"
                ),
            );
        }
    }

    let origin = request_origin(request.headers());
    let listed = origin
        .as_deref()
        .is_some_and(|o| perimeter.origin_listed(o));
    // The daemon's own origin (`http://` + the Host), built only when
    // there is an origin to compare with it.
    let same = origin.as_deref().is_some_and(|o| {
        normalize_origin(&format!("http://{}", host_value.trim())).is_ok_and(|own| own == o)
    });
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );

    // A preflight from an allowed origin.
    if listed
        && request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        cors(headers, origin.as_deref().unwrap_or_default());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, last-event-id"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return response;
    }

    if !safe && !same && !listed {
        if let Some(origin) = &origin {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request refused: pages from {origin} may not change this server's data; if you trust that origin, start the daemon with --allow-origin {origin}"
                ),
            );
        }
        let site = request
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        if let Some(site @ ("cross-site" | "same-site")) = site.as_deref() {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request refused: the browser sent it from another site (Sec-Fetch-Site: {site}); send it from the daemon's own origin, or allow that page's origin with --allow-origin"
                ),
            );
        }
    }

    request
        .extensions_mut()
        .insert(BodyTimeout(perimeter.body_timeout));
    let mut response = next.run(request).await;
    if listed && let Some(origin) = &origin {
        cors(response.headers_mut(), origin);
    }
    response
}

/// Adds the CORS headers for an allowed `origin`.
fn cors(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for name in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.3.2.1",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_name(name), "{name}");
        }
        for name in [
            "rebound.attacker.example",
            "localhost.evil",
            "10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_name(name), "{name}");
        }
    }

    #[test]
    fn hosts_allowed() {
        let config = ServerConfig {
            public_hosts: vec!["Weft.Example.org".into()],
            ..Default::default()
        };
        let p = Perimeter::new(&config);
        assert!(p.host_allowed("weft.example.org", None));
        assert!(p.host_allowed("127.0.0.1", None));
        assert!(!p.host_allowed("rebound.attacker.example", None));
        assert!(!p.host_allowed("192.168.1.5", None));
        let local: SocketAddr = "192.168.1.5:8420".parse().expect("addr");
        assert!(p.host_allowed("192.168.1.5", Some(local)));
        let bound = Perimeter::new(&ServerConfig {
            host: "10.1.2.3".into(),
            token: Some("t".into()),
            ..Default::default()
        });
        assert!(bound.host_allowed("10.1.2.3", None));
    }
}
