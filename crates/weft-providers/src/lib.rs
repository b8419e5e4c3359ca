//! # weft-providers
//!
//! weft's LLM providers, each an implementation of
//! [`weft_core::provider::Provider`]:
//!
//! - `provider-anthropic` ([`anthropic`]): Anthropic's Messages API.
//! - `provider-openai` ([`openai`]): the Chat Completions API of OpenAI or
//!   any compatible server (vLLM, llama.cpp, LM Studio, Azure OpenAI).
//! - `provider-ollama` ([`ollama`]): Ollama's native `/api/chat`.
//! - `provider-scripted` ([`scripted`]): deterministic responses from a
//!   script, for tests, demos and benchmarks; also an `echo` mode.
//!
//! [`register`] adds every provider module to a
//! [`weft_core::registry::ModuleRegistry`]; [`build_provider`] builds one
//! without a session (for `weft models`); [`auto_select`] picks a provider
//! from the environment when none is named; [`provider_module_name`] maps
//! the CLI's short names to module names.
//!
//! ## Configuration (the vendor providers)
//!
//! From the mount plan's `config` of the provider module:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `model` | the model when the request names none | per provider |
//! | `base_url` | the API's address | per provider |
//! | `max_tokens` | the output budget | Anthropic 8192; others: the server's |
//! | `temperature` | sampling temperature (0–2) | the server's |
//! | `context_window` | the model's context window, in tokens | per provider |
//! | `thinking_budget` | extended-thinking budget, in tokens | off |
//! | `api_key_env` | the environment variable holding the key | `ANTHROPIC_API_KEY` / `OPENAI_API_KEY` |
//! | `timeout` | seconds a whole attempt may take | none |
//! | `connect_timeout` | seconds to connect | 10 |
//! | `first_byte_timeout` | seconds from sending until the first data | 300 |
//! | `idle_timeout` | seconds between two pieces of a stream | 120 |
//! | `max_retries` | retries after the first attempt | 3 |
//! | `retry_base_ms` / `retry_max_ms` | the first / largest backoff | 500 / 8000 |
//! | `max_retry_after` | the longest `retry-after` honoured, in seconds | 60 |
//! | `priority` | provider order in the session (read by the runtime) | plan order |
//!
//! API keys come from the environment only and are read when the provider
//! is built; a key in the config (`api_key`, …) is refused, so a mount plan
//! never holds one. Keys are redacted from `Debug` output and scrubbed from
//! every error, retry reason and log line.
//!
//! Retries (exponential backoff with jitter, honouring `retry-after-ms` and
//! `retry-after`) cover connection failures, HTTP 429, 500–599 (and 529),
//! Anthropic's `overloaded_error` events and timeouts — only while the
//! response has produced no content; each is announced with
//! [`StreamEvent::Retry`](weft_core::provider::StreamEvent::Retry). A
//! malformed, cut or erroring stream is a
//! [`ProviderError::Stream`]; a stream never completes a half response.
//!
//! What it must not know about: storage, sessions, HTTP servers, terminals.

#![warn(missing_docs)]

pub mod anthropic;
mod blocks;
mod http;
pub mod ollama;
pub mod openai;
pub mod scripted;
mod structured;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use weft_core::mount::{ModuleSpec, MountError};
use weft_core::provider::{Provider, ProviderError};
use weft_core::registry::ModuleRegistry;

/// Registers every provider module of this crate: `provider-anthropic`,
/// `provider-openai`, `provider-ollama` and `provider-scripted`.
pub fn register(registry: &mut ModuleRegistry) {
    scripted::register(registry);
    anthropic::register(registry);
    openai::register(registry);
    ollama::register(registry);
}

/// The module name for a provider named on the command line:
/// `anthropic`, `openai`, `ollama`, `scripted` (any case) or the full
/// `provider-…` name. `None` for anything else.
pub fn provider_module_name(short: &str) -> Option<&'static str> {
    let name = short.trim().to_ascii_lowercase();
    let name = name.strip_prefix("provider-").unwrap_or(&name);
    match name {
        "anthropic" => Some(anthropic::MODULE),
        "openai" => Some(openai::MODULE),
        "ollama" => Some(ollama::MODULE),
        "scripted" => Some(scripted::MODULE),
        _ => None,
    }
}

/// Builds one of this crate's providers from a module spec, outside a
/// session (for `weft models`). Keys are read from the process environment.
pub fn build_provider(spec: &ModuleSpec) -> Result<Arc<dyn Provider>, MountError> {
    let module = provider_module_name(&spec.module).ok_or_else(|| MountError::UnknownModule {
        kind: "provider",
        name: spec.module.clone(),
        known: vec![
            anthropic::MODULE.into(),
            ollama::MODULE.into(),
            openai::MODULE.into(),
            scripted::MODULE.into(),
        ],
    })?;
    let provider: Arc<dyn Provider> = match module {
        anthropic::MODULE => Arc::new(anthropic::AnthropicProvider::from_spec(spec)?),
        openai::MODULE => Arc::new(openai::OpenAiProvider::from_spec(spec)?),
        ollama::MODULE => Arc::new(ollama::OllamaProvider::from_spec(spec)?),
        _ => Arc::new(scripted::ScriptedProvider::from_spec(spec)?),
    };
    Ok(provider)
}

/// How long [`auto_select`] waits for Ollama to answer.
pub const OLLAMA_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Picks a provider when none is named: Anthropic if `ANTHROPIC_API_KEY` is
/// set, else OpenAI if `OPENAI_API_KEY` is set, else Ollama if it answers
/// `GET /api/tags` on its address (`OLLAMA_HOST`, default
/// `127.0.0.1:11434`) within [`OLLAMA_PROBE_TIMEOUT`] — with the model set
/// to `llama3.2` when installed, else the first installed model — else
/// [`ProviderError::NotConfigured`] saying what to set.
pub async fn auto_select() -> Result<ModuleSpec, ProviderError> {
    auto_select_with_env(&http::process_env).await
}

/// [`auto_select`] with environment variables looked up by `env` (blank
/// values count as unset).
pub async fn auto_select_with_env(
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<ModuleSpec, ProviderError> {
    let set = |var: &str| env(var).is_some_and(|v| !v.trim().is_empty());
    if set(anthropic::API_KEY_ENV) {
        return Ok(ModuleSpec::named(anthropic::MODULE));
    }
    if set(openai::API_KEY_ENV) {
        return Ok(ModuleSpec::named(openai::MODULE));
    }
    let base_url = ollama::resolve_base_url(None, env).map_err(ProviderError::NotConfigured)?;
    match probe_ollama(&base_url).await {
        Some(models) if models.is_empty() => Err(ProviderError::NotConfigured(format!(
            "Ollama answers at {base_url} but has no models: run `ollama pull {}`, or set ANTHROPIC_API_KEY or OPENAI_API_KEY",
            ollama::DEFAULT_MODEL
        ))),
        Some(models) => {
            let default = ollama::DEFAULT_MODEL;
            let model = models
                .iter()
                .find(|m| *m == default || m.strip_suffix(":latest") == Some(default))
                .or_else(|| models.first())
                .cloned()
                .unwrap_or_else(|| default.to_string());
            let mut config = Map::new();
            config.insert("model".into(), json!(model));
            if base_url != ollama::DEFAULT_BASE_URL {
                config.insert("base_url".into(), Value::String(base_url));
            }
            Ok(ModuleSpec {
                module: ollama::MODULE.into(),
                config,
            })
        }
        None => Err(ProviderError::NotConfigured(
            "no provider configured: set ANTHROPIC_API_KEY or OPENAI_API_KEY, start Ollama on 127.0.0.1:11434, or pass --provider ...".into(),
        )),
    }
}

/// The installed Ollama models, or `None` when nothing answers like Ollama.
async fn probe_ollama(base_url: &str) -> Option<Vec<String>> {
    let client = http::build_client(OLLAMA_PROBE_TIMEOUT).ok()?;
    let answer = async {
        let response = client
            .get(format!("{base_url}/api/tags"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let tags: Value = response.json().await.ok()?;
        let models = ollama::parse_tags(&tags)?;
        Some(models.into_iter().map(|m| m.id).collect::<Vec<_>>())
    };
    tokio::time::timeout(OLLAMA_PROBE_TIMEOUT, answer)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_map_to_modules() {
        assert_eq!(
            provider_module_name("anthropic"),
            Some("provider-anthropic")
        );
        assert_eq!(provider_module_name("OpenAI"), Some("provider-openai"));
        assert_eq!(
            provider_module_name("provider-ollama"),
            Some("provider-ollama")
        );
        assert_eq!(provider_module_name("scripted"), Some("provider-scripted"));
        assert_eq!(provider_module_name("gemini"), None);
        assert_eq!(provider_module_name("provider-"), None);
    }

    #[test]
    fn register_adds_all_providers() {
        let mut r = ModuleRegistry::empty();
        register(&mut r);
        assert_eq!(
            r.provider_names(),
            vec![
                "provider-anthropic",
                "provider-ollama",
                "provider-openai",
                "provider-scripted"
            ]
        );
    }

    #[tokio::test]
    async fn auto_select_prefers_keys_in_order() {
        let both =
            |v: &str| matches!(v, "ANTHROPIC_API_KEY" | "OPENAI_API_KEY").then(|| "k".to_string());
        assert_eq!(
            auto_select_with_env(&both).await.unwrap().module,
            "provider-anthropic"
        );
        let openai = |v: &str| (v == "OPENAI_API_KEY").then(|| "k".to_string());
        assert_eq!(
            auto_select_with_env(&openai).await.unwrap().module,
            "provider-openai"
        );
        // Blank keys are unset; nothing listens on port 9 (discard).
        let nothing = |v: &str| match v {
            "ANTHROPIC_API_KEY" => Some("  ".to_string()),
            "OLLAMA_HOST" => Some("127.0.0.1:9".to_string()),
            _ => None,
        };
        let err = auto_select_with_env(&nothing).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "no provider configured: set ANTHROPIC_API_KEY or OPENAI_API_KEY, start Ollama on 127.0.0.1:11434, or pass --provider ..."
        );
    }
}
