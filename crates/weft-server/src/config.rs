//! [`ServerConfig`]: where the daemon listens and its limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ServerError;

/// The default port (`weft serve` listens on 127.0.0.1:8420).
pub const DEFAULT_PORT: u16 = 8420;

/// The default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default cap on open connections. Far above what one user's clients
/// open (the reliability campaign held 2,000 SSE streams at once), low
/// enough that a flood of idle connections cannot use up the process's
/// file descriptors and starve the store.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The daemon's settings. [`ServerConfig::default`] is the safe local
/// setup: 127.0.0.1:8420, no token, 1 MiB bodies.
#[derive(Clone)]
pub struct ServerConfig {
    /// The address to bind: an IP address, or `localhost`.
    pub host: String,
    /// The port (0: any free port).
    pub port: u16,
    /// The bearer token every request must carry; required when `host` is
    /// not a loopback address.
    pub token: Option<String>,
    /// The token file (`weft token create`): tokens with a tenant and a
    /// scope, re-read when it changes. With it, every request needs one of
    /// its tokens (or `token`, which acts as an admin of no tenant).
    pub tokens: Option<PathBuf>,
    /// The largest request body accepted, in bytes (larger: 413).
    pub body_limit: usize,
    /// How long a plain request may take before it is answered with 504.
    /// Streams (`/stream`, `/execute`) and the synchronous agentkernel runs
    /// (`/run`, `/api/v1/chat`) are not limited.
    pub request_timeout: Duration,
    /// How often an idle SSE stream gets a keepalive comment.
    pub keepalive: Duration,
    /// How many events a stream may fall behind before it is told so and
    /// closed (it can reconnect with `Last-Event-ID`).
    pub event_buffer: usize,
    /// How long a live session without a running turn stays loaded before
    /// it is dropped from memory (it is resumed from the store when used).
    pub idle_timeout: Duration,
    /// How long shutdown waits for cancelled turns to record their partial
    /// state.
    pub shutdown_grace: Duration,
    /// Extra names (besides loopback names and addresses) a request's
    /// `Host` may carry, e.g. the machine's DNS name when the daemon is
    /// reached over the network. Any other `Host` is refused with 421:
    /// that is what stops DNS rebinding.
    pub public_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) of web pages that may call the
    /// daemon cross-origin: they pass the origin check and get CORS
    /// headers. Every other foreign origin is refused on requests that
    /// change state, and gets no CORS headers.
    pub allowed_origins: Vec<String>,
    /// How long a client may take to send a request's headers (and how
    /// long an idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, on every
    /// route (also `/run`, `/api/v1/chat`, `/execute`); too slow: 408.
    pub body_timeout: Duration,
    /// The most connections served at once; further ones wait in the
    /// listen queue until one closes.
    pub max_connections: usize,
    /// Fault injection for tests, off (None) by default: the first
    /// `/stream` connection to reach this many events is closed by the
    /// server there, once per daemon, so a client's reconnection with
    /// `Last-Event-ID` can be tested. `weft serve` sets it only from the
    /// environment variable `WEFT_TEST_DROP_STREAM_AFTER`.
    pub test_drop_stream_after: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port: DEFAULT_PORT,
            token: None,
            tokens: None,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(15),
            event_buffer: 1024,
            idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(10),
            public_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            header_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(30),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            test_drop_stream_after: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tokens", &self.tokens)
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive", &self.keepalive)
            .field("event_buffer", &self.event_buffer)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("public_hosts", &self.public_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_connections", &self.max_connections)
            .field("test_drop_stream_after", &self.test_drop_stream_after)
            .finish()
    }
}

/// The largest `max_connections` accepted (a semaphore's permits are
/// counted in 32 bits when shutdown waits for all of them).
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

impl ServerConfig {
    /// The IP address `host` names (`localhost` is 127.0.0.1).
    pub fn ip(&self) -> Result<IpAddr, ServerError> {
        let host = self.host.trim();
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| ServerError::InvalidHost {
                host: self.host.clone(),
            })
    }

    /// Checks the settings and returns the address to bind. Refuses a
    /// non-loopback host without a token, an empty token and zero limits.
    pub fn validate(&self) -> Result<SocketAddr, ServerError> {
        let ip = self.ip()?;
        if let Some(token) = &self.token
            && token.trim().is_empty()
        {
            return Err(ServerError::InvalidConfig(
                "the token is empty: give a non-empty --token or leave it unset".into(),
            ));
        }
        if let Some(path) = &self.tokens {
            crate::tokens::TokenFile::load(path)
                .map_err(|e| ServerError::InvalidConfig(e.to_string()))?;
        }
        if !ip.is_loopback() && self.token.is_none() && self.tokens.is_none() {
            return Err(ServerError::InsecureBind {
                host: self.host.clone(),
            });
        }
        if self.body_limit == 0 {
            return Err(ServerError::InvalidConfig(
                "the body limit must be at least 1 byte".into(),
            ));
        }
        if self.event_buffer == 0 {
            return Err(ServerError::InvalidConfig(
                "the event buffer must hold at least 1 event".into(),
            ));
        }
        if self.request_timeout.is_zero()
            || self.keepalive.is_zero()
            || self.header_timeout.is_zero()
            || self.body_timeout.is_zero()
        {
            return Err(ServerError::InvalidConfig(
                "the request, header and body timeouts and the keepalive interval must be positive"
                    .into(),
            ));
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ServerError::InvalidConfig(format!(
                "max_connections must be between 1 and {MAX_CONNECTIONS_LIMIT}"
            )));
        }
        for name in &self.public_hosts {
            crate::host::check_public_host(name).map_err(ServerError::InvalidConfig)?;
        }
        for origin in &self.allowed_origins {
            crate::host::normalize_origin(origin).map_err(ServerError::InvalidConfig)?;
        }
        Ok(SocketAddr::new(ip, self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_but_other_hosts_do() {
        let mut c = ServerConfig::default();
        assert!(c.validate().is_ok());
        c.host = "localhost".into();
        assert!(c.validate().is_ok());
        c.host = "::1".into();
        assert!(c.validate().is_ok());
        c.host = "0.0.0.0".into();
        assert!(matches!(
            c.validate(),
            Err(ServerError::InsecureBind { .. })
        ));
        c.token = Some("secret".into());
        assert!(c.validate().is_ok());
        c.token = Some("  ".into());
        assert!(matches!(c.validate(), Err(ServerError::InvalidConfig(_))));
        c.host = "example.com".into();
        assert!(matches!(c.validate(), Err(ServerError::InvalidHost { .. })));
    }

    #[test]
    fn a_token_file_is_checked_and_stands_for_a_token() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens.toml");
        let mut c = ServerConfig {
            host: "0.0.0.0".into(),
            tokens: Some(path.clone()),
            ..Default::default()
        };
        assert!(c.validate().is_ok(), "a missing file holds no tokens");
        std::fs::write(&path, "token = [").expect("write");
        let Err(ServerError::InvalidConfig(e)) = c.validate() else {
            panic!("a broken token file must be refused");
        };
        assert!(e.contains("not a valid token file"), "{e}");
        c.tokens = None;
        assert!(matches!(
            c.validate(),
            Err(ServerError::InsecureBind { .. })
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let c = ServerConfig {
            token: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
