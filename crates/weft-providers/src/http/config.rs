//! Configuration read from a module spec ([`CommonConfig`],
//! [`ConfigReader`]), the call's [`Timeouts`], base URL validation and the
//! HTTP client.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{RetryPolicy, USER_AGENT, error_chain};
use serde_json::Value;
use weft_core::mount::{ModuleSpec, MountError};

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
}
