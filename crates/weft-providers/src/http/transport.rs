//! The connection to one vendor API ([`Transport`]): requests, guarded
//! waits (cancellation and deadlines) and the error of each failure.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{
    ApiKey, Auth, Decoder, Driver, ERROR_BODY_LIMIT, Fail, Framing, JSON_BODY_LIMIT, RetryPolicy,
    Timeouts, error_chain, error_message, read_body, retry_after, retry_reason, truncate,
};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_core::provider::{ProviderError, ProviderStream};

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
pub(super) enum Interrupt {
    Cancelled,
    Timeout(String),
}

/// Waits for `fut`, unless `cancel` fires or `deadline` passes first.
pub(super) async fn guarded<F: Future>(
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

pub(super) fn secs(d: Duration) -> String {
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

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
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
    pub(super) fn send_error(&self, e: &reqwest::Error) -> ProviderError {
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

    pub(super) fn fail_error(&self, fail: Fail, produced: bool) -> ProviderError {
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

    pub(super) fn interrupt_error(&self, i: Interrupt) -> ProviderError {
        match i {
            Interrupt::Cancelled => ProviderError::Cancelled,
            Interrupt::Timeout(m) => self.timeout_error(m),
        }
    }
}
