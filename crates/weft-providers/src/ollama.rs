//! `provider-ollama`: Ollama's native chat API.
//!
//! Requests go to `POST {base_url}/api/chat` (default
//! `http://127.0.0.1:11434`, or `OLLAMA_HOST` when set, as the Ollama CLI
//! reads it) with `stream: true`. The answer is NDJSON: one object per line
//! with `message.content`, `message.thinking` and `message.tool_calls`
//! (each call whole: `function.name` and `function.arguments` as an object),
//! ending with a line carrying `done: true`, `done_reason`,
//! `prompt_eval_count` (input tokens) and `eval_count` (output tokens). A
//! line with an `error` field fails the stream; a stream that ends before
//! `done: true` was cut off.
//!
//! Ollama's tool calls carry no id; weft gives each one a unique
//! `call_…` id. Tool results are sent back as
//! `{"role": "tool", "content", "tool_name"}`, the name found from the call
//! the result answers. Images go in a message's `images` (base64 only; an
//! image URL is left out with a warning). No API key is needed.
//!
//! Configuration (besides the common keys, see the crate docs):
//! `keep_alive` (string or number, passed through), `think` (bool: ask for
//! the model's thinking; also on when a thinking budget is set).
//! `context_window` is sent as `options.num_ctx` (Ollama's default context
//! is small and silently truncates long conversations). `max_tokens` is
//! `options.num_predict`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use weft_core::message::{ContentBlock, ImageSource, Message, Role, Usage};
use weft_core::mount::{ModuleSpec, MountError};
use weft_core::provider::{
    ChatRequest, ChatResponse, ModelInfo, Provider, ProviderError, ProviderInfo, ProviderStream,
    StopReason, StreamEvent,
};
use weft_core::registry::ModuleRegistry;

use crate::blocks::{Blocks, stop_reason};
use crate::http::{
    Auth, CommonConfig, ConfigReader, Decoder, EnvLookup, Fail, Frame, Framing, Transport,
    build_client, f32_json, process_env, truncate, validate_base_url,
};
use crate::openai::function_tools;

/// The module name.
pub const MODULE: &str = "provider-ollama";
/// Ollama's default address.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";
/// The model used when neither the request nor the config names one.
pub const DEFAULT_MODEL: &str = "llama3.2";
/// The environment variable Ollama reads its address from.
pub const HOST_ENV: &str = "OLLAMA_HOST";
/// The context window assumed when the config sets none.
pub const DEFAULT_CONTEXT_WINDOW: usize = 32_768;
/// The output budget reported when the config sets none.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;

const EXTRA_KEYS: &[&str] = &["keep_alive", "think"];

/// The base URL for an `OLLAMA_HOST` value (`host`, `host:port`,
/// `http://host:port`, …): scheme `http` and port 11434 unless given; the
/// wildcard `0.0.0.0` (a listen address) becomes `127.0.0.1`.
pub fn base_url_from_host(host: &str) -> Result<String, String> {
    let host = host.trim().trim_end_matches('/');
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    };
    let mut url = reqwest::Url::parse(&with_scheme)
        .map_err(|e| format!("{HOST_ENV}={host:?} is not a valid address ({e})"))?;
    if url.host_str() == Some("0.0.0.0") {
        let _ = url.set_host(Some("127.0.0.1"));
    }
    if url.port().is_none() && !host.contains("://") {
        let _ = url.set_port(Some(11434));
    }
    validate_base_url(url.as_str())
}

/// The base URL to use: the configured one, else `OLLAMA_HOST`, else the
/// default.
pub(crate) fn resolve_base_url(
    configured: Option<&str>,
    env: EnvLookup<'_>,
) -> Result<String, String> {
    match (configured, env(HOST_ENV)) {
        (Some(url), _) => Ok(url.to_string()),
        (None, Some(host)) => base_url_from_host(&host),
        (None, None) => Ok(DEFAULT_BASE_URL.to_string()),
    }
}

/// The Ollama provider.
#[derive(Debug)]
pub struct OllamaProvider {
    transport: Arc<Transport>,
    config: CommonConfig,
    keep_alive: Option<Value>,
    think: Option<bool>,
}

impl OllamaProvider {
    /// Builds the provider from its module spec (`OLLAMA_HOST` from the
    /// process environment).
    pub fn from_spec(spec: &ModuleSpec) -> Result<Self, MountError> {
        Self::from_spec_with_env(spec, &process_env)
    }

    /// Builds the provider, looking environment variables up with `env`.
    pub fn from_spec_with_env(
        spec: &ModuleSpec,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self, MountError> {
        let reader = ConfigReader::new(spec, MODULE)?;
        let config = reader.common()?;
        let think = reader.boolean("think")?;
        let keep_alive = match spec.config.get("keep_alive") {
            None | Some(Value::Null) => None,
            Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
            Some(other) => {
                return Err(reader.error(format!(
                    "`keep_alive` must be a duration string (\"5m\") or a number of seconds, not {other}"
                )));
            }
        };
        reader.warn_unknown(EXTRA_KEYS);
        let base_url =
            resolve_base_url(config.base_url.as_deref(), env).map_err(|m| reader.error(m))?;
        let client = build_client(config.timeouts.connect).map_err(|m| reader.error(m))?;
        let transport = Transport {
            provider: "ollama",
            client,
            base_url,
            key: None,
            auth: Auth::None,
            key_source: None,
            headers: Default::default(),
            query: Vec::new(),
            timeouts: config.timeouts.clone(),
            retry: config.retry.clone(),
        };
        Ok(OllamaProvider {
            transport: Arc::new(transport),
            config,
            keep_alive,
            think,
        })
    }

    /// The JSON body sent to `/api/chat` for `request`.
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let model = request
            .model
            .clone()
            .or_else(|| self.config.model.clone())
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert(
            "messages".into(),
            Value::Array(convert_messages(&request.messages)),
        );
        if !request.tools.is_empty() {
            body.insert("tools".into(), function_tools(&request.tools));
        }
        // Structured output: Ollama constrains the answer to the schema.
        if let Some(format) = &request.response_format {
            body.insert("format".into(), format.schema.clone());
        }
        let mut options = Map::new();
        if let Some(t) = request.temperature.or(self.config.temperature) {
            options.insert("temperature".into(), f32_json(t));
        }
        if let Some(n) = request.max_tokens.or(self.config.max_tokens) {
            options.insert("num_predict".into(), json!(n));
        }
        if let Some(n) = self.config.context_window {
            options.insert("num_ctx".into(), json!(n));
        }
        if !request.stop_sequences.is_empty() {
            options.insert("stop".into(), json!(request.stop_sequences));
        }
        if !options.is_empty() {
            body.insert("options".into(), Value::Object(options));
        }
        let think = self.think.or_else(|| {
            request
                .thinking_budget
                .or(self.config.thinking_budget)
                .map(|_| true)
        });
        if let Some(think) = think {
            body.insert("think".into(), json!(think));
        }
        if let Some(k) = &self.keep_alive {
            body.insert("keep_alive".into(), k.clone());
        }
        body.insert("stream".into(), json!(true));
        Value::Object(body)
    }
}

/// Converts weft messages to Ollama chat messages.
pub(crate) fn convert_messages(messages: &[Arc<Message>]) -> Vec<Value> {
    let names: HashMap<&str, &str> = messages
        .iter()
        .flat_map(|m| m.tool_calls())
        .map(|(id, name, _)| (id, name))
        .collect();
    let mut out = Vec::new();
    for m in messages {
        match m.role {
            Role::System => {
                let text = m.text_content();
                if !text.trim().is_empty() {
                    out.push(json!({"role": "system", "content": text}));
                }
            }
            Role::User | Role::Tool => {
                let mut images = Vec::new();
                for block in &m.content {
                    match block {
                        ContentBlock::ToolResult {
                            call_id, output, ..
                        } => {
                            let mut msg = Map::new();
                            msg.insert("role".into(), json!("tool"));
                            msg.insert("content".into(), json!(output));
                            if let Some(name) = names.get(call_id.as_str()) {
                                msg.insert("tool_name".into(), json!(name));
                            }
                            out.push(Value::Object(msg));
                        }
                        ContentBlock::Image {
                            source: ImageSource::Base64 { data, .. },
                        } => images.push(json!(data)),
                        ContentBlock::Image {
                            source: ImageSource::Url { url },
                        } => tracing::warn!(
                            "Ollama takes base64 images only; the image at {url} was left out"
                        ),
                        _ => {}
                    }
                }
                let text = m.text_content();
                if text.is_empty() && images.is_empty() {
                    continue;
                }
                let mut msg = Map::new();
                msg.insert("role".into(), json!("user"));
                msg.insert("content".into(), json!(text));
                if !images.is_empty() {
                    msg.insert("images".into(), Value::Array(images));
                }
                out.push(Value::Object(msg));
            }
            Role::Assistant => {
                let text = m.text_content();
                let calls: Vec<Value> = m
                    .tool_calls()
                    .into_iter()
                    .map(|(_, name, arguments)| {
                        let arguments = match arguments {
                            Value::Null => json!({}),
                            other => other.clone(),
                        };
                        json!({"function": {"name": name, "arguments": arguments}})
                    })
                    .collect();
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert("content".into(), json!(text));
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(msg));
            }
        }
    }
    out
}

/// Decodes Ollama's NDJSON chat stream.
#[derive(Default)]
struct OllamaDecoder {
    blocks: Blocks,
    text: Option<usize>,
    thinking: Option<usize>,
    model: Option<String>,
}

impl OllamaDecoder {
    fn close_open(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), Fail> {
        for i in [self.text.take(), self.thinking.take()]
            .into_iter()
            .flatten()
        {
            if self.blocks.is_open(i) {
                self.blocks.end(i, out)?;
            }
        }
        Ok(())
    }

    fn message(&mut self, message: &Value, out: &mut Vec<StreamEvent>) -> Result<(), Fail> {
        if let Some(thinking) = message
            .get("thinking")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let i = match self.thinking {
                Some(i) if self.blocks.is_open(i) => i,
                _ => {
                    self.close_open(out)?;
                    let i = self.blocks.start_thinking(out);
                    self.thinking = Some(i);
                    i
                }
            };
            self.blocks.thinking(i, thinking, out)?;
        }
        if let Some(text) = message
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let i = match self.text {
                Some(i) if self.blocks.is_open(i) => i,
                _ => {
                    self.close_open(out)?;
                    let i = self.blocks.start_text(out);
                    self.text = Some(i);
                    i
                }
            };
            self.blocks.text(i, text, out)?;
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.close_open(out)?;
                let function = &call["function"];
                let name = function
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| Fail::Stream("a tool call without a function name".into()))?;
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple()));
                // Arguments arrive whole: an object (or, from some models, a
                // JSON string); either way one fragment.
                let fragment = match function.get("arguments") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                let i = self.blocks.start_tool(&id, name, None, out);
                self.blocks.args(i, &fragment, out)?;
                self.blocks.end(i, out)?;
            }
        }
        Ok(())
    }
}

impl Decoder for OllamaDecoder {
    fn frame(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<Option<ChatResponse>, Fail> {
        let v: Value = serde_json::from_str(&frame.data).map_err(|e| {
            Fail::Stream(format!(
                "invalid JSON in a line of the stream ({e}): {}",
                truncate(&frame.data, 200)
            ))
        })?;
        if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
            let text = match error {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Err(Fail::ErrorEvent {
                retry_status: None,
                text,
            });
        }
        if self.model.is_none()
            && let Some(model) = v.get("model").and_then(Value::as_str)
        {
            self.model = Some(model.to_string());
        }
        if let Some(message) = v.get("message").filter(|m| m.is_object()) {
            self.message(message, out)?;
        }
        if v.get("done").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        self.text = None;
        self.thinking = None;
        self.blocks.end_all(out)?;
        let count = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let stop = if self.blocks.has_tool_calls() {
            StopReason::ToolUse
        } else {
            match v.get("done_reason").and_then(Value::as_str) {
                Some(reason) => stop_reason(reason),
                None => StopReason::EndTurn,
            }
        };
        Ok(Some(ChatResponse {
            content: self.blocks.take_content(),
            usage: Usage {
                input_tokens: count("prompt_eval_count"),
                output_tokens: count("eval_count"),
                ..Usage::default()
            },
            stop_reason: stop,
            model: self.model.clone(),
        }))
    }

    fn eof(&mut self, _out: &mut Vec<StreamEvent>) -> Result<ChatResponse, Fail> {
        Err(Fail::Stream(
            "the stream ended before `done: true`: the response was cut off".into(),
        ))
    }
}

/// Parses `/api/tags` into models.
pub(crate) fn parse_tags(tags: &Value) -> Option<Vec<ModelInfo>> {
    let models = tags.get("models")?.as_array()?;
    Some(
        models
            .iter()
            .filter_map(|m| {
                let id = m
                    .get("model")
                    .or_else(|| m.get("name"))
                    .and_then(Value::as_str)?;
                let display = m.get("name").and_then(Value::as_str).filter(|n| *n != id);
                Some(ModelInfo {
                    id: id.to_string(),
                    display_name: display.map(str::to_string),
                    context_window: None,
                })
            })
            .collect(),
    )
}

#[async_trait]
impl Provider for OllamaProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "ollama".into(),
            default_model: self
                .config
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            context_window: self.config.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW),
            max_output_tokens: self.config.max_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
            supports_tools: true,
            supports_thinking: true,
        }
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let tags = self.transport.get_json("/api/tags", &[]).await?;
        parse_tags(&tags).ok_or_else(|| {
            self.transport
                .stream_error("the model list has no `models` array")
        })
    }

    async fn stream(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError> {
        let body = self.request_body(&request);
        self.transport
            .stream::<OllamaDecoder>("/api/chat", &body, Framing::Ndjson, cancel)
            .await
    }
}

/// Registers `provider-ollama`.
pub fn register(registry: &mut ModuleRegistry) {
    registry.register_provider(MODULE, |spec, _env| {
        Ok(Arc::new(OllamaProvider::from_spec(spec)?) as Arc<dyn Provider>)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_forms() {
        assert_eq!(
            base_url_from_host("127.0.0.1").unwrap(),
            "http://127.0.0.1:11434"
        );
        assert_eq!(
            base_url_from_host("0.0.0.0:9999").unwrap(),
            "http://127.0.0.1:9999"
        );
        assert_eq!(
            base_url_from_host("http://ollama.lan:8080/").unwrap(),
            "http://ollama.lan:8080"
        );
        assert_eq!(
            base_url_from_host("https://ollama.example.com").unwrap(),
            "https://ollama.example.com"
        );
        assert!(base_url_from_host("http://[bad").is_err());
        let env = |v: &str| (v == HOST_ENV).then(|| "localhost:1234".to_string());
        assert_eq!(
            resolve_base_url(None, &env).unwrap(),
            "http://localhost:1234"
        );
        assert_eq!(
            resolve_base_url(Some("http://x:1"), &env).unwrap(),
            "http://x:1"
        );
        assert_eq!(resolve_base_url(None, &|_| None).unwrap(), DEFAULT_BASE_URL);
    }
}
