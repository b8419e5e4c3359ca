//! The [`Provider`] trait: a streaming chat-completion backend.
//!
//! Providers turn a [`ChatRequest`] (messages in weft's own shape, tool
//! specs, sampling settings) into a stream of [`StreamEvent`]s that ends with
//! exactly one [`StreamEvent::Completed`] carrying the assembled response.
//! The vendors' wire formats, authentication, retries and timeouts are the
//! provider's business (`weft-providers`); the kernel only sees this trait.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::message::{ContentBlock, Usage};
use crate::message_list::MessageList;
use crate::structured::ResponseFormat;

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// A JSON Schema for its input.
    pub input_schema: Value,
}

/// One request to the model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation, system messages included (providers that take the
    /// system prompt separately extract them). Shared with the context
    /// manager's history: building a request from it copies neither the
    /// messages nor the list, and its token estimate is kept as it grows
    /// (a `Vec` of messages converts with `.into()`).
    pub messages: MessageList,
    /// The tools the model may call (empty: none).
    pub tools: Vec<ToolSpec>,
    /// The model; `None` means the provider's configured default.
    pub model: Option<String>,
    /// The most tokens to generate; `None` means the provider's default.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Stop sequences.
    pub stop_sequences: Vec<String>,
    /// Extended-thinking budget in tokens, where the provider supports it.
    pub thinking_budget: Option<u32>,
    /// What the request is for when it is not a turn of the conversation
    /// ([`PURPOSE_SESSION_TITLE`]); None for turns. See
    /// [`Provider::answers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The answer must be JSON matching this format: providers use their
    /// native structured-output mode (OpenAI `response_format`, Anthropic
    /// tool-forcing, Ollama `format`); None for free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
}

/// [`ChatRequest::purpose`] of the request asking for a session's title
/// (the `hooks-session-naming` module).
pub const PURPOSE_SESSION_TITLE: &str = "session_title";

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A natural end.
    EndTurn,
    /// It wants tools run.
    ToolUse,
    /// It hit the token limit.
    MaxTokens,
    /// It produced a stop sequence.
    StopSequence,
    /// Something else, as the provider named it.
    Other(String),
}

/// A complete model response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The content blocks, in order.
    pub content: Vec<ContentBlock>,
    /// Token usage.
    pub usage: Usage,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// The model that answered.
    pub model: Option<String>,
}

/// The kind of a content block being streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockKind {
    /// Text.
    Text,
    /// Thinking.
    Thinking,
    /// A tool call.
    ToolCall {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
}

/// One event of a streamed response.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A content block started.
    BlockStart {
        /// Its position in the response.
        index: usize,
        /// What it is.
        kind: BlockKind,
    },
    /// More text of block `index`.
    TextDelta {
        /// Block position.
        index: usize,
        /// The text.
        text: String,
    },
    /// More thinking of block `index`.
    ThinkingDelta {
        /// Block position.
        index: usize,
        /// The text.
        text: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolArgumentsDelta {
        /// Block position.
        index: usize,
        /// The fragment.
        fragment: String,
    },
    /// Block `index` is complete.
    BlockEnd {
        /// Block position.
        index: usize,
        /// The assembled block.
        block: ContentBlock,
    },
    /// The request failed in a retryable way and will be retried (only
    /// before any content was produced).
    Retry {
        /// The attempt about to be made (2 = first retry).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// What failed.
        reason: String,
    },
    /// The response is complete (always the last event).
    Completed(ChatResponse),
}

impl StreamEvent {
    /// The events that stream a complete `block` as block `index`:
    /// `BlockStart`, one delta per piece of `deltas` (`TextDelta`,
    /// `ThinkingDelta` or `ToolArgumentsDelta`, by the block's kind), then
    /// `BlockEnd` carrying the block. Blocks a model does not stream (tool
    /// results, images) give only the `BlockEnd`.
    pub fn for_block(index: usize, block: ContentBlock, deltas: Vec<String>) -> Vec<StreamEvent> {
        let mut events = Vec::with_capacity(deltas.len() + 2);
        type Delta = fn(usize, String) -> StreamEvent;
        let streamed: Option<(BlockKind, Delta)> = match &block {
            ContentBlock::Text { .. } => Some((BlockKind::Text, |index, text| {
                StreamEvent::TextDelta { index, text }
            })),
            ContentBlock::Thinking { .. } => Some((BlockKind::Thinking, |index, text| {
                StreamEvent::ThinkingDelta { index, text }
            })),
            ContentBlock::ToolCall { id, name, .. } => Some((
                BlockKind::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                },
                |index, fragment| StreamEvent::ToolArgumentsDelta { index, fragment },
            )),
            ContentBlock::ToolResult { .. } | ContentBlock::Image { .. } => None,
        };
        if let Some((kind, delta)) = streamed {
            events.push(StreamEvent::BlockStart { index, kind });
            events.extend(deltas.into_iter().map(|d| delta(index, d)));
        }
        events.push(StreamEvent::BlockEnd { index, block });
        events
    }
}

/// A stream of response events.
pub type ProviderStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// What a provider can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// The provider's name (`anthropic`, `openai`, `ollama`, `scripted`).
    pub name: String,
    /// The model used when a request names none.
    pub default_model: String,
    /// The model's context window, in tokens.
    pub context_window: usize,
    /// The default output budget, in tokens.
    pub max_output_tokens: u32,
    /// Whether it supports tool calls.
    pub supports_tools: bool,
    /// Whether it supports extended thinking.
    pub supports_thinking: bool,
}

/// A model a provider offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model id to pass as `model`.
    pub id: String,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Its context window, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<usize>,
}

/// What a provider call can fail with. Messages never contain API keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider is not set up (no key, bad base URL, …).
    #[error("{0}")]
    NotConfigured(String),
    /// The request was rejected (4xx other than 429).
    #[error("{provider} rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The provider's error message.
        message: String,
    },
    /// Rate limited (429), after all retries.
    #[error("{provider} is rate limiting requests (HTTP 429) and retries ran out: {message}")]
    RateLimited {
        /// Provider name.
        provider: String,
        /// The provider's error message.
        message: String,
    },
    /// The service failed or is overloaded (5xx, 529), after all retries.
    #[error("{provider} is unavailable (HTTP {status}) and retries ran out: {message}")]
    Unavailable {
        /// Provider name.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The provider's error message.
        message: String,
    },
    /// The connection failed, after all retries.
    #[error("cannot reach {provider} at {url}: {message}")]
    Connect {
        /// Provider name.
        provider: String,
        /// The base URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// A connect, first-byte or idle timeout.
    #[error("{provider} timed out: {message}")]
    Timeout {
        /// Provider name.
        provider: String,
        /// Which timeout.
        message: String,
    },
    /// The stream was malformed, cut, or carried an error event.
    #[error("{provider} stream failed: {message}")]
    Stream {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// The call was cancelled.
    #[error("the provider call was cancelled")]
    Cancelled,
    /// Anything else (the scripted provider running out of responses, …).
    #[error("{0}")]
    Other(String),
}

impl ProviderError {
    /// Whether trying again may help (connect errors, 429, 5xx, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Unavailable { .. }
                | ProviderError::Connect { .. }
                | ProviderError::Timeout { .. }
        )
    }
}

/// A streaming chat-completion backend.
///
/// Contract:
/// - `stream` returns once the response has started (or failed); the stream
///   then yields deltas and ends with exactly one `Completed`.
/// - Retryable failures are retried inside the provider, only before any
///   content was produced, each announced with [`StreamEvent::Retry`].
/// - When `cancel` fires, the provider stops reading (dropping the HTTP
///   stream) and yields [`ProviderError::Cancelled`] promptly.
/// - API keys never appear in errors, events or anything returned.
#[async_trait]
pub trait Provider: Send + Sync {
    /// What the provider is and can do.
    fn info(&self) -> ProviderInfo;

    /// The models it offers (the vendor's list endpoint).
    async fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError>;

    /// Starts a streamed completion.
    async fn stream(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError>;

    /// Whether it answers requests made for `purpose` (a
    /// [`ChatRequest::purpose`], e.g. [`PURPOSE_SESSION_TITLE`]). A model
    /// answers anything (the default); the scripted provider only what its
    /// script has an answer for, so modules that ask on their own (session
    /// naming) stay off for it unless the script says otherwise.
    fn answers(&self, purpose: &str) -> bool {
        let _ = purpose;
        true
    }

    /// Runs a completion to the end and returns the response.
    async fn complete(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<ChatResponse, ProviderError> {
        let mut stream = self.stream(request, cancel).await?;
        while let Some(event) = stream.next().await {
            if let StreamEvent::Completed(response) = event? {
                return Ok(response);
            }
        }
        Err(ProviderError::Stream {
            provider: self.info().name,
            message: "the stream ended without a complete response".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn for_block_streams_each_kind_with_its_deltas() {
        let text =
            StreamEvent::for_block(0, ContentBlock::text("ab"), vec!["a".into(), "b".into()]);
        assert_eq!(
            text,
            [
                StreamEvent::BlockStart {
                    index: 0,
                    kind: BlockKind::Text
                },
                StreamEvent::TextDelta {
                    index: 0,
                    text: "a".into()
                },
                StreamEvent::TextDelta {
                    index: 0,
                    text: "b".into()
                },
                StreamEvent::BlockEnd {
                    index: 0,
                    block: ContentBlock::text("ab")
                },
            ]
        );
        let call = ContentBlock::ToolCall {
            id: "c1".into(),
            name: "echo".into(),
            arguments: json!({}),
        };
        let events = StreamEvent::for_block(2, call.clone(), vec!["{}".into()]);
        assert!(matches!(
            &events[0],
            StreamEvent::BlockStart { index: 2, kind: BlockKind::ToolCall { id, name } } if id == "c1" && name == "echo"
        ));
        assert!(matches!(
            &events[1],
            StreamEvent::ToolArgumentsDelta { index: 2, fragment } if fragment == "{}"
        ));
        assert_eq!(events.len(), 3);
        let thinking = ContentBlock::Thinking {
            thinking: "hm".into(),
            signature: None,
        };
        let events = StreamEvent::for_block(1, thinking, vec!["hm".into()]);
        assert!(
            matches!(&events[1], StreamEvent::ThinkingDelta { index: 1, text } if text == "hm")
        );
        let result = ContentBlock::ToolResult {
            call_id: "c1".into(),
            output: "x".into(),
            is_error: false,
        };
        let events = StreamEvent::for_block(3, result.clone(), vec!["ignored".into()]);
        assert_eq!(
            events,
            [StreamEvent::BlockEnd {
                index: 3,
                block: result
            }]
        );
    }
}
