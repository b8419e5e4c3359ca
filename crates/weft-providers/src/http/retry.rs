//! Retries: the backoff policy, the delay a response asks for
//! (`retry-after`) and the reason announced with each retry.

use std::time::Duration;

use reqwest::header::HeaderMap;
use weft_core::provider::ProviderError;

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

/// A short description of a retryable failure, for `Retry` events.
pub(super) fn retry_reason(e: &ProviderError) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
}
