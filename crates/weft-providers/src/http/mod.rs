//! The HTTP machinery the vendor providers share: configuration, API keys,
//! the client, retries, timeouts, cancellation and stream framing.
//!
//! A vendor module (`anthropic`, `openai`, `ollama`) only knows its wire
//! format: it builds a JSON request body and supplies a [`Decoder`] that turns
//! the response's frames (SSE events or NDJSON lines) into
//! [`StreamEvent`]s. Everything else lives here, once:
//!
//! - **Configuration** ([`CommonConfig`]) read from a module spec, with type
//!   checks and clear errors; an `api_key` in the config is refused (keys come
//!   from the environment only, so they never reach a stored mount plan).
//! - **API keys** ([`ApiKey`]): read at construction, redacted in `Debug`,
//!   scrubbed from every error message and retry reason, and sent in a header
//!   marked sensitive.
//! - **Retries**: connection failures, HTTP 429, 500–599 (529 included),
//!   Anthropic `overloaded_error` / `api_error` events and timeouts are retried
//!   with exponential backoff and jitter, honouring `retry-after-ms` and
//!   `retry-after` (seconds or an HTTP date), **only before the response has
//!   produced content**. Every retry is announced with
//!   [`StreamEvent::Retry`]. A `retry-after` longer than `max_retry_after`
//!   ends the call at once instead of sleeping.
//! - **Timeouts**: connect (in the client), first byte (from sending the
//!   request until the first frame), idle (between frames) and an optional
//!   total per attempt.
//! - **Cancellation**: every wait races the call's [`CancellationToken`];
//!   when it fires the HTTP response is dropped (closing the connection) and
//!   the stream yields [`ProviderError::Cancelled`].
//! - **Integrity**: a stream that breaks, ends early or carries malformed
//!   frames becomes a [`ProviderError::Stream`]; a stream yields at most one
//!   [`StreamEvent::Completed`], and only for a complete response.

use serde_json::Value;

mod config;
mod errors;
mod key;
mod retry;
mod stream;
mod transport;

pub(crate) use config::*;
pub(crate) use errors::*;
pub(crate) use key::*;
pub(crate) use retry::*;
pub(crate) use stream::*;
pub(crate) use transport::*;

/// The `User-Agent` sent with every request.
pub(crate) const USER_AGENT: &str = concat!("weft/", env!("CARGO_PKG_VERSION"));

/// The most bytes of an error response body that are read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The most bytes of a JSON (non-streamed) response that are read.
const JSON_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// The longest NDJSON line accepted.
const LINE_LIMIT: usize = 16 * 1024 * 1024;
/// How much of a provider's error message is kept.
const MESSAGE_LIMIT: usize = 600;

/// An `f32` setting (a temperature) as JSON, in its shortest decimal form
/// (`0.1`, not `0.10000000149011612` as a plain `f32` → `f64` gives).
pub(crate) fn f32_json(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperatures_keep_their_decimal_form() {
        assert_eq!(f32_json(0.1).to_string(), "0.1");
        assert_eq!(f32_json(0.7).to_string(), "0.7");
        assert_eq!(f32_json(1.0).to_string(), "1.0");
    }
}
