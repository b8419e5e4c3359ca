//! [`ServerConfig`]: where the daemon listens and its limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::error::ServerError;

/// The default port (`weft serve` listens on 127.0.0.1:8420).
pub const DEFAULT_PORT: u16 = 8420;

/// The default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port: DEFAULT_PORT,
            token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(15),
            event_buffer: 1024,
            idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(10),
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
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("keepalive", &self.keepalive)
            .field("event_buffer", &self.event_buffer)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

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
        if !ip.is_loopback() && self.token.is_none() {
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
        if self.request_timeout.is_zero() || self.keepalive.is_zero() {
            return Err(ServerError::InvalidConfig(
                "the request timeout and the keepalive interval must be positive".into(),
            ));
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
    fn debug_hides_the_token() {
        let c = ServerConfig {
            token: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
