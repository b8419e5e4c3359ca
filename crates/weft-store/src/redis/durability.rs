//! The durability check at connect time: Redis acknowledges a write once
//! applied in memory; it survives a crash only with `appendonly yes` and
//! `appendfsync always`. This module reads those two settings and says, in
//! one warning line, when acknowledged writes can be lost.
//!
//! It knows `CONFIG GET` replies only; it must not know sessions or keys.

use redis::aio::ConnectionManager;

use super::scrub_url;

/// What the server's persistence settings mean for acknowledged writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes` and `appendfsync always`: every acknowledged write
    /// is on disk.
    Durable,
    /// Writes are acknowledged before they are fsync'd (or never written):
    /// the settings as read.
    NotFsynced {
        /// `appendonly` (`yes`/`no`).
        appendonly: String,
        /// `appendfsync` (`always`/`everysec`/`no`).
        appendfsync: String,
    },
    /// `CONFIG GET` is refused (managed Redis) or failed: unknown.
    Unknown(String),
}

impl Durability {
    /// Reads the settings from a `CONFIG GET` reply's name/value pairs.
    pub fn from_config(pairs: &[(String, String)]) -> Self {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        match (get("appendonly"), get("appendfsync")) {
            (Some(a), Some(f)) if a == "yes" && f == "always" => Durability::Durable,
            (Some(appendonly), Some(appendfsync)) => Durability::NotFsynced {
                appendonly,
                appendfsync,
            },
            _ => Durability::Unknown("CONFIG GET did not return appendonly/appendfsync".into()),
        }
    }
}

/// The one-line warning for `durability` (none when durable).
pub fn durability_warning(durability: &Durability) -> Option<String> {
    const FIX: &str = "set `appendonly yes` and `appendfsync always` (redis.conf or CONFIG SET) to keep every acknowledged write";
    match durability {
        Durability::Durable => None,
        Durability::NotFsynced {
            appendonly,
            appendfsync,
        } => Some(if appendonly != "yes" {
            format!(
                "redis store: the server has appendonly {appendonly}: acknowledged session writes are lost if it stops; {FIX}"
            )
        } else {
            format!(
                "redis store: the server has appendfsync {appendfsync}: acknowledged session writes are not fsync'd and the newest can be lost in a crash; {FIX}"
            )
        }),
        Durability::Unknown(why) => Some(format!(
            "redis store: cannot check the server's persistence (CONFIG is disabled or failed: {why}); make sure it runs with appendonly yes and appendfsync always, or acknowledged session writes can be lost"
        )),
    }
}

/// Reads the settings over `conn` and logs the warning, if any.
pub(super) async fn check(conn: &mut ConnectionManager, url: &str) {
    let durability = read(conn, url).await;
    if let Some(warning) = durability_warning(&durability) {
        tracing::warn!(url = %scrub_url(url), "{warning}");
    }
}

/// Reads the settings over `conn`.
pub(super) async fn read(conn: &mut ConnectionManager, url: &str) -> Durability {
    let reply: Result<Vec<(String, String)>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(conn)
        .await;
    match reply {
        Ok(pairs) => Durability::from_config(&pairs),
        Err(e) => Durability::Unknown(super::url::scrub_secret(url, &e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(a: &str, f: &str) -> Vec<(String, String)> {
        vec![
            ("appendonly".into(), a.into()),
            ("appendfsync".into(), f.into()),
            ("appenddirname".into(), "appendonlydir".into()),
        ]
    }

    #[test]
    fn only_aof_with_fsync_always_is_durable() {
        assert_eq!(
            Durability::from_config(&pairs("yes", "always")),
            Durability::Durable
        );
        assert_eq!(durability_warning(&Durability::Durable), None);
        let debian = Durability::from_config(&pairs("no", "everysec"));
        let w = durability_warning(&debian).expect("warns");
        assert!(
            w.contains("appendonly no") && w.contains("appendfsync always"),
            "{w}"
        );
        assert!(!w.contains('\n'));
        let everysec =
            durability_warning(&Durability::from_config(&pairs("yes", "everysec"))).expect("warns");
        assert!(everysec.contains("appendfsync everysec"), "{everysec}");
    }

    #[test]
    fn a_refused_config_is_a_warning_not_a_failure() {
        let d = Durability::from_config(&[]);
        assert!(matches!(d, Durability::Unknown(_)));
        let w = durability_warning(&Durability::Unknown("unknown command 'CONFIG'".into()))
            .expect("warns");
        assert!(w.contains("CONFIG is disabled"), "{w}");
    }
}
