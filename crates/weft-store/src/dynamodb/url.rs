//! Store URLs of the dynamodb backend:
//! `dynamodb://[KEY_ID:SECRET@]host:port/TABLE?region=…&create=true&ttl=…&tls=…`
//! parsed into [`DynamoOptions`], and the secret key scrubbed out of
//! anything printed.
//!
//! This module knows URL text and the standard AWS environment variables
//! only; it must not know the client or the item layout.

use std::time::Duration;

use weft_core::store::StoreError;

use super::{DEFAULT_TABLE, DynamoOptions};

/// The region when neither the URL nor `AWS_REGION` /
/// `AWS_DEFAULT_REGION` names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The access key pair of a [`DynamoOptions`]; its `Debug` shows the key id
/// only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`: never printed.
    pub secret: String,
    /// `AWS_SESSION_TOKEN`, when set: never printed.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field("secret", &"***")
            .finish()
    }
}

/// `url` with the secret of its user info replaced by `***`
/// (`dynamodb://AKIA…:***@host/table`). Text that is not a URL comes back as
/// is.
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

/// Whether `host` is a loopback name or address.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare == "::1"
        || bare
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Reads an environment variable, treating empty as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Parses a store URL into [`DynamoOptions`] (see
/// [`DynamoOptions::from_url`]).
pub(super) fn parse_store_url(url: &str) -> Result<DynamoOptions, StoreError> {
    let invalid = |why: &str| {
        StoreError::Invalid(format!(
            "invalid dynamodb store URL {}: {why} (expected dynamodb://[host:port]/TABLE[?region=us-east-1&create=true&ttl=604800&tls=false])",
            scrub_url(url)
        ))
    };
    let rest = url
        .strip_prefix("dynamodb://")
        .ok_or_else(|| invalid("the scheme must be dynamodb://"))?;
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match base.split_once('/') {
        Some((a, p)) => (a, p),
        None => (base, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let table = if path.is_empty() {
        DEFAULT_TABLE.to_string()
    } else {
        path.to_string()
    };
    if table.len() < 3
        || table.len() > 255
        || !table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(invalid(
            "the table name must be 3 to 255 letters, digits, '_', '-' or '.'",
        ));
    }
    let mut region = None;
    let mut create = false;
    let mut ttl = None;
    let mut tls = None;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = |v: &str| match v {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(invalid(&format!("{k}= must be true or false"))),
        };
        match k {
            "region" if !v.is_empty() => region = Some(v.to_string()),
            "create" => create = flag(v)?,
            "tls" => tls = Some(flag(v)?),
            "ttl" => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| invalid("ttl= must be a number of seconds"))?;
                ttl = (secs > 0).then(|| Duration::from_secs(secs));
            }
            other => return Err(invalid(&format!("unknown parameter {other:?}"))),
        }
    }
    let endpoint = if host.is_empty() {
        env("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| env("AWS_ENDPOINT_URL"))
    } else {
        let scheme = if tls.unwrap_or(!is_loopback(host.rsplit_once(':').map_or(host, |(h, _)| h)))
        {
            "https"
        } else {
            "http"
        };
        Some(format!("{scheme}://{host}"))
    };
    let credentials = match userinfo {
        Some(u) => {
            let (id, secret) = u
                .split_once(':')
                .ok_or_else(|| invalid("credentials in the URL are KEY_ID:SECRET@"))?;
            Some(Credentials {
                key_id: id.to_string(),
                secret: secret.to_string(),
                session_token: None,
            })
        }
        None => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(key_id), Some(secret)) => Some(Credentials {
                key_id,
                secret,
                session_token: env("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        },
    };
    let region = region
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    Ok(DynamoOptions {
        endpoint,
        table,
        region,
        create,
        ttl,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(
            scrub_url("dynamodb://AKID:s3cret@h:1/t"),
            "dynamodb://AKID:***@h:1/t"
        );
        assert_eq!(scrub_url("dynamodb://h:1/t"), "dynamodb://h:1/t");
        let o = parse_store_url("dynamodb://AKID:s3cret@127.0.0.1:8000/tbl").unwrap();
        assert!(!format!("{o:?}").contains("s3cret"));
        let e = parse_store_url("dynamodb://AKID:s3cret@h/t?bogus=1")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn urls_parse() {
        let o = parse_store_url(
            "dynamodb://127.0.0.1:8000/my-table?region=eu-west-1&create=true&ttl=60",
        )
        .unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(o.table, "my-table");
        assert_eq!(o.region, "eu-west-1");
        assert!(o.create);
        assert_eq!(o.ttl, Some(Duration::from_secs(60)));
        let remote = parse_store_url("dynamodb://ddb.example:443/tbl?region=x").unwrap();
        assert_eq!(remote.endpoint.as_deref(), Some("https://ddb.example:443"));
        let plain = parse_store_url("dynamodb://ddb.example:80/tbl?tls=false&region=x").unwrap();
        assert_eq!(plain.endpoint.as_deref(), Some("http://ddb.example:80"));
        let aws = parse_store_url("dynamodb:///sessions?region=eu-central-1").unwrap();
        assert_eq!((aws.endpoint, aws.table.as_str()), (None, "sessions"));
        let default = parse_store_url("dynamodb://localhost:1?region=r").unwrap();
        assert_eq!(default.table, DEFAULT_TABLE);
        assert!(!default.create);
        assert_eq!(default.ttl, None);
        assert!(parse_store_url("redis://h/t").is_err());
        assert!(parse_store_url("dynamodb://h/a b").is_err());
        assert!(parse_store_url("dynamodb://h/t?ttl=x").is_err());
        assert!(parse_store_url("dynamodb://h/t?create=maybe").is_err());
    }
}
