//! `provider-scripted`: a deterministic provider for tests, demos and
//! benchmarks.
//!
//! It answers from a script of responses, in order, each either text or tool
//! calls (or both), optionally with thinking, usage and a delay:
//!
//! ```json
//! {"responses": [
//!   {"tool_calls": [{"name": "read_file", "arguments": {"path": "a.txt"}}]},
//!   {"text": "done", "usage": {"input_tokens": 10, "output_tokens": 2}, "delay_ms": 50}
//! ]}
//! ```
//!
//! Scripts are JSON or YAML, given by file (`config.script`) or inline
//! (`config.responses`). Text streams in several deltas. Running out of
//! responses is a clear error. With `config.mode = "echo"` it answers every
//! request with the last user message instead (after `config.delay_ms`, if
//! set); with `"echo-context"`, with every user message of the request
//! joined by ` | ` (what the model was shown: tests of context handling).
//!
//! A response may also carry `"error": "message"` to make that call fail
//! (for testing failure paths), and `"delta_delay_ms": N` to stream its
//! text word by word, N milliseconds apart (a slow model).
//!
//! Requests for a session title ([`PURPOSE_SESSION_TITLE`], from
//! `hooks-session-naming`) are answered by the script's `title` (a string,
//! or a response object such as `{"error": "…"}`) without using up a
//! response; a script without one, and echo mode, do not answer them
//! ([`Provider::answers`] is false), so naming stays off.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use weft_core::message::{ContentBlock, Message, Role, Usage};
use weft_core::mount::{ModuleSpec, MountError};
use weft_core::provider::{
    ChatRequest, ChatResponse, ModelInfo, PURPOSE_SESSION_TITLE, Provider, ProviderError,
    ProviderInfo, ProviderStream, StopReason, StreamEvent,
};
use weft_core::registry::ModuleRegistry;

/// The module name.
pub const MODULE: &str = "provider-scripted";

/// One scripted tool call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedToolCall {
    /// The call id (default: `call_<response>_<index>`).
    #[serde(default)]
    pub id: Option<String>,
    /// The tool name.
    pub name: String,
    /// The arguments.
    #[serde(default)]
    pub arguments: Value,
}

/// One scripted response.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedResponse {
    /// Text to answer with.
    #[serde(default)]
    pub text: Option<String>,
    /// Thinking to stream before the text.
    #[serde(default)]
    pub thinking: Option<String>,
    /// Tool calls to make.
    #[serde(default)]
    pub tool_calls: Vec<ScriptedToolCall>,
    /// Usage to report (default: an estimate).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Wait this long before answering, in milliseconds.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Wait this long before answering, in seconds.
    #[serde(default)]
    pub delay: Option<f64>,
    /// Fail this call with this message.
    #[serde(default)]
    pub error: Option<String>,
    /// Stream the text and thinking word by word, waiting this long (in
    /// milliseconds) before each word: a slow model, for watching tokens
    /// arrive and for cancelling a turn while it streams.
    #[serde(default)]
    pub delta_delay_ms: Option<u64>,
}

/// The script's answer to session-title requests: a title, or a whole
/// response (to script a failure or a delay).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ScriptedTitle {
    /// The title text.
    Text(String),
    /// A response (`text`, `error`, `delay_ms`, …).
    Response(ScriptedResponse),
}

impl ScriptedTitle {
    fn response(&self) -> ScriptedResponse {
        match self {
            ScriptedTitle::Text(text) => ScriptedResponse {
                text: Some(text.clone()),
                ..Default::default()
            },
            ScriptedTitle::Response(r) => r.clone(),
        }
    }
}

/// A whole script.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The responses, in order.
    pub responses: Vec<ScriptedResponse>,
    /// The answer to session-title requests ([`PURPOSE_SESSION_TITLE`]),
    /// which take no response from `responses`; without it the provider
    /// does not answer them (session naming stays off).
    #[serde(default)]
    pub title: Option<ScriptedTitle>,
}

impl Script {
    /// Parses a script from JSON or YAML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_yaml::from_str(text).map_err(|e| {
            format!("invalid script: {e}; a script is {{\"responses\": [{{\"text\": \"...\"}}, {{\"tool_calls\": [{{\"name\": \"...\", \"arguments\": {{}}}}]}}]}}")
        })
    }

    /// Reads and parses a script file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read script {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// How the provider answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptMode {
    /// From a script, in order.
    Script(Arc<Script>),
    /// With the last user message.
    Echo,
    /// With every user message it was sent, joined by ` | ` (what the
    /// model saw of the conversation, for tests of what reaches it).
    EchoContext,
}

/// The scripted provider.
#[derive(Debug)]
pub struct ScriptedProvider {
    mode: ScriptMode,
    echo_delay_ms: Option<u64>,
    next: AtomicUsize,
    model: String,
    context_window: usize,
}

impl ScriptedProvider {
    /// A provider answering from `script`.
    pub fn new(script: Script) -> Self {
        Self::with_mode(ScriptMode::Script(Arc::new(script)))
    }

    /// A provider answering with the last user message.
    pub fn echo() -> Self {
        Self::with_mode(ScriptMode::Echo)
    }

    fn with_mode(mode: ScriptMode) -> Self {
        Self {
            mode,
            echo_delay_ms: None,
            next: AtomicUsize::new(0),
            model: "scripted".into(),
            context_window: 200_000,
        }
    }

    /// Builds the provider from its module spec: `mode` (`script`, `echo`
    /// or `echo-context`), `script` (a file path) or `responses` (inline), `model`,
    /// `context_window`.
    pub fn from_spec(spec: &ModuleSpec) -> Result<Self, MountError> {
        let err = |message: String| MountError::Module {
            module: MODULE.into(),
            message,
        };
        let mut provider = match spec.config_str("mode") {
            Some("echo") => Self::echo(),
            Some("echo-context") => Self::with_mode(ScriptMode::EchoContext),
            Some("script") | None => {
                if let Some(path) = spec.config_str("script") {
                    Self::new(Script::load(Path::new(path)).map_err(err)?)
                } else if let Some(responses) = spec.config.get("responses") {
                    let script: Script =
                        serde_json::from_value(serde_json::json!({ "responses": responses }))
                            .map_err(|e| err(format!("invalid inline responses: {e}")))?;
                    Self::new(script)
                } else {
                    return Err(err(
                        "no script: pass --script FILE, set config.script or config.responses, or use config.mode = \"echo\"".into(),
                    ));
                }
            }
            Some(other) => {
                return Err(err(format!(
                    "unknown mode {other:?}: use \"script\", \"echo\" or \"echo-context\""
                )));
            }
        };
        if let Some(model) = spec.config_str("model") {
            provider.model = model.to_string();
        }
        provider.echo_delay_ms = spec.config_u64("delay_ms");
        if let Some(window) = spec.config_u64("context_window") {
            provider.context_window = window as usize;
        }
        Ok(provider)
    }

    /// How many responses were served so far.
    pub fn served(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }

    fn next_response(
        &self,
        request: &ChatRequest,
    ) -> Result<(usize, ScriptedResponse), ProviderError> {
        if request.purpose.as_deref() == Some(PURPOSE_SESSION_TITLE) {
            return match &self.mode {
                ScriptMode::Script(script) => match &script.title {
                    Some(title) => Ok((self.served(), title.response())),
                    None => Err(no_title()),
                },
                _ => Err(no_title()),
            };
        }
        match &self.mode {
            ScriptMode::Echo | ScriptMode::EchoContext => {
                let last = if self.mode == ScriptMode::EchoContext {
                    request
                        .messages
                        .iter()
                        .filter(|m| m.role == Role::User)
                        .map(|m| m.text_content())
                        .collect::<Vec<_>>()
                        .join(" | ")
                } else {
                    request
                        .messages
                        .iter()
                        .rev()
                        .find(|m| m.role == Role::User)
                        .map(|m| m.text_content())
                        .unwrap_or_default()
                };
                let n = self.next.fetch_add(1, Ordering::SeqCst);
                Ok((
                    n,
                    ScriptedResponse {
                        text: Some(if last.is_empty() {
                            "(empty)".into()
                        } else {
                            last
                        }),
                        delay_ms: self.echo_delay_ms,
                        ..Default::default()
                    },
                ))
            }
            ScriptMode::Script(script) => {
                let n = self.next.fetch_add(1, Ordering::SeqCst);
                script.responses.get(n).cloned().map(|r| (n, r)).ok_or_else(|| {
                    ProviderError::Other(format!(
                        "the script has no response left: it has {} response(s) and request {} asked for another; add responses to the script",
                        script.responses.len(),
                        n + 1
                    ))
                })
            }
        }
    }
}

fn no_title() -> ProviderError {
    ProviderError::Other(
        "the script has no title: add \"title\": \"...\" to the script to answer session-title requests".into(),
    )
}

/// Splits `text` into words, each with the whitespace after it.
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if !c.is_whitespace() && current.ends_with(char::is_whitespace) {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Splits `text` into up to four deltas on character boundaries.
fn deltas(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn estimate_usage(request: &ChatRequest, content: &[ContentBlock]) -> Usage {
    let input = request.messages.estimated_tokens();
    let output =
        Message::new(Default::default(), Role::Assistant, content.to_vec()).estimated_tokens();
    Usage {
        input_tokens: input as u64,
        output_tokens: output as u64,
        ..Default::default()
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "scripted".into(),
            default_model: self.model.clone(),
            context_window: self.context_window,
            max_output_tokens: 4096,
            supports_tools: true,
            supports_thinking: true,
        }
    }

    fn answers(&self, purpose: &str) -> bool {
        match &self.mode {
            ScriptMode::Script(script) => {
                purpose == PURPOSE_SESSION_TITLE && script.title.is_some()
            }
            ScriptMode::Echo | ScriptMode::EchoContext => false,
        }
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(vec![ModelInfo {
            id: self.model.clone(),
            display_name: Some("Scripted responses".into()),
            context_window: Some(self.context_window),
        }])
    }

    async fn stream(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError> {
        let (n, response) = self.next_response(&request)?;
        let delay = response
            .delay_ms
            .map(Duration::from_millis)
            .or_else(|| {
                response
                    .delay
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .map(Duration::from_secs_f64)
            })
            .unwrap_or_default();
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
            }
        }
        if let Some(message) = response.error {
            return Err(ProviderError::Other(format!("scripted error: {message}")));
        }

        let pace = response.delta_delay_ms.map(Duration::from_millis);
        let split = |t: &str| if pace.is_some() { words(t) } else { deltas(t) };
        // Each block with the deltas it streams in.
        let mut blocks: Vec<(ContentBlock, Vec<String>)> = Vec::new();
        if let Some(thinking) = response.thinking.filter(|t| !t.is_empty()) {
            let pieces = split(&thinking);
            let block = ContentBlock::Thinking {
                thinking,
                signature: None,
            };
            blocks.push((block, pieces));
        }
        if let Some(text) = response.text.filter(|t| !t.is_empty()) {
            let pieces = split(&text);
            blocks.push((ContentBlock::Text { text }, pieces));
        }
        let has_calls = !response.tool_calls.is_empty();
        for (i, call) in response.tool_calls.into_iter().enumerate() {
            let id = call
                .id
                .unwrap_or_else(|| format!("call_{}_{}", n + 1, i + 1));
            let fragment = call.arguments.to_string();
            let block = ContentBlock::ToolCall {
                id,
                name: call.name,
                arguments: call.arguments,
            };
            blocks.push((block, vec![fragment]));
        }
        let mut events = Vec::new();
        let mut content = Vec::with_capacity(blocks.len());
        for (index, (block, pieces)) in blocks.into_iter().enumerate() {
            events.extend(StreamEvent::for_block(index, block.clone(), pieces));
            content.push(block);
        }
        let usage = response
            .usage
            .unwrap_or_else(|| estimate_usage(&request, &content));
        events.push(StreamEvent::Completed(ChatResponse {
            content,
            usage,
            stop_reason: if has_calls {
                StopReason::ToolUse
            } else {
                StopReason::EndTurn
            },
            model: Some(request.model.unwrap_or_else(|| self.model.clone())),
        }));
        let Some(pace) = pace else {
            return Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))));
        };
        // Paced: wait before each delta; a cancel ends the stream.
        let paced = futures::stream::unfold(
            (events.into_iter(), cancel),
            move |(mut events, cancel)| async move {
                let event = events.next()?;
                let is_delta = matches!(
                    event,
                    StreamEvent::TextDelta { .. } | StreamEvent::ThinkingDelta { .. }
                );
                if is_delta {
                    tokio::select! {
                        _ = tokio::time::sleep(pace) => {}
                        _ = cancel.cancelled() => {
                            return Some((Err(ProviderError::Cancelled), (Vec::new().into_iter(), cancel)));
                        }
                    }
                }
                Some((Ok(event), (events, cancel)))
            },
        );
        Ok(Box::pin(paced))
    }
}

/// Registers `provider-scripted`.
pub fn register(registry: &mut ModuleRegistry) {
    registry.register_provider(MODULE, |spec, _env| {
        Ok(Arc::new(ScriptedProvider::from_spec(spec)?) as Arc<dyn Provider>)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use weft_core::testing::user_request as request;

    #[tokio::test]
    async fn serves_in_order_and_runs_out_clearly() {
        let script = Script::parse(
            r#"{"responses":[{"tool_calls":[{"name":"read_file","arguments":{"path":"a.txt"}}]},{"text":"done","usage":{"input_tokens":10,"output_tokens":2}}]}"#,
        )
        .unwrap();
        let p = ScriptedProvider::new(script);
        let first = p
            .complete(request("hi"), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(first.stop_reason, StopReason::ToolUse);
        assert!(
            matches!(&first.content[0], ContentBlock::ToolCall { id, name, .. } if id == "call_1_1" && name == "read_file")
        );
        let second = p
            .complete(request("hi"), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(second.usage.input_tokens, 10);
        assert_eq!(second.content, vec![ContentBlock::text("done")]);
        let err = p
            .complete(request("hi"), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no response left"), "{err}");
    }

    #[tokio::test]
    async fn streams_text_in_several_deltas() {
        let p = ScriptedProvider::new(Script {
            responses: vec![ScriptedResponse {
                text: Some("hello there, world".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let events: Vec<_> = p
            .stream(request("x"), CancellationToken::new())
            .await
            .unwrap()
            .collect()
            .await;
        let deltas = events
            .iter()
            .filter(|e| matches!(e, Ok(StreamEvent::TextDelta { .. })))
            .count();
        assert!(deltas >= 3, "{deltas}");
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Completed(_)))));
    }

    #[tokio::test]
    async fn paced_text_streams_word_by_word_and_stops_on_cancel() {
        let p = ScriptedProvider::new(Script {
            responses: vec![
                ScriptedResponse {
                    text: Some("one two  three".into()),
                    delta_delay_ms: Some(1),
                    ..Default::default()
                },
                ScriptedResponse {
                    text: Some("never finished".into()),
                    delta_delay_ms: Some(60_000),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let events: Vec<_> = p
            .stream(request("x"), CancellationToken::new())
            .await
            .unwrap()
            .collect()
            .await;
        let words: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::TextDelta { text, .. }) => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(words, ["one ", "two  ", "three"]);
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Completed(_)))));

        let cancel = CancellationToken::new();
        let mut stream = p.stream(request("x"), cancel.clone()).await.unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Ok(StreamEvent::BlockStart { .. }))
        ));
        cancel.cancel();
        assert!(matches!(
            stream.next().await,
            Some(Err(ProviderError::Cancelled))
        ));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn titles_come_from_the_script_and_use_up_no_response() {
        let title_request = || ChatRequest {
            purpose: Some(PURPOSE_SESSION_TITLE.into()),
            ..request("name this")
        };
        let p = ScriptedProvider::new(
            Script::parse(r#"{"responses": [{"text": "answer"}], "title": "Parser fixes"}"#)
                .unwrap(),
        );
        assert!(p.answers(PURPOSE_SESSION_TITLE));
        assert!(!p.answers("something else"));
        let t = p
            .complete(title_request(), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(t.content, vec![ContentBlock::text("Parser fixes")]);
        let a = p
            .complete(request("hi"), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(a.content, vec![ContentBlock::text("answer")]);

        let failing =
            Script::parse(r#"{"responses": [], "title": {"error": "no names today"}}"#).unwrap();
        let err = ScriptedProvider::new(failing)
            .complete(title_request(), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no names today"), "{err}");

        let untitled = ScriptedProvider::new(Script::parse(r#"{"responses": []}"#).unwrap());
        assert!(!untitled.answers(PURPOSE_SESSION_TITLE));
        let err = untitled
            .complete(title_request(), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no title"), "{err}");
        assert!(!ScriptedProvider::echo().answers(PURPOSE_SESSION_TITLE));
    }

    #[tokio::test]
    async fn echo_mode_and_yaml_scripts() {
        let p = ScriptedProvider::echo();
        let r = p
            .complete(request("repeat me"), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(r.content, vec![ContentBlock::text("repeat me")]);
        let s = Script::parse("responses:\n  - text: hi\n    delay_ms: 1\n").unwrap();
        assert_eq!(s.responses[0].delay_ms, Some(1));
        assert!(Script::parse("{\"responses\": [{\"txt\": 1}]}").is_err());
    }

    #[tokio::test]
    async fn delay_is_cancellable() {
        let p = ScriptedProvider::new(Script {
            responses: vec![ScriptedResponse {
                text: Some("late".into()),
                delay_ms: Some(10_000),
                ..Default::default()
            }],
            ..Default::default()
        });
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.cancel();
        });
        let start = std::time::Instant::now();
        let err = p.stream(request("x"), cancel).await.err().unwrap();
        assert_eq!(err, ProviderError::Cancelled);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
