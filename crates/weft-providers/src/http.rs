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

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_core::mount::{ModuleSpec, MountError};
use weft_core::provider::{ChatResponse, ProviderError, ProviderStream, StreamEvent};

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

/// The timeouts of one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeouts {
    /// Establishing the TCP/TLS connection.
    pub connect: Duration,
    /// From sending the request until the first frame of the response.
    pub first_byte: Duration,
    /// Between two frames of a streamed response.
    pub idle: Duration,
    /// A whole attempt, when set.
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(120),
            total: None,
        }
    }
}

/// When and how often to retry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff delay (doubled for every further retry).
    pub base: Duration,
    /// The longest computed backoff delay.
    pub max_delay: Duration,
    /// The longest server-requested (`retry-after`) wait honoured; a longer
    /// one ends the call instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1 = the first retry):
    /// `base * 2^(retry-1)`, capped at `max_delay`, minus up to 25 % jitter.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(20);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max_delay);
        raw.mul_f64(1.0 - 0.25 * fastrand::f64())
    }
}

/// Settings every vendor provider reads from its module spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct CommonConfig {
    /// `model`: the default model.
    pub model: Option<String>,
    /// `base_url`: the API's address.
    pub base_url: Option<String>,
    /// `max_tokens`: the default output budget.
    pub max_tokens: Option<u32>,
    /// `temperature`: the default sampling temperature.
    pub temperature: Option<f32>,
    /// `context_window`: the model's context window in tokens.
    pub context_window: Option<usize>,
    /// `thinking_budget`: extended thinking budget in tokens.
    pub thinking_budget: Option<u32>,
    /// `api_key_env`: the variable holding the API key.
    pub api_key_env: Option<String>,
    /// `connect_timeout`, `first_byte_timeout`, `idle_timeout`, `timeout`.
    pub timeouts: Timeouts,
    /// `max_retries`, `retry_base_ms`, `retry_max_ms`, `max_retry_after`.
    pub retry: RetryPolicy,
}

/// The config keys every vendor provider understands.
const COMMON_KEYS: &[&str] = &[
    "model",
    "base_url",
    "max_tokens",
    "temperature",
    "context_window",
    "thinking_budget",
    "api_key_env",
    "timeout",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "max_retries",
    "retry_base_ms",
    "retry_max_ms",
    "max_retry_after",
    "priority",
];

/// Keys that would put a secret into a mount plan.
const SECRET_KEYS: &[&str] = &["api_key", "apikey", "key", "token", "api_token", "secret"];

/// Reads and type-checks a module spec's config.
pub(crate) struct ConfigReader<'a> {
    spec: &'a ModuleSpec,
    module: &'static str,
}

impl<'a> ConfigReader<'a> {
    /// A reader for `spec`, reporting errors as `module`'s. Refuses configs
    /// that carry a secret.
    pub(crate) fn new(spec: &'a ModuleSpec, module: &'static str) -> Result<Self, MountError> {
        let reader = ConfigReader { spec, module };
        for key in spec.config.keys() {
            if SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
                return Err(reader.error(format!(
                    "`{key}` is not accepted in the provider config (a mount plan may be stored or shown): put the key in an environment variable and name it with `api_key_env`"
                )));
            }
        }
        Ok(reader)
    }

    /// A `MountError::Module` for this module.
    pub(crate) fn error(&self, message: String) -> MountError {
        MountError::Module {
            module: self.module.to_string(),
            message,
        }
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.spec.config.get(key).filter(|v| !v.is_null())
    }

    /// A string setting.
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, MountError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(self.error(format!("`{key}` must be a string, not {other}"))),
        }
    }

    /// A boolean setting.
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, MountError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(format!("`{key}` must be true or false, not {other}"))),
        }
    }

    /// A non-negative integer setting.
    pub(crate) fn integer(&self, key: &str) -> Result<Option<u64>, MountError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.error(format!(
                    "`{key}` must be a non-negative whole number, not {v}"
                ))
            }),
        }
    }

    fn u32(&self, key: &str) -> Result<Option<u32>, MountError> {
        match self.integer(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.error(format!("`{key}` is too large: {n}"))),
        }
    }

    /// A non-negative number setting.
    pub(crate) fn number(&self, key: &str) -> Result<Option<f64>, MountError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
                _ => Err(self.error(format!("`{key}` must be a non-negative number, not {v}"))),
            },
        }
    }

    /// A duration in seconds (fractions allowed); zero is refused.
    pub(crate) fn seconds(&self, key: &str) -> Result<Option<Duration>, MountError> {
        match self.number(key)? {
            None => Ok(None),
            Some(n) if n > 0.0 && n < 1e9 => Ok(Some(Duration::from_secs_f64(n))),
            Some(n) => Err(self.error(format!(
                "`{key}` must be a positive number of seconds, not {n}"
            ))),
        }
    }

    /// A duration in milliseconds.
    fn millis(&self, key: &str) -> Result<Option<Duration>, MountError> {
        Ok(self.integer(key)?.map(Duration::from_millis))
    }

    /// The settings common to every vendor provider.
    pub(crate) fn common(&self) -> Result<CommonConfig, MountError> {
        let mut timeouts = Timeouts::default();
        if let Some(d) = self.seconds("connect_timeout")? {
            timeouts.connect = d;
        }
        if let Some(d) = self.seconds("first_byte_timeout")? {
            timeouts.first_byte = d;
        }
        if let Some(d) = self.seconds("idle_timeout")? {
            timeouts.idle = d;
        }
        timeouts.total = self.seconds("timeout")?;
        let mut retry = RetryPolicy::default();
        if let Some(n) = self.u32("max_retries")? {
            retry.max_retries = n;
        }
        if let Some(d) = self.millis("retry_base_ms")? {
            retry.base = d;
        }
        if let Some(d) = self.millis("retry_max_ms")? {
            retry.max_delay = d;
        }
        if let Some(d) = self.number("max_retry_after")? {
            retry.max_retry_after = Duration::from_secs_f64(d.min(1e9));
        }
        let temperature = match self.number("temperature")? {
            Some(t) if t > 2.0 => {
                return Err(self.error(format!("`temperature` must be between 0 and 2, not {t}")));
            }
            t => t.map(|t| t as f32),
        };
        if let Some(v) = self.value("priority")
            && v.as_i64().is_none()
        {
            return Err(self.error(format!("`priority` must be a whole number, not {v}")));
        }
        let base_url = match self.string("base_url")? {
            Some(url) => Some(validate_base_url(&url).map_err(|m| self.error(m))?),
            None => None,
        };
        Ok(CommonConfig {
            model: self.string("model")?,
            base_url,
            max_tokens: self.u32("max_tokens")?.filter(|n| *n > 0),
            temperature,
            context_window: self.integer("context_window")?.map(|n| n as usize),
            thinking_budget: self.u32("thinking_budget")?.filter(|n| *n > 0),
            api_key_env: self.string("api_key_env")?,
            timeouts,
            retry,
        })
    }

    /// Warns (once, at construction) about keys neither common nor in
    /// `extra`: most likely typos.
    pub(crate) fn warn_unknown(&self, extra: &[&str]) {
        let known: BTreeSet<&str> = COMMON_KEYS.iter().chain(extra).copied().collect();
        for key in self.spec.config.keys() {
            if !known.contains(key.as_str()) {
                tracing::warn!(
                    module = self.module,
                    "unknown config key `{key}` ignored (known keys: {})",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
}

/// Checks a base URL and returns it without a trailing `/`.
pub(crate) fn validate_base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("`base_url` {url:?} is not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`base_url` {url:?} must start with http:// or https://"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "`base_url` must not carry credentials: put the key in an environment variable and name it with `api_key_env`".into(),
        );
    }
    if parsed.query().is_some() {
        return Err(format!(
            "`base_url` {url:?} must not have a query (use `api_version` for Azure's api-version)"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Builds the HTTP client (rustls on the ring provider).
pub(crate) fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    // Installing fails harmlessly when a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
}

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

/// The delay a response asks for: `retry-after-ms` (milliseconds), else
/// `retry-after` (seconds, or an HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(1e9)));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
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

/// One frame of a response: an SSE event or an NDJSON line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// The SSE event name (empty for NDJSON).
    pub event: String,
    /// The data (the JSON text).
    pub data: String,
}

/// How a response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Server-sent events (Anthropic, OpenAI).
    Sse,
    /// One JSON object per line (Ollama).
    Ndjson,
}

/// What a decoder can fail with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fail {
    /// The stream is malformed or inconsistent.
    Stream(String),
    /// The server sent an error event. `retry_status` classifies it as an
    /// HTTP status would (`Some(529)`: overloaded), which makes it retryable
    /// while no content has been produced.
    ErrorEvent {
        /// The status it corresponds to, when it is a retryable kind.
        retry_status: Option<u16>,
        /// The error's type and message.
        text: String,
    },
}

/// Turns a vendor's frames into stream events.
pub(crate) trait Decoder: Send + Default + 'static {
    /// Handles one frame, pushing the events it causes onto `out`. Returns
    /// the response when the frame completes it.
    fn frame(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<Option<ChatResponse>, Fail>;

    /// The body ended without a completing frame: the response if the
    /// decoder can vouch for it being complete, else a failure.
    fn eof(&mut self, out: &mut Vec<StreamEvent>) -> Result<ChatResponse, Fail>;
}

/// The connection to one vendor API: client, address, key and policies.
pub(crate) struct Transport {
    /// The provider's name (`anthropic`, `openai`, `ollama`).
    pub provider: &'static str,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// The base URL, without a trailing `/`.
    pub base_url: String,
    /// The API key, if one is sent.
    pub key: Option<ApiKey>,
    /// How the key is sent.
    pub auth: Auth,
    /// Where the key came from (for hints in authentication errors).
    pub key_source: Option<String>,
    /// Headers sent with every request (never secrets).
    pub headers: HeaderMap,
    /// Query parameters added to every request.
    pub query: Vec<(String, String)>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retries.
    pub retry: RetryPolicy,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("key", &self.key)
            .field("auth", &self.auth)
            .field("key_source", &self.key_source)
            .field("query", &self.query)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Why a guarded wait stopped early.
enum Interrupt {
    Cancelled,
    Timeout(String),
}

/// Waits for `fut`, unless `cancel` fires or `deadline` passes first.
async fn guarded<F: Future>(
    cancel: &CancellationToken,
    deadline: Option<(Instant, String)>,
    fut: F,
) -> Result<F::Output, Interrupt> {
    match deadline {
        Some((at, why)) => tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Interrupt::Cancelled),
            out = fut => Ok(out),
            _ = tokio::time::sleep_until(at) => Err(Interrupt::Timeout(why)),
        },
        None => tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Interrupt::Cancelled),
            out = fut => Ok(out),
        },
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

impl Transport {
    /// The full URL of `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut builder = self
            .client
            .request(method, self.url(path))
            .headers(self.headers.clone());
        if !self.query.is_empty() {
            builder = builder.query(&self.query);
        }
        if let Some(key) = &self.key {
            let (name, value) = match self.auth {
                Auth::None => return builder,
                Auth::XApiKey => ("x-api-key", key.expose().to_string()),
                Auth::Bearer => ("authorization", format!("Bearer {}", key.expose())),
                Auth::ApiKeyHeader => ("api-key", key.expose().to_string()),
            };
            // A key with characters a header cannot carry is left out; the
            // server then answers 401 with a hint to check the key.
            if let Ok(mut value) = HeaderValue::from_str(&value) {
                value.set_sensitive(true);
                builder = builder.header(name, value);
            }
        }
        builder
    }

    /// `text` without the API key in it.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.key {
            Some(key) => key.scrub(text),
            None => text.to_string(),
        }
    }

    /// `e` with the API key scrubbed from every message it carries.
    pub(crate) fn scrub_error(&self, e: ProviderError) -> ProviderError {
        let s = |m: String| self.scrub(&m);
        match e {
            ProviderError::NotConfigured(m) => ProviderError::NotConfigured(s(m)),
            ProviderError::Rejected {
                provider,
                status,
                message,
            } => ProviderError::Rejected {
                provider,
                status,
                message: s(message),
            },
            ProviderError::RateLimited { provider, message } => ProviderError::RateLimited {
                provider,
                message: s(message),
            },
            ProviderError::Unavailable {
                provider,
                status,
                message,
            } => ProviderError::Unavailable {
                provider,
                status,
                message: s(message),
            },
            ProviderError::Connect {
                provider,
                url,
                message,
            } => ProviderError::Connect {
                provider,
                url: s(url),
                message: s(message),
            },
            ProviderError::Timeout { provider, message } => ProviderError::Timeout {
                provider,
                message: s(message),
            },
            ProviderError::Stream { provider, message } => ProviderError::Stream {
                provider,
                message: s(message),
            },
            ProviderError::Cancelled => ProviderError::Cancelled,
            ProviderError::Other(m) => ProviderError::Other(s(m)),
        }
    }

    /// A stream error.
    pub(crate) fn stream_error(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Stream {
            provider: self.provider.to_string(),
            message: message.into(),
        }
    }

    fn timeout_error(&self, message: String) -> ProviderError {
        ProviderError::Timeout {
            provider: self.provider.to_string(),
            message,
        }
    }

    /// The error for an HTTP error status with body `body`.
    pub(crate) fn status_error(&self, status: u16, body: &str) -> ProviderError {
        let mut message = error_message(body, |m| self.scrub(m));
        if message.is_empty() {
            message = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no message")
                .to_string();
        }
        let provider = self.provider.to_string();
        match status {
            429 => ProviderError::RateLimited { provider, message },
            500..=599 => ProviderError::Unavailable {
                provider,
                status,
                message,
            },
            401 | 403 => {
                let hint = match (&self.key, &self.key_source) {
                    (Some(_), Some(var)) => format!(" (check the API key in ${var})"),
                    (None, _) => " (no API key was sent: set one with `api_key_env`)".to_string(),
                    _ => String::new(),
                };
                ProviderError::Rejected {
                    provider,
                    status,
                    message: format!("{message}{hint}"),
                }
            }
            _ => ProviderError::Rejected {
                provider,
                status,
                message,
            },
        }
    }

    /// The error for a failed `send` (no response).
    fn send_error(&self, e: &reqwest::Error) -> ProviderError {
        let message = error_chain(e);
        if e.is_builder() {
            return ProviderError::NotConfigured(format!(
                "cannot build a request to {}: {message}",
                self.base_url
            ));
        }
        if e.is_timeout() && !e.is_connect() {
            return self.timeout_error(message);
        }
        ProviderError::Connect {
            provider: self.provider.to_string(),
            url: self.base_url.clone(),
            message,
        }
    }

    fn fail_error(&self, fail: Fail, produced: bool) -> ProviderError {
        match fail {
            Fail::Stream(m) => self.stream_error(m),
            Fail::ErrorEvent {
                retry_status: Some(status),
                text,
            } if !produced => self.status_error(status, &text),
            Fail::ErrorEvent { text, .. } => {
                self.stream_error(format!("the server sent an error mid-stream: {text}"))
            }
        }
    }

    /// Streams a POST of `body` to `path`, decoding the response with `D`.
    ///
    /// Returns once the first event is ready (a retry announcement, content,
    /// or the completed response) or the call failed.
    pub(crate) async fn stream<D: Decoder>(
        self: &Arc<Self>,
        path: &str,
        body: &Value,
        framing: Framing,
        cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ProviderError::Other(format!("cannot encode the request: {e}")))?;
        let driver = Driver::<D> {
            t: self.clone(),
            path: path.to_string(),
            body,
            framing,
            decoder: D::default(),
            cancel,
            attempt: 0,
            produced: false,
            got_frame: false,
            queue: VecDeque::new(),
            frames: None,
            pending_delay: None,
            attempt_deadline: None,
            first_byte_deadline: Instant::now(),
            done: false,
        };
        let mut stream = futures::stream::unfold(driver, |mut d| async move {
            d.next().await.map(|item| (item, d))
        })
        .fuse()
        .boxed();
        match stream.next().await {
            Some(Ok(first)) => Ok(futures::stream::once(async move { Ok(first) })
                .chain(stream)
                .boxed()),
            Some(Err(e)) => Err(e),
            None => Err(self.stream_error("the response ended before it started")),
        }
    }

    /// GETs `path` and parses the JSON answer (with retries, no stream).
    pub(crate) async fn get_json(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        let never = CancellationToken::new();
        let mut attempt: u32 = 1;
        loop {
            let deadline = Instant::now() + self.timeouts.first_byte;
            let limit = || {
                Some((
                    deadline,
                    format!("no answer within {}", secs(self.timeouts.first_byte)),
                ))
            };
            let result: Result<Value, (ProviderError, Option<Duration>)> = async {
                let response = guarded(
                    &never,
                    limit(),
                    self.request(reqwest::Method::GET, path).query(query).send(),
                )
                .await
                .map_err(|i| (self.interrupt_error(i), None))?
                .map_err(|e| (self.send_error(&e), None))?;
                let status = response.status().as_u16();
                let wait = retry_after(response.headers());
                let limit_bytes = if (200..300).contains(&status) {
                    JSON_BODY_LIMIT
                } else {
                    ERROR_BODY_LIMIT
                };
                let body = guarded(&never, limit(), read_body(response, limit_bytes))
                    .await
                    .map_err(|i| (self.interrupt_error(i), None))?
                    .map_err(|m| (self.stream_error(m), None))?;
                if !(200..300).contains(&status) {
                    return Err((self.status_error(status, &body), wait));
                }
                serde_json::from_str(&body).map_err(|e| {
                    (
                        self.stream_error(format!(
                            "the answer is not valid JSON ({e}): {}",
                            truncate(&self.scrub(&body), 200)
                        )),
                        None,
                    )
                })
            }
            .await;
            match result {
                Ok(v) => return Ok(v),
                Err((e, wait)) if e.is_retryable() && attempt <= self.retry.max_retries => {
                    let delay = match wait {
                        Some(d) if d > self.retry.max_retry_after => {
                            return Err(self.scrub_error(e));
                        }
                        Some(d) => d,
                        None => self.retry.backoff(attempt),
                    };
                    tracing::warn!(
                        provider = self.provider,
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        "retrying: {}",
                        self.scrub(&retry_reason(&e))
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err((e, _)) => return Err(self.scrub_error(e)),
            }
        }
    }

    fn interrupt_error(&self, i: Interrupt) -> ProviderError {
        match i {
            Interrupt::Cancelled => ProviderError::Cancelled,
            Interrupt::Timeout(m) => self.timeout_error(m),
        }
    }
}

/// A short description of a retryable failure, for `Retry` events.
fn retry_reason(e: &ProviderError) -> String {
    match e {
        ProviderError::RateLimited { message, .. } => format!("HTTP 429 (rate limited): {message}"),
        ProviderError::Unavailable {
            status, message, ..
        } => format!("HTTP {status}: {message}"),
        ProviderError::Connect { message, .. } => format!("connection failed: {message}"),
        ProviderError::Timeout { message, .. } => format!("timed out: {message}"),
        other => other.to_string(),
    }
}

/// Reads at most `limit` bytes of a body as (lossy) UTF-8.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<String, String> {
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

type SseStream = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// A response body split into frames.
enum Frames {
    Sse(SseStream),
    Ndjson {
        response: reqwest::Response,
        buf: Vec<u8>,
        eof: bool,
    },
}

/// Why reading a frame failed.
enum FrameError {
    /// The connection broke.
    Transport(String),
    /// The bytes are not a valid stream.
    Malformed(String),
}

impl Frames {
    fn new(response: reqwest::Response, framing: Framing) -> Self {
        match framing {
            Framing::Sse => Frames::Sse(Box::pin(response.bytes_stream().eventsource())),
            Framing::Ndjson => Frames::Ndjson {
                response,
                buf: Vec::new(),
                eof: false,
            },
        }
    }

    /// The next frame, `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        match self {
            Frames::Sse(events) => match events.next().await {
                None => Ok(None),
                Some(Ok(event)) => Ok(Some(Frame {
                    event: event.event,
                    data: event.data,
                })),
                Some(Err(EventStreamError::Transport(e))) => {
                    Err(FrameError::Transport(error_chain(&e)))
                }
                Some(Err(EventStreamError::Utf8(e))) => Err(FrameError::Malformed(format!(
                    "the stream is not valid UTF-8 ({e})"
                ))),
                Some(Err(EventStreamError::Parser(e))) => Err(FrameError::Malformed(format!(
                    "the stream is not valid server-sent events ({e:?})"
                ))),
            },
            Frames::Ndjson { response, buf, eof } => loop {
                if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = String::from_utf8(line).map_err(|e| {
                        FrameError::Malformed(format!("the stream is not valid UTF-8 ({e})"))
                    })?;
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    return Ok(Some(Frame {
                        event: String::new(),
                        data: line.to_string(),
                    }));
                }
                if *eof {
                    let rest = String::from_utf8_lossy(buf).trim().to_string();
                    buf.clear();
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    // A last line without its newline is accepted only when
                    // it is complete JSON; otherwise the stream was cut.
                    if serde_json::from_str::<Value>(&rest).is_err() {
                        return Err(FrameError::Malformed(
                            "the stream ended in the middle of a line: the response was cut off"
                                .into(),
                        ));
                    }
                    return Ok(Some(Frame {
                        event: String::new(),
                        data: rest,
                    }));
                }
                if buf.len() > LINE_LIMIT {
                    return Err(FrameError::Malformed(format!(
                        "a line of the stream is longer than {} MiB",
                        LINE_LIMIT / (1024 * 1024)
                    )));
                }
                match response.chunk().await {
                    Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                    Ok(None) => *eof = true,
                    Err(e) => return Err(FrameError::Transport(error_chain(&e))),
                }
            },
        }
    }
}

/// The state of one streamed call, across its attempts.
struct Driver<D: Decoder> {
    t: Arc<Transport>,
    path: String,
    body: Vec<u8>,
    framing: Framing,
    decoder: D,
    cancel: CancellationToken,
    /// Attempts started so far.
    attempt: u32,
    /// Whether a content event (anything but `Retry`) was handed out.
    produced: bool,
    /// Whether the current attempt has read a frame.
    got_frame: bool,
    /// Events ready to hand out.
    queue: VecDeque<StreamEvent>,
    /// The current attempt's response body.
    frames: Option<Frames>,
    /// A backoff to sleep before the next attempt.
    pending_delay: Option<Duration>,
    /// When the current attempt must end (the `timeout` setting).
    attempt_deadline: Option<Instant>,
    /// When the current attempt's first frame must have arrived.
    first_byte_deadline: Instant,
    /// Nothing more will come after the queue.
    done: bool,
}

impl<D: Decoder> Driver<D> {
    async fn next(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if !matches!(event, StreamEvent::Retry { .. }) {
                    self.produced = true;
                }
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step().await {
                self.done = true;
                // Dropping the body closes the connection.
                self.frames = None;
                return Some(Err(self.t.scrub_error(e)));
            }
        }
    }

    /// The deadline for the current wait: the step's own, or the attempt's
    /// total, whichever comes first.
    fn deadline(&self, step: Instant, why: String) -> Option<(Instant, String)> {
        match self.attempt_deadline {
            Some(total) if total <= step => Some((
                total,
                format!(
                    "the request took longer than its {} timeout",
                    secs(self.t.timeouts.total.unwrap_or_default())
                ),
            )),
            _ => Some((step, why)),
        }
    }

    fn interrupted(&self, i: Interrupt) -> ProviderError {
        self.t.interrupt_error(i)
    }

    /// Makes progress: sleeps a pending backoff, connects, or reads a frame.
    async fn step(&mut self) -> Result<(), ProviderError> {
        if let Some(delay) = self.pending_delay.take() {
            guarded(&self.cancel, None, tokio::time::sleep(delay))
                .await
                .map_err(|i| self.interrupted(i))?;
        }
        if self.frames.is_none() {
            return match self.connect().await {
                Ok(frames) => {
                    self.frames = Some(frames);
                    Ok(())
                }
                Err((e, wait)) => self.retry_or_fail(e, wait),
            };
        }
        let deadline = if self.got_frame {
            self.deadline(
                Instant::now() + self.t.timeouts.idle,
                format!(
                    "the stream stalled: no data for {} (idle timeout)",
                    secs(self.t.timeouts.idle)
                ),
            )
        } else {
            self.deadline(
                self.first_byte_deadline,
                format!(
                    "no response data within {} (first-byte timeout)",
                    secs(self.t.timeouts.first_byte)
                ),
            )
        };
        let Some(frames) = self.frames.as_mut() else {
            return Ok(());
        };
        let read = match guarded(&self.cancel, deadline, frames.next()).await {
            Ok(read) => read,
            Err(i) => {
                let e = self.interrupted(i);
                return self.retry_or_fail(e, None);
            }
        };
        let mut out = Vec::new();
        match read {
            Ok(Some(frame)) => {
                self.got_frame = true;
                match self.decoder.frame(&frame, &mut out) {
                    Ok(None) => self.queue.extend(out),
                    Ok(Some(response)) => {
                        self.queue.extend(out);
                        self.queue.push_back(StreamEvent::Completed(response));
                        self.done = true;
                        self.frames = None;
                    }
                    Err(fail) => {
                        let e = self.t.fail_error(fail, self.produced);
                        return self.retry_or_fail(e, None);
                    }
                }
                Ok(())
            }
            Ok(None) => match self.decoder.eof(&mut out) {
                Ok(response) => {
                    self.queue.extend(out);
                    self.queue.push_back(StreamEvent::Completed(response));
                    self.done = true;
                    self.frames = None;
                    Ok(())
                }
                Err(fail) => Err(self.t.fail_error(fail, true)),
            },
            Err(FrameError::Transport(m)) => Err(self
                .t
                .stream_error(format!("the connection broke mid-stream: {m}"))),
            Err(FrameError::Malformed(m)) => Err(self.t.stream_error(m)),
        }
    }

    /// One attempt: sends the request and checks the status.
    async fn connect(&mut self) -> Result<Frames, (ProviderError, Option<Duration>)> {
        self.attempt += 1;
        let start = Instant::now();
        self.attempt_deadline = self.t.timeouts.total.map(|d| start + d);
        self.first_byte_deadline = start + self.t.timeouts.first_byte;
        self.got_frame = false;
        self.decoder = D::default();
        tracing::debug!(
            provider = self.t.provider,
            url = %self.t.url(&self.path),
            attempt = self.attempt,
            bytes = self.body.len(),
            "sending request"
        );
        let first_byte = self.deadline(
            self.first_byte_deadline,
            format!(
                "no response within {} (first-byte timeout)",
                secs(self.t.timeouts.first_byte)
            ),
        );
        let send = self
            .t
            .request(reqwest::Method::POST, &self.path)
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send();
        let response = guarded(&self.cancel, first_byte.clone(), send)
            .await
            .map_err(|i| (self.interrupted(i), None))?
            .map_err(|e| (self.t.send_error(&e), None))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let wait = retry_after(response.headers());
            let body = guarded(
                &self.cancel,
                first_byte.clone(),
                read_body(response, ERROR_BODY_LIMIT),
            )
            .await
            .map_err(|i| (self.interrupted(i), None))?
            .unwrap_or_default();
            return Err((self.t.status_error(status, &body), wait));
        }
        let json_answer = self.framing == Framing::Sse
            && response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if json_answer {
            let body = guarded(
                &self.cancel,
                first_byte.clone(),
                read_body(response, ERROR_BODY_LIMIT),
            )
            .await
            .map_err(|i| (self.interrupted(i), None))?
            .unwrap_or_default();
            return Err((
                self.t.stream_error(format!(
                    "expected an event stream but the server answered with JSON: {}",
                    error_message(&body, |m| self.t.scrub(m))
                )),
                None,
            ));
        }
        Ok(Frames::new(response, self.framing))
    }

    /// Schedules a retry of a failed attempt, or gives up with `e`.
    fn retry_or_fail(
        &mut self,
        e: ProviderError,
        wait: Option<Duration>,
    ) -> Result<(), ProviderError> {
        self.frames = None;
        let policy = &self.t.retry;
        if self.produced || !e.is_retryable() || self.attempt > policy.max_retries {
            return Err(e);
        }
        let delay = match wait {
            Some(d) if d > policy.max_retry_after => return Err(e),
            Some(d) => d,
            None => policy.backoff(self.attempt),
        };
        let reason = self.t.scrub(&retry_reason(&e));
        tracing::warn!(
            provider = self.t.provider,
            attempt = self.attempt + 1,
            delay_ms = delay.as_millis() as u64,
            "retrying: {reason}"
        );
        self.queue.push_back(StreamEvent::Retry {
            attempt: self.attempt + 1,
            delay,
            reason,
        });
        self.pending_delay = Some(delay);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(config: Value) -> ModuleSpec {
        ModuleSpec {
            module: "provider-test".into(),
            config: config.as_object().cloned().unwrap_or_default(),
        }
    }

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

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        let future = chrono::Utc::now() + chrono::Duration::seconds(30);
        let date = future.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(75) && b1 <= Duration::from_millis(100));
            let b2 = p.backoff(2);
            assert!(b2 >= Duration::from_millis(150) && b2 <= Duration::from_millis(200));
            let b9 = p.backoff(9);
            assert!(b9 <= Duration::from_millis(350) && b9 >= Duration::from_millis(262));
        }
        assert!(p.backoff(u32::MAX) <= Duration::from_millis(350));
    }

    #[test]
    fn config_is_type_checked() {
        let c = ConfigReader::new(
            &spec(
                json!({"model": "m", "timeout": 2.5, "idle_timeout": 1, "max_retries": 0,
                          "retry_base_ms": 5, "temperature": 0.3, "base_url": "http://h:1/v1/",
                          "priority": -1}),
            ),
            "provider-test",
        )
        .unwrap()
        .common()
        .unwrap();
        assert_eq!(c.model.as_deref(), Some("m"));
        assert_eq!(c.timeouts.total, Some(Duration::from_millis(2500)));
        assert_eq!(c.timeouts.idle, Duration::from_secs(1));
        assert_eq!(c.retry.max_retries, 0);
        assert_eq!(c.retry.base, Duration::from_millis(5));
        assert_eq!(c.base_url.as_deref(), Some("http://h:1/v1"));

        for (bad, needle) in [
            (
                json!({"max_tokens": "many"}),
                "`max_tokens` must be a non-negative whole number",
            ),
            (
                json!({"timeout": 0}),
                "`timeout` must be a positive number of seconds",
            ),
            (
                json!({"temperature": 7}),
                "`temperature` must be between 0 and 2",
            ),
            (json!({"base_url": "ftp://x"}), "must start with http"),
            (
                json!({"base_url": "http://u:p@x"}),
                "must not carry credentials",
            ),
            (json!({"model": 3}), "`model` must be a string"),
            (
                json!({"priority": "high"}),
                "`priority` must be a whole number",
            ),
        ] {
            let err = ConfigReader::new(&spec(bad), "provider-test")
                .unwrap()
                .common()
                .unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = ConfigReader::new(&spec(json!({"api_key": "sk-x"})), "provider-test")
            .err()
            .unwrap();
        assert!(err.to_string().contains("api_key_env"), "{err}");
        assert!(!err.to_string().contains("sk-x"), "{err}");
    }

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
    fn temperatures_keep_their_decimal_form() {
        assert_eq!(f32_json(0.1).to_string(), "0.1");
        assert_eq!(f32_json(0.7).to_string(), "0.7");
        assert_eq!(f32_json(1.0).to_string(), "1.0");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
