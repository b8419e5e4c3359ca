//! API keys: where they are looked up, how they are checked, redacted in
//! `Debug`, scrubbed from text and sent ([`Auth`]).

use std::fmt;

/// The shortest run of an API key's characters that is scrubbed on its own
/// (a piece left where a message was cut).
pub(crate) const MIN_KEY_FRAGMENT: usize = 8;

/// Looks up an environment variable (`None` when unset or blank).
pub(crate) type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment, treating blank values as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An API key. It has no `Display`, its `Debug` is redacted, and
/// [`ApiKey::scrub`] removes it from text that may echo it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (surrounding whitespace removed).
    pub(crate) fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into().trim().to_string())
    }

    /// The key itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Checks that the key can travel in an HTTP header (visible ASCII);
    /// `var` names where it came from, for the error.
    pub(crate) fn check(&self, var: &str) -> Result<(), String> {
        if self.0.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            Ok(())
        } else {
            Err(format!(
                "the API key in {var} contains spaces or characters an HTTP header cannot carry"
            ))
        }
    }

    /// `text` with every occurrence of the key, and every run of
    /// [`MIN_KEY_FRAGMENT`] or more characters of it (what survives when a
    /// message was cut inside the key, or the key was split), replaced by
    /// `[REDACTED]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        let text = text.replace(&self.0, "[REDACTED]");
        // Keys are visible ASCII (see `check`); a run of them therefore
        // starts and ends on char boundaries of `text`.
        if self.0.len() < MIN_KEY_FRAGMENT || !self.0.is_ascii() {
            return text;
        }
        let key = self.0.as_bytes();
        let bytes = text.as_bytes();
        let run_at = |i: usize| {
            (0..key.len())
                .map(|j| {
                    key[j..]
                        .iter()
                        .zip(&bytes[i..])
                        .take_while(|(k, t)| k == t)
                        .count()
                })
                .max()
                .unwrap_or(0)
        };
        let mut out = String::with_capacity(text.len());
        let (mut i, mut kept) = (0, 0);
        while i < bytes.len() {
            let run = if key.contains(&bytes[i]) {
                run_at(i)
            } else {
                0
            };
            if run >= MIN_KEY_FRAGMENT {
                out.push_str(&text[kept..i]);
                out.push_str("[REDACTED]");
                i += run;
                kept = i;
            } else {
                i += 1;
            }
        }
        out.push_str(&text[kept..]);
        out
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// How the API key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No key is sent.
    None,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// `Authorization: Bearer KEY` (OpenAI and most compatible servers).
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKeyHeader,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_redacted_and_scrubbed() {
        let key = ApiKey::new("sk-test-SECRET-123");
        assert_eq!(format!("{key:?}"), "ApiKey([REDACTED])");
        assert!(key.check("K").is_ok());
        let bad = ApiKey::new("sk-test SECRET").check("K").unwrap_err();
        assert!(!bad.contains("SECRET"), "{bad}");
        assert_eq!(
            key.scrub("invalid key sk-test-SECRET-123 given"),
            "invalid key [REDACTED] given"
        );
        assert_eq!(key.scrub("nothing here"), "nothing here");
        // A piece of 8+ characters left by a cut, at either end, goes too;
        // shorter ones (`sk-test-` alone is 8) are only scrubbed as part of
        // a longer run.
        assert_eq!(key.scrub("key=sk-test-SEC…"), "key=[REDACTED]…");
        assert_eq!(key.scrub("…CRET-123 given"), "…[REDACTED] given");
        assert_eq!(key.scrub("sk-test is short"), "sk-test is short");
        assert_eq!(key.scrub("é sk-test-SECRET-12 é"), "é [REDACTED] é");
    }
}
