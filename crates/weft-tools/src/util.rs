//! Small helpers shared by the tools: module config parsing, running
//! blocking work off the async runtime, and text truncation.

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use weft_core::mount::{ModuleSpec, MountError};
use weft_core::tool::ToolOutput;

/// Parses a module's `config` map into `T`, refusing unknown keys (a typo
/// in a safety setting such as `deny` must not pass silently).
pub(crate) fn parse_config<T: DeserializeOwned>(spec: &ModuleSpec) -> Result<T, MountError> {
    serde_json::from_value(Value::Object(spec.config.clone())).map_err(|e| MountError::Module {
        module: spec.module.clone(),
        message: format!("invalid config: {e}"),
    })
}

/// Runs blocking `work` on the blocking pool and turns its result into a
/// [`ToolOutput`]. Returns promptly when `cancel` fires (the work itself
/// sees the token and stops at its next check). A panic inside `work` is
/// reported as a failed output, never propagated.
pub(crate) async fn run_blocking<F>(cancel: &CancellationToken, tool: &str, work: F) -> ToolOutput
where
    F: FnOnce() -> Result<String, String> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(work);
    tokio::select! {
        biased;
        _ = cancel.cancelled() => ToolOutput::error(format!("{tool} was cancelled")),
        joined = task => match joined {
            Ok(Ok(text)) => ToolOutput::ok(text),
            Ok(Err(message)) => ToolOutput::error(message),
            Err(e) => ToolOutput::error(format!("{tool} failed unexpectedly: {e}")),
        },
    }
}

/// The first `max` characters of `s`, and whether anything was cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((idx, _)) => (&s[..idx], true),
        None => (s, false),
    }
}

/// The last `max` characters of `s`.
pub(crate) fn last_chars(s: &str, max: usize) -> &str {
    if max == 0 {
        return "";
    }
    match s.char_indices().rev().nth(max - 1) {
        Some((idx, _)) => &s[idx..],
        None => s,
    }
}

/// `s` cut to at most about `max` characters by keeping its head and tail
/// around a marker that says how much was left out.
pub(crate) fn head_tail(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    let head = truncate_chars(s, max / 2).0;
    let tail = last_chars(s, max - max / 2);
    let omitted = total - head.chars().count() - tail.chars().count();
    format!("{head}\n[… {omitted} characters omitted …]\n{tail}")
}

/// `"1 line"`, `"2 lines"`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_char_safe() {
        assert_eq!(truncate_chars("héllo", 2), ("hé", true));
        assert_eq!(truncate_chars("hé", 5), ("hé", false));
        assert_eq!(last_chars("héllo", 4), "éllo");
        assert_eq!(last_chars("hé", 5), "hé");
        assert_eq!(last_chars("hé", 0), "");
        let cut = head_tail(&"é".repeat(100), 10);
        assert!(cut.starts_with("ééééé\n[… 90 characters omitted …]\nééééé"));
        assert_eq!(head_tail("short", 10), "short");
    }
}
