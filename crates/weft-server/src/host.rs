//! The syntax of HTTP `Host` and `Origin` values: splitting a host into
//! name and port, normalising an origin, and checking the ones a
//! configuration names. Pure parsing: what is allowed is decided by the
//! perimeter ([`crate::guard`]) and the configuration ([`crate::config`]),
//! which both use this module; it knows neither.

/// Splits a `Host` value (`name`, `name:port`, `1.2.3.4:port`,
/// `[::1]:port`) into its lowercase name (brackets removed, a trailing dot
/// dropped) and port. None when it is malformed.
pub(crate) fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (inside, port)
    } else {
        match value.split_once(':') {
            None => (value, None),
            Some((name, port)) => (name, Some(port.parse::<u16>().ok()?)),
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    valid.then(|| (name.to_ascii_lowercase(), port))
}

/// Checks a configured public host name (`name` or `name:port`).
pub(crate) fn check_public_host(name: &str) -> Result<(), String> {
    match split_host(name.trim()) {
        Some(_) => Ok(()),
        None => Err(format!(
            "public host {name:?} is not a host name: give a name such as `weft.example.org` (no scheme, no path)"
        )),
    }
}

/// Normalises an origin (`scheme://host[:port]`, scheme http or https):
/// lowercase, default port and trailing slash dropped. Errs (with the fix)
/// on anything else.
pub(crate) fn normalize_origin(origin: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "origin {origin:?} is not an origin: give `http://host[:port]` or `https://host[:port]` (no path)"
        )
    };
    let trimmed = origin.trim();
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    let (name, port) = split_host(rest).ok_or_else(bad)?;
    let name = if name.contains(':') {
        format!("[{name}]")
    } else {
        name
    };
    Ok(match port {
        Some(p) if p != default_port => format!("{scheme}://{name}:{p}"),
        _ => format!("{scheme}://{name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_split() {
        assert_eq!(
            split_host("LocalHost:8420"),
            Some(("localhost".into(), Some(8420)))
        );
        assert_eq!(split_host("[::1]:1"), Some(("::1".into(), Some(1))));
        assert_eq!(split_host("[::1]"), Some(("::1".into(), None)));
        assert_eq!(split_host("127.0.0.1"), Some(("127.0.0.1".into(), None)));
        assert_eq!(
            split_host("localhost.:80"),
            Some(("localhost".into(), Some(80)))
        );
        assert_eq!(split_host("::1"), None);
        assert_eq!(split_host("a:b"), None);
        assert_eq!(split_host("[nope]:1"), None);
        assert_eq!(split_host("a/b"), None);
        assert_eq!(split_host(""), None);
    }

    #[test]
    fn origins_normalise() {
        assert_eq!(
            normalize_origin("HTTP://Example.org:80/").as_deref(),
            Ok("http://example.org")
        );
        assert_eq!(
            normalize_origin("https://a.b:8443").as_deref(),
            Ok("https://a.b:8443")
        );
        assert_eq!(
            normalize_origin("http://[::1]:8420").as_deref(),
            Ok("http://[::1]:8420")
        );
        assert!(normalize_origin("null").is_err());
        assert!(normalize_origin("ftp://x").is_err());
        assert!(normalize_origin("http://x/path").is_err());
    }
}
