//! Store URLs: weft's query parameters (`prefix`, `ttl`, `lease_ms`) taken out of the
//! server URL, and the password scrubbed out of anything printed.
//!
//! This module knows URL text only; it must not know connections or keys.

use std::time::Duration;

use weft_core::store::StoreError;

use super::RedisOptions;

/// `url` with its password (and a user-only credential) replaced by `***`:
/// `redis://user:***@host:6379/0`. Text that is not a URL comes back as is.
pub fn scrub_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let (userinfo, host) = authority.split_at(at);
    let scrubbed = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{scheme}://{scrubbed}{host}{tail}")
}

/// The secret of `url` (password, or the lone credential before `@`).
fn secret(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let secret = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    (!secret.is_empty()).then_some(secret)
}

/// `message` with the URL's secret (and the URL itself) replaced, for an
/// error text that may quote either.
pub(super) fn scrub_secret(url: &str, message: &str) -> String {
    let mut out = message.replace(url, &scrub_url(url));
    if let Some(s) = secret(url) {
        out = out.replace(s, "***");
    }
    out
}

/// Parses a store URL into [`RedisOptions`] (see
/// [`RedisOptions::from_url`]).
pub(super) fn parse_store_url(url: &str) -> Result<RedisOptions, StoreError> {
    let invalid = |why: &str| {
        StoreError::Invalid(format!(
            "invalid redis store URL {}: {why} (expected redis://[user:password@]host:port[/db][?prefix=weft:&ttl=604800])",
            scrub_url(url)
        ))
    };
    if !(url.starts_with("redis://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://"))
    {
        return Err(invalid("the scheme must be redis://"));
    }
    let mut prefix = RedisOptions::DEFAULT_PREFIX.to_string();
    let mut ttl = None;
    let mut lease = super::TURN_LOCK_TTL;
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut kept = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "prefix" => {
                if v.is_empty() {
                    return Err(invalid("prefix= must not be empty"));
                }
                prefix = v.to_string();
            }
            "ttl" => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| invalid("ttl= must be a number of seconds"))?;
                ttl = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "lease_ms" => {
                let ms: u64 = v.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    invalid("lease_ms= must be a positive number of milliseconds")
                })?;
                lease = Duration::from_millis(ms);
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(RedisOptions {
        url,
        prefix,
        ttl,
        lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed() {
        assert_eq!(
            scrub_url("redis://user:hunter2@db:6379/0"),
            "redis://user:***@db:6379/0"
        );
        assert_eq!(scrub_url("redis://hunter2@db:6379"), "redis://***@db:6379");
        assert_eq!(scrub_url("redis://db:6379/1"), "redis://db:6379/1");
        assert_eq!(scrub_url("not a url"), "not a url");
        let url = "redis://:s3cret@h:1";
        let msg = scrub_secret(url, &format!("failed on {url}: auth s3cret refused"));
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[test]
    fn weft_parameters_are_taken_out() {
        let o = parse_store_url("redis://:pw@h:1/2?prefix=t1:&ttl=60&protocol=resp3").unwrap();
        assert_eq!(o.url, "redis://:pw@h:1/2?protocol=resp3");
        assert_eq!(o.prefix, "t1:");
        assert_eq!(o.ttl, Some(Duration::from_secs(60)));
        let d = parse_store_url("redis://h:1").unwrap();
        assert_eq!((d.prefix.as_str(), d.ttl), ("weft:", None));
        assert_eq!(parse_store_url("redis://h?ttl=0").unwrap().ttl, None);
        assert_eq!(d.lease, super::super::TURN_LOCK_TTL);
        let short = parse_store_url("redis://h?lease_ms=250").unwrap();
        assert_eq!(
            (short.url.as_str(), short.lease),
            ("redis://h", Duration::from_millis(250))
        );
        assert!(parse_store_url("redis://h?lease_ms=0").is_err());
        let e = parse_store_url("http://:pw@h?ttl=x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw"), "{e}");
        assert!(parse_store_url("redis://h?ttl=x").is_err());
        assert!(format!("{:?}", parse_store_url("redis://:pw@h").unwrap()).contains("***"));
    }
}
