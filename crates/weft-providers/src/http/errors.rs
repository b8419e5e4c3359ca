//! Error text: error chains, truncation, the message of an error body and
//! reading a bounded body.

use super::MESSAGE_LIMIT;
use serde_json::Value;

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `text` cut to at most `limit` bytes (on a char boundary), with `…`.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    let text = text.trim();
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The human-readable message of an error body: `error.message`,
/// `error` (a string), `message` or `detail`; else the body itself.
/// `scrub` runs on the message before it is cut to [`MESSAGE_LIMIT`], so
/// a secret it removes cannot be cut into a piece it no longer recognises.
pub(crate) fn error_message(body: &str, scrub: impl Fn(&str) -> String) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let candidates = [
            v.pointer("/error/message"),
            v.get("error").filter(|e| e.is_string()),
            v.get("message"),
            v.get("detail"),
        ];
        for c in candidates.into_iter().flatten() {
            if let Some(s) = c.as_str().filter(|s| !s.trim().is_empty()) {
                let kind = v.pointer("/error/type").and_then(Value::as_str);
                return truncate(
                    &scrub(&match kind {
                        Some(kind) if !s.contains(kind) => format!("{kind}: {s}"),
                        _ => s.to_string(),
                    }),
                    MESSAGE_LIMIT,
                );
            }
        }
    }
    truncate(&scrub(body), MESSAGE_LIMIT)
}

/// Reads at most `limit` bytes of a body as (lossy) UTF-8.
pub(super) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<String, String> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if buf.len() >= limit {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(format!("reading the answer failed: {}", error_chain(&e))),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_extracted() {
        assert_eq!(
            error_message(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                str::to_string
            ),
            "overloaded_error: Overloaded"
        );
        assert_eq!(
            error_message(
                r#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#,
                str::to_string
            ),
            "invalid_request_error: bad key"
        );
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#, str::to_string),
            "model not found"
        );
        assert_eq!(error_message("plain text", str::to_string), "plain text");
        assert!(error_message(&"x".repeat(5000), str::to_string).len() < 700);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
