//! weft's own options in a PostgreSQL store URL, taken out before the
//! URL reaches the PostgreSQL client (which would refuse them):
//!
//! - `lease_ms=<milliseconds>`: how long a turn lock's lease lasts without
//!   renewal (default [`TURN_LEASE`]);
//! - `pool_size=<n>`: how many connections the store's pool keeps at most
//!   (default [`POOL_SIZE`]; half of them are shared by the appends, the
//!   rest lent to reads and transactions). Several daemons on one database share its
//!   `max_connections` (100 on a stock server) and, on a small machine,
//!   its cores: give each a share rather than the default.
//!
//! It knows these options and URL query syntax, nothing of connections.

use std::time::Duration;

use super::{POOL_SIZE, PostgresError, TURN_LEASE, redact_url};

/// The largest `pool_size` accepted.
pub const MAX_POOL_SIZE: usize = 1024;

/// weft's options of a store URL (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UrlOptions {
    /// `lease_ms`.
    pub lease: Duration,
    /// `pool_size`.
    pub pool_size: usize,
}

impl Default for UrlOptions {
    fn default() -> Self {
        Self {
            lease: TURN_LEASE,
            pool_size: POOL_SIZE,
        }
    }
}

/// Takes weft's options out of `url`: returns the URL without them (its
/// other query parameters kept, in order) and the options.
pub(super) fn take_url_options(url: &str) -> Result<(String, UrlOptions), PostgresError> {
    let mut options = UrlOptions::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), options));
    };
    let bad = |reason: String| PostgresError::BadUrl {
        url: redact_url(url),
        reason,
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("lease_ms", v)) => {
                let ms: u64 = v.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    bad(format!(
                        "lease_ms={v} must be a positive number of milliseconds"
                    ))
                })?;
                options.lease = Duration::from_millis(ms);
            }
            Some(("pool_size", v)) => {
                options.pool_size = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "pool_size={v} must be a number of connections from 1 to {MAX_POOL_SIZE}"
                        ))
                    })?;
            }
            _ if pair.is_empty() => {}
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weft_options_are_taken_out_of_the_url() {
        let (url, o) =
            take_url_options("postgres://u@h/db?lease_ms=300&sslmode=disable&pool_size=4").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");
        assert_eq!(o.lease, Duration::from_millis(300));
        assert_eq!(o.pool_size, 4);
        let (url, o) = take_url_options("postgres://u@h/db").unwrap();
        assert_eq!(
            (url.as_str(), o),
            ("postgres://u@h/db", UrlOptions::default())
        );
        let (url, _) = take_url_options("postgres://u@h/db?lease_ms=5").unwrap();
        assert_eq!(url, "postgres://u@h/db");
    }

    #[test]
    fn bad_options_are_refused_without_the_password() {
        for bad in [
            "lease_ms=x",
            "lease_ms=0",
            "pool_size=0",
            "pool_size=x",
            "pool_size=5000",
        ] {
            let e = take_url_options(&format!("postgres://u:secret@h/db?{bad}"))
                .unwrap_err()
                .to_string();
            let key = bad.split('=').next().unwrap_or_default();
            assert!(e.contains(key) && !e.contains("secret"), "{e}");
        }
    }
}
