//! [`FakeProvider`]: a provider answering from a queue of [`Reply`]s, with
//! call counting, request capture, pausable streams and drop tracking.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Gate, lock};
use crate::message::{ContentBlock, Usage};
use crate::provider::{
    ChatRequest, ChatResponse, ModelInfo, Provider, ProviderError, ProviderInfo, ProviderStream,
    StopReason, StreamEvent,
};
use crate::registry::ModuleRegistry;

/// The module name [`FakeProvider::register`] uses.
pub const FAKE_PROVIDER_MODULE: &str = "provider-fake";

/// The model a [`FakeProvider`] reports when a request names none.
const FAKE_MODEL: &str = "fake-model";

/// One tool call of a [`Reply::ToolCalls`].
#[derive(Debug, Clone, PartialEq)]
pub struct FakeCall {
    /// The call id (None: `call_<stream number>_<call number>`, both from 1).
    pub id: Option<String>,
    /// The tool name.
    pub name: String,
    /// The arguments.
    pub arguments: Value,
}

/// One scripted answer of a [`FakeProvider`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A text answer streamed as these deltas (in one text block).
    Text(Vec<String>),
    /// Tool calls, each in its own block, with its arguments in one delta.
    ToolCalls(Vec<FakeCall>),
    /// `stream` fails with this error.
    Error(ProviderError),
}

impl Reply {
    /// A text answer streamed one word per delta (each delta keeps its
    /// trailing space: `"a b c"` streams `"a "`, `"b "`, `"c"`).
    pub fn text(text: &str) -> Self {
        Reply::Text(text.split_inclusive(' ').map(str::to_string).collect())
    }

    /// A text answer streamed as exactly these deltas.
    pub fn deltas<I, S>(deltas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Reply::Text(deltas.into_iter().map(Into::into).collect())
    }

    /// One tool call with a generated id.
    pub fn tool_call(name: &str, arguments: Value) -> Self {
        Self::tool_calls([(name, arguments)])
    }

    /// Several tool calls, in order, with generated ids.
    pub fn tool_calls<'a>(calls: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        Reply::ToolCalls(
            calls
                .into_iter()
                .map(|(name, arguments)| FakeCall {
                    id: None,
                    name: name.to_string(),
                    arguments,
                })
                .collect(),
        )
    }

    /// A failing call.
    pub fn error(error: ProviderError) -> Self {
        Reply::Error(error)
    }

    /// The events of this reply as stream number `n` (from 0).
    fn events(self, n: usize, model: String) -> Result<VecDeque<StreamEvent>, ProviderError> {
        // Each block with the deltas it streams in.
        let (blocks, stop_reason) = match self {
            Reply::Error(e) => return Err(e),
            Reply::Text(deltas) => (
                vec![(ContentBlock::text(deltas.concat()), deltas)],
                StopReason::EndTurn,
            ),
            Reply::ToolCalls(calls) => (
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, call)| {
                        let fragment = call.arguments.to_string();
                        let block = ContentBlock::ToolCall {
                            id: call
                                .id
                                .unwrap_or_else(|| format!("call_{}_{}", n + 1, i + 1)),
                            name: call.name,
                            arguments: call.arguments,
                        };
                        (block, vec![fragment])
                    })
                    .collect(),
                StopReason::ToolUse,
            ),
        };
        let mut events = VecDeque::new();
        let mut content = Vec::with_capacity(blocks.len());
        for (index, (block, pieces)) in blocks.into_iter().enumerate() {
            events.extend(StreamEvent::for_block(index, block.clone(), pieces));
            content.push(block);
        }
        events.push_back(StreamEvent::Completed(ChatResponse {
            content,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            stop_reason,
            model: Some(model),
        }));
        Ok(events)
    }
}

#[derive(Default)]
struct Inner {
    replies: Mutex<VecDeque<Reply>>,
    pauses: Mutex<VecDeque<(usize, Gate)>>,
    requests: Mutex<Vec<ChatRequest>>,
    calls: AtomicUsize,
    dropped: AtomicUsize,
    abandoned: AtomicUsize,
}

/// A provider answering from a queue of [`Reply`]s, one per `stream` call,
/// in order; when the queue is empty `stream` fails with
/// [`ProviderError::Other`]. It records every request, counts calls, and
/// tracks its streams: [`FakeProvider::streams_dropped`] and
/// [`FakeProvider::streams_abandoned`] (dropped before `Completed` was
/// taken). Streams honour the cancellation token given to `stream`: once
/// it fires they yield [`ProviderError::Cancelled`] and end.
///
/// Cheap to clone; clones share the queue and the records, so a test keeps
/// a clone while the session owns another.
#[derive(Clone, Default)]
pub struct FakeProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("calls", &self.calls())
            .field("replies_left", &lock(&self.inner.replies).len())
            .finish()
    }
}

impl FakeProvider {
    /// A provider with no replies queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider with `replies` queued.
    pub fn replying(replies: impl IntoIterator<Item = Reply>) -> Self {
        let provider = Self::new();
        for reply in replies {
            provider.push(reply);
        }
        provider
    }

    /// Queues one more reply.
    pub fn push(&self, reply: Reply) -> &Self {
        lock(&self.inner.replies).push_back(reply);
        self
    }

    /// Arms a pause for the next `stream` call that has none: that stream
    /// yields `n_deltas` deltas (text, thinking or tool-argument), then
    /// passes the returned [`Gate`] before its next event (before
    /// `Completed` at the latest; `0` pauses before the first event). The
    /// stream answers cancellation while it waits. Pauses arm successive
    /// streams in the order they were made.
    pub fn pause_after(&self, n_deltas: usize) -> Gate {
        let gate = Gate::new();
        lock(&self.inner.pauses).push_back((n_deltas, gate.clone()));
        gate
    }

    /// How many times `stream` was called.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// The requests received, in call order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.inner.requests).clone()
    }

    /// How many replies are still queued.
    pub fn replies_left(&self) -> usize {
        lock(&self.inner.replies).len()
    }

    /// How many streams were dropped (for any reason).
    pub fn streams_dropped(&self) -> usize {
        self.inner.dropped.load(Ordering::SeqCst)
    }

    /// How many streams were dropped before their `Completed` event was
    /// taken (cancelled or abandoned by the consumer).
    pub fn streams_abandoned(&self) -> usize {
        self.inner.abandoned.load(Ordering::SeqCst)
    }

    /// Registers this provider (shared, not copied) as
    /// [`FAKE_PROVIDER_MODULE`].
    pub fn register(&self, registry: &mut ModuleRegistry) {
        let provider = self.clone();
        registry.register_provider(FAKE_PROVIDER_MODULE, move |_spec, _env| {
            Ok(Arc::new(provider.clone()) as Arc<dyn Provider>)
        });
    }
}

/// Counts the stream's drop, and whether it was abandoned.
struct DropRecord {
    inner: Arc<Inner>,
    completed: bool,
}

impl Drop for DropRecord {
    fn drop(&mut self) {
        self.inner.dropped.fetch_add(1, Ordering::SeqCst);
        if !self.completed {
            self.inner.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct StreamState {
    events: VecDeque<StreamEvent>,
    pause: Option<(usize, Gate)>,
    deltas: usize,
    cancel: CancellationToken,
    record: DropRecord,
    done: bool,
}

impl StreamState {
    async fn next(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        if self.done {
            return None;
        }
        let at_end = matches!(self.events.front(), Some(StreamEvent::Completed(_)));
        let deltas = self.deltas;
        if let Some((_, gate)) = self.pause.take_if(|(n, _)| deltas >= *n || at_end) {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {}
                _ = gate.pass() => {}
            }
        }
        if self.cancel.is_cancelled() {
            self.done = true;
            return Some(Err(ProviderError::Cancelled));
        }
        let event = self.events.pop_front()?;
        match &event {
            StreamEvent::TextDelta { .. }
            | StreamEvent::ThinkingDelta { .. }
            | StreamEvent::ToolArgumentsDelta { .. } => self.deltas += 1,
            StreamEvent::Completed(_) => {
                self.record.completed = true;
                self.done = true;
            }
            _ => {}
        }
        Some(Ok(event))
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "fake".into(),
            default_model: FAKE_MODEL.into(),
            context_window: 200_000,
            max_output_tokens: 4096,
            supports_tools: true,
            supports_thinking: false,
        }
    }

    /// A fake answers the conversation's turns only: its scripted
    /// responses are not used up by side requests (session titles).
    fn answers(&self, _purpose: &str) -> bool {
        false
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(vec![ModelInfo {
            id: FAKE_MODEL.into(),
            display_name: Some("Fake replies".into()),
            context_window: Some(200_000),
        }])
    }

    async fn stream(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError> {
        let n = self.inner.calls.fetch_add(1, Ordering::SeqCst);
        let model = request.model.clone().unwrap_or_else(|| FAKE_MODEL.into());
        lock(&self.inner.requests).push(request);
        if cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        let reply = lock(&self.inner.replies).pop_front().ok_or_else(|| {
            ProviderError::Other(format!(
                "FakeProvider has no reply left for call {}; push more replies",
                n + 1
            ))
        })?;
        let events = reply.events(n, model)?;
        let state = StreamState {
            events,
            pause: lock(&self.inner.pauses).pop_front(),
            deltas: 0,
            cancel,
            record: DropRecord {
                inner: self.inner.clone(),
                completed: false,
            },
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move { state.next().await.map(|event| (event, state)) },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::user_request as request;
    use futures::StreamExt;

    #[tokio::test]
    async fn replies_in_order_then_runs_out() {
        let p = FakeProvider::replying([
            Reply::tool_call("echo", serde_json::json!({"x": 1})),
            Reply::text("one two three"),
        ]);
        let first = p
            .complete(request("a"), CancellationToken::new())
            .await
            .expect("first");
        assert_eq!(first.stop_reason, StopReason::ToolUse);
        assert!(
            matches!(&first.content[0], ContentBlock::ToolCall { id, name, .. } if id == "call_1_1" && name == "echo")
        );
        let events: Vec<_> = p
            .stream(request("b"), CancellationToken::new())
            .await
            .expect("second")
            .collect()
            .await;
        let deltas: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::TextDelta { text, .. }) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, ["one ", "two ", "three"]);
        let err = p
            .complete(request("c"), CancellationToken::new())
            .await
            .expect_err("ran out");
        assert!(err.to_string().contains("no reply left"), "{err}");
        assert_eq!(p.calls(), 3);
        assert_eq!(p.requests()[1].messages[0].text_content(), "b");
        assert_eq!((p.streams_dropped(), p.streams_abandoned()), (2, 0));
    }

    #[tokio::test]
    async fn a_paused_stream_waits_for_release() {
        let p = FakeProvider::replying([Reply::text("a b c")]);
        let gate = p.pause_after(1);
        let mut stream = p
            .stream(request("x"), CancellationToken::new())
            .await
            .expect("stream");
        let consumer = tokio::spawn(async move {
            let mut texts = String::new();
            while let Some(event) = stream.next().await {
                if let StreamEvent::TextDelta { text, .. } = event.expect("event") {
                    texts.push_str(&text);
                }
            }
            texts
        });
        gate.reached().await;
        assert!(!consumer.is_finished(), "the stream did not hold");
        gate.release();
        assert_eq!(consumer.await.expect("consumer"), "a b c");
        assert_eq!(p.streams_abandoned(), 0);
    }

    #[tokio::test]
    async fn cancellation_ends_a_paused_stream() {
        let p = FakeProvider::replying([Reply::text("a b c")]);
        let gate = p.pause_after(0);
        let cancel = CancellationToken::new();
        let mut stream = p
            .stream(request("x"), cancel.clone())
            .await
            .expect("stream");
        let consumer = tokio::spawn(async move { stream.next().await });
        gate.reached().await;
        cancel.cancel();
        let first = consumer.await.expect("consumer");
        assert!(matches!(first, Some(Err(ProviderError::Cancelled))));
        assert_eq!((p.streams_dropped(), p.streams_abandoned()), (1, 1));
    }

    #[tokio::test]
    async fn an_error_reply_fails_the_call() {
        let p = FakeProvider::replying([Reply::error(ProviderError::Other("boom".into()))]);
        let err = p
            .stream(request("x"), CancellationToken::new())
            .await
            .err()
            .expect("error");
        assert_eq!(err, ProviderError::Other("boom".into()));
    }
}
