//! `provider-anthropic`: Anthropic's Messages API.
//!
//! Requests go to `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version: 2023-06-01`, always streamed (SSE). The stream's
//! events map to weft's as follows:
//!
//! | Anthropic event | weft |
//! |---|---|
//! | `message_start` | model, input and cache usage |
//! | `content_block_start` (`text`, `thinking`, `redacted_thinking`, `tool_use`) | `BlockStart` |
//! | `content_block_delta` (`text_delta`, `thinking_delta`, `input_json_delta`, `signature_delta`) | `TextDelta`, `ThinkingDelta`, `ToolArgumentsDelta`, (signature kept) |
//! | `content_block_stop` | `BlockEnd` |
//! | `message_delta` | stop reason, output usage |
//! | `message_stop` | `Completed` |
//! | `ping` | nothing |
//! | `error` | an error (retried while no content was produced, for `overloaded_error` and `api_error`) |
//!
//! Unknown event and block types are skipped, as Anthropic's versioning
//! policy asks of clients.
//!
//! **Request shape.** Leading system messages become the top-level `system`;
//! a system message later in the conversation (a hook's injected context)
//! becomes user text wrapped in `<system-reminder>` tags, since the API has
//! no system role inside `messages`. `tool` messages become `user` messages
//! of `tool_result` blocks (results first, as the API requires), and
//! consecutive messages of one role are merged into one. Thinking blocks are
//! sent back unchanged with their signatures (unsigned ones, which the API
//! would refuse, are dropped); `redacted_thinking` blocks round-trip through
//! weft's thinking block (see [`REDACTED_THINKING_PREFIX`]).
//! With extended thinking on (`thinking_budget`), `temperature` is left out
//! (the API refuses it) and `max_tokens` is raised above the budget when
//! needed.
//!
//! **Structured output** (a request's `response_format`) is tool-forcing:
//! a synthetic tool named after the format, whose `input_schema` is the
//! schema, is added to `tools` and forced with
//! `tool_choice: {type: "tool", name}`; its `tool_use` input comes back as
//! a text block of JSON (never run as a tool). While forced, the model
//! calls no other tool in that request, and Anthropic refuses a forced
//! tool with extended thinking on.
//!
//! **Prompt caching** (`prompt_caching`, on by default) marks the tool list,
//! the system prompt and the last block of the conversation with
//! `cache_control: {type: ephemeral}`, so an agent loop re-reads its growing
//! prefix from the cache. The usage fields `cache_read_input_tokens` and
//! `cache_creation_input_tokens` are recorded as
//! [`Usage::cache_read_tokens`] and [`Usage::cache_creation_tokens`].
//!
//! Configuration (besides the common keys, see the crate docs):
//! `prompt_caching` (bool), `anthropic_version` (string), `anthropic_beta`
//! (a string or a list of strings, sent as the `anthropic-beta` header, e.g.
//! `context-1m-2025-08-07` or `interleaved-thinking-2025-05-14`).

use std::collections::{HashMap, HashSet};
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
    build_client, f32_json, process_env,
};
use crate::structured;

/// The module name.
pub const MODULE: &str = "provider-anthropic";
/// The API's default address.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The model used when neither the request nor the config names one.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// The environment variable the API key is read from by default.
pub const API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
/// The `anthropic-version` header sent by default.
pub const API_VERSION: &str = "2023-06-01";
/// The output budget when neither the request nor the config sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 8192;
/// The context window assumed when the config sets none.
pub const DEFAULT_CONTEXT_WINDOW: usize = 200_000;
/// A `redacted_thinking` block is kept as a [`ContentBlock::Thinking`] with
/// empty text whose signature is this prefix followed by the block's opaque
/// `data`; it is sent back to the API as `redacted_thinking` unchanged.
pub const REDACTED_THINKING_PREFIX: &str = crate::blocks::REDACTED_THINKING_PREFIX;

const EXTRA_KEYS: &[&str] = &["prompt_caching", "anthropic_version", "anthropic_beta"];

/// The Anthropic Messages API provider.
#[derive(Debug)]
pub struct AnthropicProvider {
    transport: Arc<Transport>,
    config: CommonConfig,
    prompt_caching: bool,
}

impl AnthropicProvider {
    /// Builds the provider from its module spec, reading the API key from
    /// the process environment (`ANTHROPIC_API_KEY`, or the variable named
    /// by `api_key_env`).
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
        let prompt_caching = reader.boolean("prompt_caching")?.unwrap_or(true);
        let version = reader
            .string("anthropic_version")?
            .unwrap_or_else(|| API_VERSION.to_string());
        let beta = match spec.config.get("anthropic_beta") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(Value::Array(items)) => {
                let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                Some(
                    names
                        .ok_or_else(|| {
                            reader.error(
                                "`anthropic_beta` must be a string or a list of strings".into(),
                            )
                        })?
                        .join(","),
                )
            }
            Some(other) => {
                return Err(reader.error(format!(
                    "`anthropic_beta` must be a string or a list of strings, not {other}"
                )));
            }
        }
        .filter(|b| !b.is_empty());
        reader.warn_unknown(EXTRA_KEYS);
        let (key, source) = read_key(&config, env).map_err(|m| reader.error(m))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "anthropic-version",
            HeaderValue::from_str(&version)
                .map_err(|_| reader.error(format!("invalid anthropic_version {version:?}")))?,
        );
        headers.insert("accept", HeaderValue::from_static("text/event-stream"));
        if let Some(beta) = beta {
            headers.insert(
                "anthropic-beta",
                HeaderValue::from_str(&beta)
                    .map_err(|_| reader.error(format!("invalid anthropic_beta {beta:?}")))?,
            );
        }
        let client = build_client(config.timeouts.connect).map_err(|m| reader.error(m))?;
        let transport = Transport {
            provider: "anthropic",
            client,
            base_url: config
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
            key: Some(key),
            auth: Auth::XApiKey,
            key_source: Some(source),
            headers,
            query: Vec::new(),
            timeouts: config.timeouts.clone(),
            retry: config.retry.clone(),
        };
        Ok(AnthropicProvider {
            transport: Arc::new(transport),
            config,
            prompt_caching,
        })
    }

    /// The JSON body sent to `/v1/messages` for `request`.
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let model = request
            .model
            .clone()
            .or_else(|| self.config.model.clone())
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        let thinking = request.thinking_budget.or(self.config.thinking_budget);
        let mut max_tokens = request
            .max_tokens
            .or(self.config.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        if let Some(budget) = thinking
            && max_tokens <= budget
        {
            max_tokens = budget.saturating_add(DEFAULT_MAX_TOKENS);
        }
        let (system, mut messages) = convert_messages(&request.messages);
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert("max_tokens".into(), json!(max_tokens));
        if !system.is_empty() {
            let value = if self.prompt_caching {
                json!([{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}])
            } else {
                json!(system)
            };
            body.insert("system".into(), value);
        }
        if self.prompt_caching {
            mark_last_block_cached(&mut messages);
        }
        body.insert("messages".into(), Value::Array(messages));
        if !request.tools.is_empty() || request.response_format.is_some() {
            let mut tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "description": t.description,
                        "input_schema": t.input_schema,
                    })
                })
                .collect();
            // Structured output: a synthetic tool with the schema, forced
            // (see `crate::structured`).
            if let Some(format) = &request.response_format {
                tools.push(structured::answer_tool(format));
            }
            if self.prompt_caching
                && let Some(Value::Object(last)) = tools.last_mut()
            {
                last.insert("cache_control".into(), json!({"type": "ephemeral"}));
            }
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(format) = &request.response_format {
            body.insert(
                "tool_choice".into(),
                json!({"type": "tool", "name": format.name}),
            );
        }
        if let Some(budget) = thinking {
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
        } else if let Some(t) = request.temperature.or(self.config.temperature) {
            body.insert("temperature".into(), f32_json(t));
        }
        if !request.stop_sequences.is_empty() {
            body.insert("stop_sequences".into(), json!(request.stop_sequences));
        }
        body.insert("stream".into(), json!(true));
        Value::Object(body)
    }
}

/// The API key and the variable it came from.
fn read_key(config: &CommonConfig, env: EnvLookup<'_>) -> Result<(ApiKey, String), String> {
    let var = config
        .api_key_env
        .clone()
        .unwrap_or_else(|| API_KEY_ENV.to_string());
    match env(&var).filter(|v| !v.trim().is_empty()) {
        Some(key) => {
            let key = ApiKey::new(key);
            key.check(&var)?;
            Ok((key, var))
        }
        None if config.api_key_env.is_some() => Err(format!(
            "no Anthropic API key: the variable {var} named by api_key_env is not set"
        )),
        None => Err(format!(
            "no Anthropic API key: set {API_KEY_ENV} or pass api_key_env in the provider config"
        )),
    }
}

/// Splits weft messages into the top-level system prompt and Anthropic
/// `messages`.
pub(crate) fn convert_messages(messages: &[Arc<Message>]) -> (String, Vec<Value>) {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut leading = true;
    for m in messages {
        match m.role {
            Role::System => {
                let text = m.text_content();
                if text.trim().is_empty() {
                    continue;
                }
                if leading {
                    system.push(text);
                } else {
                    let wrapped = format!("<system-reminder>\n{text}\n</system-reminder>");
                    push_turn(
                        &mut turns,
                        "user",
                        vec![json!({"type": "text", "text": wrapped})],
                    );
                }
            }
            Role::User | Role::Tool => {
                leading = false;
                let blocks = m.content.iter().filter_map(user_block).collect();
                push_turn(&mut turns, "user", blocks);
            }
            Role::Assistant => {
                leading = false;
                let blocks = m.content.iter().filter_map(assistant_block).collect();
                push_turn(&mut turns, "assistant", blocks);
            }
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, mut content)| {
            if role == "user" {
                // tool_result blocks must come first in a user message.
                content.sort_by_key(|b| b["type"] != "tool_result");
            }
            json!({"role": role, "content": content})
        })
        .collect();
    (system.join("\n\n"), messages)
}

fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, content)) if *last == role => content.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

fn image_block(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }),
        ImageSource::Url { url } => json!({
            "type": "image",
            "source": {"type": "url", "url": url},
        }),
    }
}

fn user_block(block: &ContentBlock) -> Option<Value> {
    match block {
        ContentBlock::Text { text } if !text.is_empty() => {
            Some(json!({"type": "text", "text": text}))
        }
        ContentBlock::Image { source } => Some(image_block(source)),
        ContentBlock::ToolResult {
            call_id,
            output,
            is_error,
        } => {
            let mut b = Map::new();
            b.insert("type".into(), json!("tool_result"));
            b.insert("tool_use_id".into(), json!(call_id));
            if !output.is_empty() {
                b.insert("content".into(), json!(output));
            }
            if *is_error {
                b.insert("is_error".into(), json!(true));
            }
            Some(Value::Object(b))
        }
        _ => None,
    }
}

fn assistant_block(block: &ContentBlock) -> Option<Value> {
    match block {
        ContentBlock::Text { text } if !text.is_empty() => {
            Some(json!({"type": "text", "text": text}))
        }
        ContentBlock::Thinking {
            thinking,
            signature: Some(signature),
        } => match signature.strip_prefix(REDACTED_THINKING_PREFIX) {
            Some(data) => Some(json!({"type": "redacted_thinking", "data": data})),
            None => Some(json!({"type": "thinking", "thinking": thinking, "signature": signature})),
        },
        ContentBlock::ToolCall {
            id,
            name,
            arguments,
        } => {
            let input = match arguments {
                Value::Object(_) => arguments.clone(),
                Value::Null => json!({}),
                // The API takes an object; keep anything else visible.
                other => json!({ "value": other }),
            };
            Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
        }
        _ => None,
    }
}

/// Puts a cache breakpoint on the last block of the conversation (when that
/// block type accepts one).
fn mark_last_block_cached(messages: &mut [Value]) {
    let Some(Value::Object(block)) = messages
        .last_mut()
        .and_then(|m| m.get_mut("content"))
        .and_then(Value::as_array_mut)
        .and_then(|c| c.last_mut())
    else {
        return;
    };
    if matches!(
        block.get("type").and_then(Value::as_str),
        Some("text" | "tool_result" | "image" | "tool_use")
    ) {
        block.insert("cache_control".into(), json!({"type": "ephemeral"}));
    }
}

/// Decodes the Messages API's event stream.
#[derive(Default)]
struct AnthropicDecoder {
    blocks: Blocks,
    /// Anthropic block index → weft block index.
    index: HashMap<u64, usize>,
    /// Blocks of types weft does not know, skipped.
    skipped: HashSet<u64>,
    usage: Usage,
    stop: Option<String>,
    model: Option<String>,
}

fn event_index(v: &Value) -> Result<u64, Fail> {
    v.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| Fail::Stream(format!("a {} event without an index", v["type"])))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn read_usage(usage: &mut Usage, v: &Value) {
    let field = |k: &str| v.get(k).and_then(Value::as_u64);
    if let Some(n) = field("input_tokens") {
        usage.input_tokens = n;
    }
    if let Some(n) = field("output_tokens") {
        usage.output_tokens = n;
    }
    if let Some(n) = field("cache_read_input_tokens") {
        usage.cache_read_tokens = n;
    }
    if let Some(n) = field("cache_creation_input_tokens") {
        usage.cache_creation_tokens = n;
    }
}

impl AnthropicDecoder {
    fn block(&self, vendor: u64) -> Result<usize, Fail> {
        self.index.get(&vendor).copied().ok_or_else(|| {
            Fail::Stream(format!(
                "an event for content block {vendor}, which never started"
            ))
        })
    }

    fn response(&mut self) -> ChatResponse {
        let stop_reason = match &self.stop {
            Some(s) => stop_reason(s),
            None if self.blocks.has_tool_calls() => StopReason::ToolUse,
            None => StopReason::EndTurn,
        };
        ChatResponse {
            content: self.blocks.take_content(),
            usage: self.usage,
            stop_reason,
            model: self.model.clone(),
        }
    }
}

impl Decoder for AnthropicDecoder {
    fn frame(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<Option<ChatResponse>, Fail> {
        if frame.data.trim().is_empty() {
            return Ok(None);
        }
        let v: Value = serde_json::from_str(&frame.data).map_err(|e| {
            Fail::Stream(format!(
                "invalid JSON in a `{}` event ({e})",
                if frame.event.is_empty() {
                    "message"
                } else {
                    &frame.event
                }
            ))
        })?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(frame.event.as_str());
        match kind {
            "message_start" => {
                let message = &v["message"];
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    self.model = Some(model.to_string());
                }
                read_usage(&mut self.usage, &message["usage"]);
            }
            "content_block_start" => {
                let vendor = event_index(&v)?;
                if self.index.contains_key(&vendor) {
                    return Err(Fail::Stream(format!(
                        "content block {vendor} started twice"
                    )));
                }
                let cb = &v["content_block"];
                let index = match str_field(cb, "type") {
                    "text" => {
                        let i = self.blocks.start_text(out);
                        self.blocks.text(i, str_field(cb, "text"), out)?;
                        i
                    }
                    "thinking" => {
                        let i = self.blocks.start_thinking(out);
                        self.blocks.thinking(i, str_field(cb, "thinking"), out)?;
                        self.blocks.signature(i, str_field(cb, "signature"))?;
                        i
                    }
                    "redacted_thinking" => self.blocks.start_redacted(str_field(cb, "data"), out),
                    "tool_use" => {
                        let id = str_field(cb, "id");
                        let name = str_field(cb, "name");
                        if id.is_empty() || name.is_empty() {
                            return Err(Fail::Stream(
                                "a tool_use block without an id or a name".into(),
                            ));
                        }
                        let initial = cb
                            .get("input")
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                            .cloned();
                        self.blocks.start_tool(id, name, initial, out)
                    }
                    other => {
                        tracing::debug!("skipping an Anthropic content block of type {other:?}");
                        self.skipped.insert(vendor);
                        return Ok(None);
                    }
                };
                self.index.insert(vendor, index);
            }
            "content_block_delta" => {
                let vendor = event_index(&v)?;
                if self.skipped.contains(&vendor) {
                    return Ok(None);
                }
                let i = self.block(vendor)?;
                let delta = &v["delta"];
                match str_field(delta, "type") {
                    "text_delta" => self.blocks.text(i, str_field(delta, "text"), out)?,
                    "thinking_delta" => {
                        self.blocks.thinking(i, str_field(delta, "thinking"), out)?
                    }
                    "signature_delta" => self.blocks.signature(i, str_field(delta, "signature"))?,
                    "input_json_delta" => {
                        self.blocks.args(i, str_field(delta, "partial_json"), out)?
                    }
                    other => tracing::debug!("skipping an Anthropic delta of type {other:?}"),
                }
            }
            "content_block_stop" => {
                let vendor = event_index(&v)?;
                if self.skipped.contains(&vendor) {
                    return Ok(None);
                }
                let i = self.block(vendor)?;
                self.blocks.end(i, out)?;
            }
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(reason.to_string());
                }
                read_usage(&mut self.usage, &v["usage"]);
            }
            "message_stop" => {
                self.blocks.end_all(out)?;
                return Ok(Some(self.response()));
            }
            "ping" => {}
            "error" => {
                let kind = v
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message");
                let retry_status = match kind {
                    "overloaded_error" => Some(529),
                    "api_error" => Some(500),
                    "rate_limit_error" => Some(429),
                    _ => None,
                };
                return Err(Fail::ErrorEvent {
                    retry_status,
                    text: format!("{kind}: {message}"),
                });
            }
            other => tracing::debug!("skipping an Anthropic event of type {other:?}"),
        }
        Ok(None)
    }

    fn eof(&mut self, _out: &mut Vec<StreamEvent>) -> Result<ChatResponse, Fail> {
        Err(Fail::Stream(
            "the stream ended before `message_stop`: the response was cut off".into(),
        ))
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "anthropic".into(),
            default_model: self
                .config
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            context_window: self.config.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW),
            max_output_tokens: self.config.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            supports_tools: true,
            supports_thinking: true,
        }
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let mut models = Vec::new();
        let mut after: Option<String> = None;
        // Pages of up to 1000; a bound keeps a misbehaving server from
        // looping forever.
        for _ in 0..50 {
            let mut query = vec![("limit", "1000".to_string())];
            if let Some(id) = &after {
                query.push(("after_id", id.clone()));
            }
            let page = self.transport.get_json("/v1/models", &query).await?;
            let data = page.get("data").and_then(Value::as_array).ok_or_else(|| {
                self.transport
                    .stream_error("the model list has no `data` array")
            })?;
            for m in data {
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    models.push(ModelInfo {
                        id: id.to_string(),
                        display_name: m
                            .get("display_name")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        context_window: None,
                    });
                }
            }
            let more = page.get("has_more").and_then(Value::as_bool) == Some(true);
            after = page
                .get("last_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            if !more || after.is_none() {
                break;
            }
        }
        Ok(models)
    }

    async fn stream(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError> {
        let body = self.request_body(&request);
        let stream = self
            .transport
            .stream::<AnthropicDecoder>("/v1/messages", &body, Framing::Sse, cancel)
            .await?;
        Ok(match request.response_format {
            Some(format) => structured::answer_calls_as_text(stream, format.name),
            None => stream,
        })
    }
}

/// Registers `provider-anthropic`.
pub fn register(registry: &mut ModuleRegistry) {
    registry.register_provider(MODULE, |spec, _env| {
        Ok(Arc::new(AnthropicProvider::from_spec(spec)?) as Arc<dyn Provider>)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::id::BranchId;

    fn msg(role: Role, content: Vec<ContentBlock>) -> Message {
        Message::new(BranchId::main(), role, content)
    }

    #[test]
    fn converts_roles_merges_and_orders_results_first() {
        let messages = vec![
            Message::text(BranchId::main(), Role::System, "be brief"),
            Message::text(BranchId::main(), Role::User, "hi"),
            msg(
                Role::Assistant,
                vec![
                    ContentBlock::Thinking {
                        thinking: "t".into(),
                        signature: Some("sig".into()),
                    },
                    ContentBlock::Thinking {
                        thinking: "unsigned".into(),
                        signature: None,
                    },
                    ContentBlock::Thinking {
                        thinking: String::new(),
                        signature: Some(format!("{REDACTED_THINKING_PREFIX}opaque")),
                    },
                    ContentBlock::ToolCall {
                        id: "a".into(),
                        name: "t".into(),
                        arguments: json!({"x": 1}),
                    },
                    ContentBlock::ToolCall {
                        id: "b".into(),
                        name: "t".into(),
                        arguments: Value::Null,
                    },
                ],
            ),
            msg(
                Role::Tool,
                vec![ContentBlock::ToolResult {
                    call_id: "a".into(),
                    output: "ok".into(),
                    is_error: false,
                }],
            ),
            Message::text(BranchId::main(), Role::System, "injected"),
            msg(
                Role::Tool,
                vec![ContentBlock::ToolResult {
                    call_id: "b".into(),
                    output: "bad".into(),
                    is_error: true,
                }],
            ),
        ];
        let messages: Vec<Arc<Message>> = messages.into_iter().map(Arc::new).collect();
        let (system, out) = convert_messages(&messages);
        assert_eq!(system, "be brief");
        assert_eq!(
            Value::Array(out),
            json!([
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "a", "name": "t", "input": {"x": 1}},
                    {"type": "tool_use", "id": "b", "name": "t", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "ok"},
                    {"type": "tool_result", "tool_use_id": "b", "content": "bad", "is_error": true},
                    {"type": "text", "text": "<system-reminder>\ninjected\n</system-reminder>"},
                ]},
            ])
        );
    }

    #[test]
    fn missing_key_is_one_clear_sentence() {
        let err = AnthropicProvider::from_spec_with_env(&ModuleSpec::named(MODULE), &|_| None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "module provider-anthropic cannot start: no Anthropic API key: set ANTHROPIC_API_KEY or pass api_key_env in the provider config"
        );
    }
}
