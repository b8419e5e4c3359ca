//! Server-sent event streams: `/stream` (a session's records and kernel
//! events, resumable) and `/execute` (one turn, ending with `done`).
//!
//! Both read the session's kernel feed ([`weft_core::feed`]); every item
//! names its turn, so `/execute` keeps to its own. The kernel events of a
//! sub-agent session the session delegates to are on its feed too, tagged
//! [`weft_core::feed::CHILD_SESSION_FIELD`] (`child_session_id`), and are
//! sent as they are (`/execute` leaves them out: they belong to the
//! child's turn). Durable records carry
//! `id: <seq>`. A client that reconnects with `Last-Event-ID: N` first gets
//! the records after N, then follows the feed live; a record is never sent
//! twice and never skipped (the feed's guarantee).
//!
//! Event names are weft's canonical ones: kernel events by their name
//! (`content_block:delta`, `tool:pre`, …), records by their kind
//! (`message`, `status`, `meta`, …), plus `connected` first and, on
//! `/execute`, `done` last. With `?compat=amplifierd` the names are
//! amplifierd's: `connected`, `user_message_saved`,
//! `assistant_message_start`, `content`, `assistant_message_complete`,
//! `execution_error` (others are left out).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use weft_core::feed::{FeedError, FeedItem, FeedReceiver};
use weft_core::hooks::events;
use weft_core::message::Role;
use weft_core::record::RecordKind;
use weft_core::{Record, SessionId, TurnId};

use crate::error::ApiError;
use crate::live::{Core, TurnResult};
use crate::model::TranscriptMessage;

/// Event names on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compat {
    /// weft's canonical names.
    Weft,
    /// amplifierd's names.
    Amplifierd,
}

impl Compat {
    /// Parses `?compat=`.
    pub(crate) fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") | Some("weft") => Ok(Compat::Weft),
            Some("amplifierd") => Ok(Compat::Amplifierd),
            Some(other) => Err(format!(
                "invalid query parameter: compat: unknown value {other:?}; use `amplifierd` (or leave it out for weft's event names)"
            )),
        }
    }
}

/// The client's `Last-Event-ID` (the header, else `?last_event_id=`): a
/// record seq, surrounding spaces allowed. Anything else is a 400.
pub(crate) fn last_event_id(
    headers: &HeaderMap,
    query: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        Some(value) => parse_last_event_id(value.as_bytes()).map(Some),
        None => Ok(query),
    }
}

/// Parses a `Last-Event-ID` value (raw header bytes).
fn parse_last_event_id(raw: &[u8]) -> Result<u64, ApiError> {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    // Digits only: `u64::from_str` would also take a leading `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_seq(text));
    }
    text.parse::<u64>().map_err(|_| not_a_seq(text))
}

fn not_a_seq(text: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Last-Event-ID: {text:?} is not a record seq (a non-negative integer)"
    ))
}

/// Where a stream resumes (the first seq it replays): after `last`,
/// which must not be beyond the session's `head` — a stream told to skip
/// records that do not exist yet would silently drop the next ones.
pub(crate) fn resume_from(last: Option<u64>, head: u64) -> Result<Option<u64>, ApiError> {
    match last {
        Some(last) if last > head => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "Last-Event-ID {last} is beyond the session's last event {head}; reconnect without it"
            ),
        )),
        Some(last) => Ok(Some(last.saturating_add(1))),
        None => Ok(None),
    }
}

/// What a stream sends.
pub(crate) struct StreamSpec {
    pub(crate) session_id: SessionId,
    pub(crate) compat: Compat,
    /// Send a `connected` event first.
    pub(crate) connected: bool,
    /// Only items of this turn (for `/execute`).
    pub(crate) turn: Option<TurnId>,
    /// The turn's result: the stream ends with `done` when it arrives.
    pub(crate) done: Option<oneshot::Receiver<TurnResult>>,
}

struct State {
    core: Arc<Core>,
    rx: FeedReceiver,
    spec: StreamSpec,
    pending: VecDeque<Event>,
    finished: bool,
}

/// The stream of SSE events for `spec`, reading the session's feed through
/// `rx` (which replays the records the client asked for first).
pub(crate) fn events(
    core: Arc<Core>,
    rx: FeedReceiver,
    spec: StreamSpec,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let mut pending = VecDeque::new();
    if spec.connected {
        pending.push_back(named(
            "connected",
            &json!({"sessionId": spec.session_id, "lastSeq": rx.head()}),
        ));
    }
    let state = State {
        core,
        rx,
        spec,
        pending,
        finished: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                if st.pending.is_empty() {
                    // An idle stream holds no queue (10,000 idle clients:
                    // ~2 MB); a burst allocates it again.
                    st.pending = VecDeque::new();
                }
                return Some((Ok(event), st));
            }
            if st.finished {
                return None;
            }
            st.next().await;
        }
    })
}

fn named(name: &str, data: &Value) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("{}"))
}

impl State {
    async fn next(&mut self) {
        let shutdown = self.core.shutdown.clone();
        let rx = &mut self.rx;
        let done_slot = &mut self.spec.done;
        let done = async move {
            match done_slot {
                Some(done) => done.await.ok(),
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Live::Shutdown,
            item = rx.recv() => Live::Item(item),
            result = done => Live::Done(result),
        };
        match outcome {
            Live::Shutdown => {
                // Shutdown waits for cancelled turns before it fires: pass
                // on what they published first (their `execution:end`).
                self.drain().await;
                self.pending.push_back(named(
                    "shutdown",
                    &json!({"detail": "the server is shutting down; reconnect with Last-Event-ID to resume", "lastSeq": self.rx.last_seq()}),
                ));
                self.finished = true;
            }
            Live::Item(Ok(item)) => self.item(&item),
            Live::Item(Err(e)) => self.failed(e),
            Live::Done(result) => {
                self.spec.done = None;
                // What the turn published before it finished is queued.
                self.drain().await;
                let turn = self.spec.turn.as_ref().map(TurnId::as_str);
                let data = match result {
                    Some(Ok(answer)) => {
                        let mut data = json!({"status": "completed", "result": answer.text, "sessionId": self.spec.session_id, "turn": turn});
                        if let Some(value) = answer.structured {
                            data["structured"] = value;
                        }
                        data
                    }
                    Some(Err(e)) if e.is_cancelled() => {
                        json!({"status": "cancelled", "error": e.to_string(), "sessionId": self.spec.session_id, "turn": turn})
                    }
                    Some(Err(e)) => {
                        json!({"status": "failed", "error": e.to_string(), "sessionId": self.spec.session_id, "turn": turn})
                    }
                    None => {
                        json!({"status": "failed", "error": "the turn was dropped", "sessionId": self.spec.session_id, "turn": turn})
                    }
                };
                self.pending.push_back(named("done", &data));
                self.finished = true;
            }
        }
    }

    /// Queues what is waiting on the feed now.
    async fn drain(&mut self) {
        loop {
            match self.rx.try_recv().await {
                Ok(Some(item)) => self.item(&item),
                Ok(None) => break,
                Err(e) => {
                    self.failed(e);
                    break;
                }
            }
        }
    }

    fn failed(&mut self, e: FeedError) {
        let detail = match e {
            FeedError::Lagged { missed, last_seq } => format!(
                "this stream fell {missed} events behind and was closed; reconnect with Last-Event-ID: {last_seq} to resume"
            ),
            FeedError::Closed => "the session was deleted".to_string(),
            FeedError::Store(e) => format!("cannot read the session log to replay it: {e}"),
        };
        self.pending.push_back(named(
            "error",
            &json!({"detail": detail, "lastSeq": self.rx.last_seq()}),
        ));
        self.finished = true;
    }

    fn item(&mut self, item: &FeedItem) {
        if let Some(turn) = &self.spec.turn
            && item.turn() != Some(turn)
        {
            return;
        }
        match item {
            FeedItem::Record(record) => self.record(record),
            FeedItem::Event(e) => self.event(&e.name, &e.data),
        }
    }

    fn record(&mut self, record: &Record) {
        let event = match self.spec.compat {
            Compat::Weft => Event::default()
                .id(record.seq.to_string())
                .event(record.kind.name())
                .json_data(record)
                .ok(),
            Compat::Amplifierd => amplifierd_record(record),
        };
        if let Some(event) = event {
            self.pending.push_back(event);
        }
    }

    fn event(&mut self, name: &str, data: &Value) {
        let event = match self.spec.compat {
            Compat::Weft => Some(named(name, data)),
            Compat::Amplifierd => amplifierd_event(name, data),
        };
        if let Some(event) = event {
            self.pending.push_back(event);
        }
    }
}

enum Live {
    Shutdown,
    Item(Result<Arc<FeedItem>, FeedError>),
    Done(Option<TurnResult>),
}

/// amplifierd's event for a record, if it has one.
fn amplifierd_record(record: &Record) -> Option<Event> {
    let RecordKind::Message(message) = &record.kind else {
        return None;
    };
    let name = match message.role {
        Role::User => "user_message_saved",
        Role::Assistant if message.tool_calls().is_empty() => "assistant_message_complete",
        _ => return None,
    };
    let view = TranscriptMessage::from_message(record.seq, message);
    Event::default()
        .id(record.seq.to_string())
        .event(name)
        .json_data(json!({
            "role": view.role,
            "content": view.content,
            "timestamp": view.timestamp,
            "seq": record.seq,
        }))
        .ok()
}

/// amplifierd's event for a kernel event, if it has one.
fn amplifierd_event(name: &str, data: &Value) -> Option<Event> {
    let timestamp = data.get("timestamp").cloned().unwrap_or(Value::Null);
    match name {
        events::EXECUTION_START => Some(named(
            "assistant_message_start",
            &json!({"timestamp": timestamp}),
        )),
        events::CONTENT_BLOCK_DELTA if data.get("kind").and_then(Value::as_str) == Some("text") => {
            let delta = data.get("delta").cloned().unwrap_or(Value::Null);
            Some(named(
                "content",
                &json!({"type": "content", "content": delta}),
            ))
        }
        events::EXECUTION_END => {
            let status = data.get("status").and_then(Value::as_str).unwrap_or("");
            match status {
                "failed" | "cancelled" => {
                    let error = data
                        .get("error")
                        .filter(|e| !e.is_null())
                        .cloned()
                        .unwrap_or_else(|| Value::String(status.to_string()));
                    Some(named("execution_error", &json!({"error": error})))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use weft_core::memory::MemoryStore;
    use weft_core::mount::{MountPlan, PlanFormat};
    use weft_core::registry::ModuleRegistry;
    use weft_core::session::Project;

    use crate::config::ServerConfig;
    use crate::context::{ServerContext, StaticPlanSource};

    fn core() -> Arc<Core> {
        let plan = MountPlan::parse(
            r#"{"session": {"orchestrator": "loop-basic", "context": "context-simple"}}"#,
            PlanFormat::Json,
        )
        .expect("plan")
        .plan;
        Arc::new(Core::new(
            ServerContext {
                store: Arc::new(MemoryStore::new()),
                registry: Arc::new(ModuleRegistry::with_core_modules()),
                plans: Arc::new(StaticPlanSource::new("base", plan)),
                project: Project::current(),
                user: "t".into(),
                home: std::env::temp_dir(),
                approval: None,
            },
            ServerConfig::default(),
        ))
    }

    #[tokio::test]
    async fn a_lagging_reader_gets_an_error_and_the_stream_ends() {
        let core = core();
        let id = SessionId::new_v7();
        core.store()
            .create(
                weft_core::SessionMeta::new(id.clone(), Project::current(), "base"),
                vec![],
            )
            .await
            .expect("create");
        let feed = weft_core::Feed::new(core.store().clone(), id.clone(), 2);
        let rx = feed.subscribe(None).await.expect("subscribe");
        for i in 0..5 {
            feed.event("x", &json!({"i": i}));
        }
        let spec = StreamSpec {
            session_id: id,
            compat: Compat::Weft,
            connected: false,
            turn: None,
            done: None,
        };
        let out: Vec<String> = events(core, rx, spec)
            .map(|e| format!("{:?}", e.expect("infallible")))
            .collect()
            .await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].contains("error") && out[0].contains("fell 3 events behind"),
            "{out:?}"
        );
    }

    #[test]
    fn last_event_id_beyond_the_head_is_a_400_naming_the_head() {
        let err = resume_from(Some(1000), 5).expect_err("beyond the head");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.detail,
            "Last-Event-ID 1000 is beyond the session's last event 5; reconnect without it"
        );
        assert!(resume_from(Some(u64::MAX), 5).is_err());
        assert_eq!(resume_from(Some(5), 5), Ok(Some(6)));
        assert_eq!(resume_from(Some(0), 0), Ok(Some(1)));
        assert_eq!(resume_from(None, 5), Ok(None));
        assert_eq!(parse_last_event_id(b" 2 ").ok(), Some(2));
        for bad in [
            &b"abc"[..],
            b"-1",
            b"1.5",
            b"",
            b"0x10",
            b"+3",
            b"100000000000000000000000",
            b"\xff\xfe",
        ] {
            assert!(parse_last_event_id(bad).is_err(), "{bad:?}");
        }
    }

    /// Cases per property: `PROPTEST_CASES` (default 64, kept small for
    /// the normal test run; CI's fuzz step raises it).
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(cases()))]

        /// Whatever a client sends as `Last-Event-ID`, the stream either
        /// resumes at a seq at most one past the head or the request is a
        /// 400; it never panics and never skips records past the head.
        #[test]
        fn any_last_event_id_resumes_within_the_head_or_is_a_400(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
            digits in "[0-9 ]{0,22}",
            head in 0u64..10_000,
        ) {
            for value in [raw.as_slice(), digits.as_bytes()] {
                match parse_last_event_id(value).and_then(|last| resume_from(Some(last), head).map(|r| (last, r))) {
                    Ok((last, from)) => {
                        proptest::prop_assert!(last <= head);
                        proptest::prop_assert_eq!(from, Some(last + 1));
                    }
                    Err(e) => proptest::prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
                }
            }
        }
    }

    #[test]
    fn compat_names() {
        assert_eq!(Compat::parse(None), Ok(Compat::Weft));
        assert_eq!(Compat::parse(Some("amplifierd")), Ok(Compat::Amplifierd));
        assert!(Compat::parse(Some("x")).is_err());
        let ev = amplifierd_event(
            events::CONTENT_BLOCK_DELTA,
            &json!({"kind": "text", "delta": "hi"}),
        );
        assert!(format!("{ev:?}").contains("content"));
        assert!(amplifierd_event(events::TOOL_PRE, &json!({})).is_none());
    }
}
