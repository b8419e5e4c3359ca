//! `provider-openai`: the Chat Completions API, from OpenAI or any
//! compatible server (vLLM, llama.cpp's server, LM Studio, Azure OpenAI, …).
//!
//! Requests go to `POST {base_url}/chat/completions` (default base URL
//! `https://api.openai.com/v1`) with `stream: true` and
//! `stream_options: {include_usage: true}`. Each SSE `data:` chunk carries
//! `choices[0].delta` with `content` (and `refusal`, kept as text),
//! `tool_calls[]` (by `index`, the
//! `arguments` arriving in fragments), `reasoning_content` / `reasoning`
//! (the thinking of compatible reasoning servers) and `finish_reason`; a last
//! chunk with empty `choices` carries `usage`; `data: [DONE]` ends the
//! stream. A chunk with an `error` object (as compatible servers send) fails
//! the stream. A stream that ends cleanly after a `finish_reason` but without
//! `[DONE]` is accepted (some servers omit it); one that ends before a
//! `finish_reason` was cut off.
//!
//! **Request shape.** System messages stay `system` messages in place; a
//! `tool` message becomes one `{"role": "tool", "tool_call_id", "content"}`
//! message per result; assistant tool calls become `tool_calls` with the
//! arguments as a JSON string. Thinking blocks are not sent back (the API has
//! no field for them and some compatible servers refuse one).
//!
//! **Usage.** `prompt_tokens_details.cached_tokens` is recorded as
//! [`Usage::cache_read_tokens`] and subtracted from `prompt_tokens` to give
//! [`Usage::input_tokens`], so that — as with Anthropic — input tokens count
//! only the uncached prompt.
//!
//! **Keys.** With the default base URL a key is required (`OPENAI_API_KEY`
//! or `api_key_env`). With another `base_url` the key is optional: the
//! variable named by `api_key_env` (then required), else `OPENAI_API_KEY` if
//! set (as the official SDKs do), else no `Authorization` header. With
//! `azure: true` the key comes from `AZURE_OPENAI_API_KEY` (or
//! `OPENAI_API_KEY`) and is sent as `api-key`; `auth_header: api-key` does
//! the same for other servers. `api_version` adds `?api-version=` to every
//! request (Azure's `base_url` is the deployment URL,
//! `https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT`).
//!
//! Configuration (besides the common keys, see the crate docs): `azure`,
//! `api_version`, `auth_header` (`bearer` or `api-key`), `include_usage`
//! (bool, default true), `max_tokens_param` (`max_tokens` or
//! `max_completion_tokens`; default `max_completion_tokens` for
//! api.openai.com and Azure, `max_tokens` for other servers).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
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
    ApiKey, Auth, CommonConfig, ConfigReader, Decoder, EnvLookup, Fail, Frame, Framing, Transport,
    build_client, f32_json, process_env, truncate,
};

/// The module name.
pub const MODULE: &str = "provider-openai";
/// The API's default address.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The model used when neither the request nor the config names one.
pub const DEFAULT_MODEL: &str = "gpt-4o";
/// The environment variable the API key is read from by default.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";
/// The environment variable the key is read from with `azure: true`.
pub const AZURE_API_KEY_ENV: &str = "AZURE_OPENAI_API_KEY";
/// The context window assumed when the config sets none.
pub const DEFAULT_CONTEXT_WINDOW: usize = 128_000;
/// The output budget reported when the config sets none (nothing is sent
/// then: the server's default applies).
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 8192;

const EXTRA_KEYS: &[&str] = &[
    "azure",
    "api_version",
    "auth_header",
    "include_usage",
    "max_tokens_param",
];

/// The OpenAI Chat Completions provider.
#[derive(Debug)]
pub struct OpenAiProvider {
    transport: Arc<Transport>,
    config: CommonConfig,
    include_usage: bool,
    max_tokens_param: &'static str,
}

impl OpenAiProvider {
    /// Builds the provider from its module spec, reading the API key from
    /// the process environment.
    pub fn from_spec(spec: &ModuleSpec) -> Result<Self, MountError> {
        Self::from_spec_with_env(spec, &process_env)
    }

    /// Builds the provider, looking environment variables up with `env`
    /// (for embedding and tests; blank values count as unset).
    pub fn from_spec_with_env(
        spec: &ModuleSpec,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self, MountError> {
        let reader = ConfigReader::new(spec, MODULE)?;
        let config = reader.common()?;
        let azure = reader.boolean("azure")?.unwrap_or(false);
        let api_version = reader.string("api_version")?;
        let auth = match reader.string("auth_header")?.as_deref() {
            None if azure => Auth::ApiKeyHeader,
            None => Auth::Bearer,
            Some(s) if s.eq_ignore_ascii_case("api-key") => Auth::ApiKeyHeader,
            Some(s)
                if s.eq_ignore_ascii_case("bearer") || s.eq_ignore_ascii_case("authorization") =>
            {
                Auth::Bearer
            }
            Some(other) => {
                return Err(reader.error(format!(
                    "unknown auth_header {other:?}: use \"bearer\" or \"api-key\""
                )));
            }
        };
        let include_usage = reader.boolean("include_usage")?.unwrap_or(true);
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let official = base_url == DEFAULT_BASE_URL;
        if azure && config.base_url.is_none() {
            return Err(reader.error(
                "azure: true needs base_url (https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT)".into(),
            ));
        }
        let max_tokens_param = match reader.string("max_tokens_param")?.as_deref() {
            None if official || azure => "max_completion_tokens",
            None => "max_tokens",
            Some("max_tokens") => "max_tokens",
            Some("max_completion_tokens") => "max_completion_tokens",
            Some(other) => {
                return Err(reader.error(format!(
                    "unknown max_tokens_param {other:?}: use \"max_tokens\" or \"max_completion_tokens\""
                )));
            }
        };
        reader.warn_unknown(EXTRA_KEYS);
        let (key, key_source) =
            read_key(&config, azure, official, env).map_err(|m| reader.error(m))?;
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("text/event-stream"));
        let client = build_client(config.timeouts.connect).map_err(|m| reader.error(m))?;
        let transport = Transport {
            provider: "openai",
            client,
            base_url,
            auth: if key.is_some() { auth } else { Auth::None },
            key,
            key_source,
            headers,
            query: api_version
                .map(|v| vec![("api-version".to_string(), v)])
                .unwrap_or_default(),
            timeouts: config.timeouts.clone(),
            retry: config.retry.clone(),
        };
        Ok(OpenAiProvider {
            transport: Arc::new(transport),
            config,
            include_usage,
            max_tokens_param,
        })
    }

    /// The JSON body sent to `/chat/completions` for `request`.
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
        if let Some(format) = &request.response_format {
            body.insert(
                "response_format".into(),
                json!({
                    "type": "json_schema",
                    "json_schema": {
                        "name": format.name,
                        "schema": format.schema,
                        "strict": format.strict,
                    }
                }),
            );
        }
        if let Some(n) = request.max_tokens.or(self.config.max_tokens) {
            body.insert(self.max_tokens_param.into(), json!(n));
        }
        if let Some(t) = request.temperature.or(self.config.temperature) {
            body.insert("temperature".into(), f32_json(t));
        }
        if !request.stop_sequences.is_empty() {
            body.insert("stop".into(), json!(request.stop_sequences));
        }
        body.insert("stream".into(), json!(true));
        if self.include_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(body)
    }
}

/// The API key (if any) and where it came from.
fn read_key(
    config: &CommonConfig,
    azure: bool,
    official: bool,
    env: EnvLookup<'_>,
) -> Result<(Option<ApiKey>, Option<String>), String> {
    let get = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    if let Some(var) = &config.api_key_env {
        return match get(var) {
            Some(k) => {
                let key = ApiKey::new(k);
                key.check(var)?;
                Ok((Some(key), Some(var.clone())))
            }
            None => Err(format!(
                "no OpenAI API key: the variable {var} named by api_key_env is not set"
            )),
        };
    }
    let candidates: &[&str] = if azure {
        &[AZURE_API_KEY_ENV, API_KEY_ENV]
    } else {
        &[API_KEY_ENV]
    };
    for var in candidates {
        if let Some(k) = get(var) {
            let key = ApiKey::new(k);
            key.check(var)?;
            return Ok((Some(key), Some(var.to_string())));
        }
    }
    if azure {
        Err(format!(
            "no Azure OpenAI API key: set {AZURE_API_KEY_ENV} or pass api_key_env in the provider config"
        ))
    } else if official {
        Err(format!(
            "no OpenAI API key: set {API_KEY_ENV} or pass api_key_env in the provider config"
        ))
    } else {
        Ok((None, None))
    }
}

fn image_url(source: &ImageSource) -> String {
    match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    }
}

/// Converts weft messages to Chat Completions messages.
pub(crate) fn convert_messages(messages: &[Arc<Message>]) -> Vec<Value> {
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
                let mut parts: Vec<Value> = Vec::new();
                let mut has_image = false;
                for block in &m.content {
                    match block {
                        ContentBlock::ToolResult {
                            call_id, output, ..
                        } => out.push(json!({
                            "role": "tool",
                            "tool_call_id": call_id,
                            "content": output,
                        })),
                        ContentBlock::Text { text } if !text.is_empty() => {
                            parts.push(json!({"type": "text", "text": text}));
                        }
                        ContentBlock::Image { source } => {
                            has_image = true;
                            parts.push(json!({
                                "type": "image_url",
                                "image_url": {"url": image_url(source)},
                            }));
                        }
                        _ => {}
                    }
                }
                if parts.is_empty() {
                    continue;
                }
                let content = if has_image {
                    Value::Array(parts)
                } else {
                    json!(m.text_content())
                };
                out.push(json!({"role": "user", "content": content}));
            }
            Role::Assistant => {
                let text = m.text_content();
                let calls: Vec<Value> = m
                    .tool_calls()
                    .into_iter()
                    .map(|(id, name, arguments)| {
                        let arguments = match arguments {
                            Value::Null => "{}".to_string(),
                            other => other.to_string(),
                        };
                        json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        })
                    })
                    .collect();
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert(
                    "content".into(),
                    if text.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(msg));
            }
        }
    }
    out
}

/// Decodes the Chat Completions chunk stream.
#[derive(Default)]
struct OpenAiDecoder {
    blocks: Blocks,
    /// The open text block.
    text: Option<usize>,
    /// The open thinking block.
    thinking: Option<usize>,
    /// OpenAI tool call index → weft block index.
    tools: BTreeMap<u64, usize>,
    finish: Option<String>,
    usage: Usage,
    model: Option<String>,
}

impl OpenAiDecoder {
    fn close(&mut self, which: Option<usize>, out: &mut Vec<StreamEvent>) -> Result<(), Fail> {
        if let Some(i) = which
            && self.blocks.is_open(i)
        {
            self.blocks.end(i, out)?;
        }
        Ok(())
    }

    fn delta(&mut self, delta: &Value, out: &mut Vec<StreamEvent>) -> Result<(), Fail> {
        let reasoning = ["reasoning_content", "reasoning"]
            .iter()
            .find_map(|k| delta.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty());
        if let Some(r) = reasoning {
            let i = match self.thinking {
                Some(i) if self.blocks.is_open(i) => i,
                _ => {
                    let text = self.text.take();
                    self.close(text, out)?;
                    let i = self.blocks.start_thinking(out);
                    self.thinking = Some(i);
                    i
                }
            };
            self.blocks.thinking(i, r, out)?;
        }
        // A refusal is the model's answer too: shown as text.
        let text = ["content", "refusal"].iter().find_map(|k| {
            delta
                .get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        });
        if let Some(text) = text {
            let i = match self.text {
                Some(i) if self.blocks.is_open(i) => i,
                _ => {
                    let thinking = self.thinking.take();
                    self.close(thinking, out)?;
                    let i = self.blocks.start_text(out);
                    self.text = Some(i);
                    i
                }
            };
            self.blocks.text(i, text, out)?;
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, call) in calls.iter().enumerate() {
                let vendor = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                let id = call.get("id").and_then(Value::as_str);
                let name = call.pointer("/function/name").and_then(Value::as_str);
                let i = match self.tools.get(&vendor) {
                    Some(&i) => {
                        self.blocks.complete_tool(i, id, name)?;
                        i
                    }
                    None => {
                        let text = self.text.take();
                        self.close(text, out)?;
                        let thinking = self.thinking.take();
                        self.close(thinking, out)?;
                        let id = id
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple()));
                        let i = self
                            .blocks
                            .start_tool(&id, name.unwrap_or_default(), None, out);
                        self.tools.insert(vendor, i);
                        i
                    }
                };
                if let Some(fragment) = call.pointer("/function/arguments").and_then(Value::as_str)
                {
                    self.blocks.args(i, fragment, out)?;
                }
            }
        }
        Ok(())
    }

    fn response(&mut self, out: &mut Vec<StreamEvent>) -> Result<ChatResponse, Fail> {
        self.blocks.end_all(out)?;
        let stop_reason = match &self.finish {
            Some(reason) => stop_reason(reason),
            None if self.blocks.has_tool_calls() => StopReason::ToolUse,
            None => StopReason::EndTurn,
        };
        Ok(ChatResponse {
            content: self.blocks.take_content(),
            usage: self.usage,
            stop_reason,
            model: self.model.clone(),
        })
    }
}

impl Decoder for OpenAiDecoder {
    fn frame(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<Option<ChatResponse>, Fail> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        if data == "[DONE]" {
            return self.response(out).map(Some);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Fail::Stream(format!(
                "invalid JSON in a chunk ({e}): {}",
                truncate(data, 200)
            ))
        })?;
        if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
            let text = match error {
                Value::String(s) => s.clone(),
                other => {
                    let message = other
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("no message");
                    match other.get("type").and_then(Value::as_str) {
                        Some(kind) => format!("{kind}: {message}"),
                        None => message.to_string(),
                    }
                }
            };
            return Err(Fail::ErrorEvent {
                retry_status: None,
                text,
            });
        }
        if frame.event == "error" {
            return Err(Fail::ErrorEvent {
                retry_status: None,
                text: truncate(data, 300),
            });
        }
        if self.model.is_none()
            && let Some(model) = v.get("model").and_then(Value::as_str)
        {
            self.model = Some(model.to_string());
        }
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            let field = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            let cached = field("/prompt_tokens_details/cached_tokens");
            self.usage = Usage {
                input_tokens: field("/prompt_tokens").saturating_sub(cached),
                output_tokens: field("/completion_tokens"),
                cache_read_tokens: cached,
                cache_creation_tokens: 0,
            };
        }
        let choices = v.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            // Only the first choice (weft never asks for n > 1).
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.get("delta").filter(|d| d.is_object()) {
                self.delta(delta, out)?;
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(reason.to_string());
                self.text = None;
                self.thinking = None;
                self.blocks.end_all(out)?;
            }
        }
        Ok(None)
    }

    fn eof(&mut self, out: &mut Vec<StreamEvent>) -> Result<ChatResponse, Fail> {
        if self.finish.is_some() {
            return self.response(out);
        }
        Err(Fail::Stream(
            "the stream ended before a finish_reason or [DONE]: the response was cut off".into(),
        ))
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "openai".into(),
            default_model: self
                .config
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            context_window: self.config.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW),
            max_output_tokens: self.config.max_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
            supports_tools: true,
            supports_thinking: false,
        }
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let page = self.transport.get_json("/models", &[]).await?;
        let data = page.get("data").and_then(Value::as_array).ok_or_else(|| {
            self.transport
                .stream_error("the model list has no `data` array")
        })?;
        let mut models: Vec<ModelInfo> = data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .map(|id| ModelInfo {
                id: id.to_string(),
                display_name: None,
                context_window: None,
            })
            .collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(models)
    }

    async fn stream(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError> {
        let body = self.request_body(&request);
        self.transport
            .stream::<OpenAiDecoder>("/chat/completions", &body, Framing::Sse, cancel)
            .await
    }
}

/// Tools in the OpenAI "function" shape, which Ollama's `/api/chat` also
/// takes: `[{"type": "function", "function": {name, description, parameters}}]`.
pub fn function_tools(tools: &[weft_core::provider::ToolSpec]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    }
                })
            })
            .collect(),
    )
}

/// Registers `provider-openai`.
pub fn register(registry: &mut ModuleRegistry) {
    registry.register_provider(MODULE, |spec, _env| {
        Ok(Arc::new(OpenAiProvider::from_spec(spec)?) as Arc<dyn Provider>)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(config: Value) -> ModuleSpec {
        ModuleSpec {
            module: MODULE.into(),
            config: config.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn keys_follow_the_documented_rules() {
        let none = |_: &str| None;
        let err = OpenAiProvider::from_spec_with_env(&spec(json!({})), &none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "module provider-openai cannot start: no OpenAI API key: set OPENAI_API_KEY or pass api_key_env in the provider config"
        );
        // A compatible server needs no key.
        let p = OpenAiProvider::from_spec_with_env(
            &spec(json!({"base_url": "http://127.0.0.1:9/v1"})),
            &none,
        )
        .unwrap();
        assert_eq!(p.transport.auth, Auth::None);
        assert_eq!(p.max_tokens_param, "max_tokens");
        // A named variable must exist.
        let err = OpenAiProvider::from_spec_with_env(
            &spec(json!({"base_url": "http://127.0.0.1:9/v1", "api_key_env": "VLLM_KEY"})),
            &none,
        )
        .unwrap_err();
        assert!(err.to_string().contains("VLLM_KEY"), "{err}");
        // Azure: api-key header, api-version query.
        let env = |v: &str| (v == AZURE_API_KEY_ENV).then(|| "az-SECRET".to_string());
        let p = OpenAiProvider::from_spec_with_env(
            &spec(
                json!({"base_url": "https://x.openai.azure.com/openai/deployments/d",
                          "azure": true, "api_version": "2024-10-21"}),
            ),
            &env,
        )
        .unwrap();
        assert_eq!(p.transport.auth, Auth::ApiKeyHeader);
        assert_eq!(
            p.transport.query,
            vec![("api-version".to_string(), "2024-10-21".to_string())]
        );
        assert!(!format!("{p:?}").contains("az-SECRET"));
    }
}
