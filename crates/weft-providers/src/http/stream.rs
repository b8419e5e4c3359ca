//! Stream framing and decoding: SSE/NDJSON frames, the [`Decoder`] a vendor
//! supplies, and the driver that runs a streamed call across its attempts.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{
    ERROR_BODY_LIMIT, Interrupt, LINE_LIMIT, Transport, error_chain, error_message, guarded,
    read_body, retry_after, retry_reason, secs,
};
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_core::provider::{ChatResponse, ProviderError, StreamEvent};

/// One frame of a response: an SSE event or an NDJSON line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// The SSE event name (empty for NDJSON).
    pub event: String,
    /// The data (the JSON text).
    pub data: String,
}

/// How a response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Server-sent events (Anthropic, OpenAI).
    Sse,
    /// One JSON object per line (Ollama).
    Ndjson,
}

/// What a decoder can fail with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fail {
    /// The stream is malformed or inconsistent.
    Stream(String),
    /// The server sent an error event. `retry_status` classifies it as an
    /// HTTP status would (`Some(529)`: overloaded), which makes it retryable
    /// while no content has been produced.
    ErrorEvent {
        /// The status it corresponds to, when it is a retryable kind.
        retry_status: Option<u16>,
        /// The error's type and message.
        text: String,
    },
}

/// Turns a vendor's frames into stream events.
pub(crate) trait Decoder: Send + Default + 'static {
    /// Handles one frame, pushing the events it causes onto `out`. Returns
    /// the response when the frame completes it.
    fn frame(
        &mut self,
        frame: &Frame,
        out: &mut Vec<StreamEvent>,
    ) -> Result<Option<ChatResponse>, Fail>;

    /// The body ended without a completing frame: the response if the
    /// decoder can vouch for it being complete, else a failure.
    fn eof(&mut self, out: &mut Vec<StreamEvent>) -> Result<ChatResponse, Fail>;
}

type SseStream = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// A response body split into frames.
pub(super) enum Frames {
    Sse(SseStream),
    Ndjson {
        response: reqwest::Response,
        buf: Vec<u8>,
        eof: bool,
    },
}

/// Why reading a frame failed.
enum FrameError {
    /// The connection broke.
    Transport(String),
    /// The bytes are not a valid stream.
    Malformed(String),
}

impl Frames {
    fn new(response: reqwest::Response, framing: Framing) -> Self {
        match framing {
            Framing::Sse => Frames::Sse(Box::pin(response.bytes_stream().eventsource())),
            Framing::Ndjson => Frames::Ndjson {
                response,
                buf: Vec::new(),
                eof: false,
            },
        }
    }

    /// The next frame, `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        match self {
            Frames::Sse(events) => match events.next().await {
                None => Ok(None),
                Some(Ok(event)) => Ok(Some(Frame {
                    event: event.event,
                    data: event.data,
                })),
                Some(Err(EventStreamError::Transport(e))) => {
                    Err(FrameError::Transport(error_chain(&e)))
                }
                Some(Err(EventStreamError::Utf8(e))) => Err(FrameError::Malformed(format!(
                    "the stream is not valid UTF-8 ({e})"
                ))),
                Some(Err(EventStreamError::Parser(e))) => Err(FrameError::Malformed(format!(
                    "the stream is not valid server-sent events ({e:?})"
                ))),
            },
            Frames::Ndjson { response, buf, eof } => loop {
                if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = String::from_utf8(line).map_err(|e| {
                        FrameError::Malformed(format!("the stream is not valid UTF-8 ({e})"))
                    })?;
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    return Ok(Some(Frame {
                        event: String::new(),
                        data: line.to_string(),
                    }));
                }
                if *eof {
                    let rest = String::from_utf8_lossy(buf).trim().to_string();
                    buf.clear();
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    // A last line without its newline is accepted only when
                    // it is complete JSON; otherwise the stream was cut.
                    if serde_json::from_str::<Value>(&rest).is_err() {
                        return Err(FrameError::Malformed(
                            "the stream ended in the middle of a line: the response was cut off"
                                .into(),
                        ));
                    }
                    return Ok(Some(Frame {
                        event: String::new(),
                        data: rest,
                    }));
                }
                if buf.len() > LINE_LIMIT {
                    return Err(FrameError::Malformed(format!(
                        "a line of the stream is longer than {} MiB",
                        LINE_LIMIT / (1024 * 1024)
                    )));
                }
                match response.chunk().await {
                    Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                    Ok(None) => *eof = true,
                    Err(e) => return Err(FrameError::Transport(error_chain(&e))),
                }
            },
        }
    }
}

/// The state of one streamed call, across its attempts.
pub(super) struct Driver<D: Decoder> {
    pub(super) t: Arc<Transport>,
    pub(super) path: String,
    pub(super) body: Vec<u8>,
    pub(super) framing: Framing,
    pub(super) decoder: D,
    pub(super) cancel: CancellationToken,
    /// Attempts started so far.
    pub(super) attempt: u32,
    /// Whether a content event (anything but `Retry`) was handed out.
    pub(super) produced: bool,
    /// Whether the current attempt has read a frame.
    pub(super) got_frame: bool,
    /// Events ready to hand out.
    pub(super) queue: VecDeque<StreamEvent>,
    /// The current attempt's response body.
    pub(super) frames: Option<Frames>,
    /// A backoff to sleep before the next attempt.
    pub(super) pending_delay: Option<Duration>,
    /// When the current attempt must end (the `timeout` setting).
    pub(super) attempt_deadline: Option<Instant>,
    /// When the current attempt's first frame must have arrived.
    pub(super) first_byte_deadline: Instant,
    /// Nothing more will come after the queue.
    pub(super) done: bool,
}

impl<D: Decoder> Driver<D> {
    pub(super) async fn next(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if !matches!(event, StreamEvent::Retry { .. }) {
                    self.produced = true;
                }
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step().await {
                self.done = true;
                // Dropping the body closes the connection.
                self.frames = None;
                return Some(Err(self.t.scrub_error(e)));
            }
        }
    }

    /// The deadline for the current wait: the step's own, or the attempt's
    /// total, whichever comes first.
    fn deadline(&self, step: Instant, why: String) -> Option<(Instant, String)> {
        match self.attempt_deadline {
            Some(total) if total <= step => Some((
                total,
                format!(
                    "the request took longer than its {} timeout",
                    secs(self.t.timeouts.total.unwrap_or_default())
                ),
            )),
            _ => Some((step, why)),
        }
    }

    fn interrupted(&self, i: Interrupt) -> ProviderError {
        self.t.interrupt_error(i)
    }

    /// Makes progress: sleeps a pending backoff, connects, or reads a frame.
    async fn step(&mut self) -> Result<(), ProviderError> {
        if let Some(delay) = self.pending_delay.take() {
            guarded(&self.cancel, None, tokio::time::sleep(delay))
                .await
                .map_err(|i| self.interrupted(i))?;
        }
        if self.frames.is_none() {
            return match self.connect().await {
                Ok(frames) => {
                    self.frames = Some(frames);
                    Ok(())
                }
                Err((e, wait)) => self.retry_or_fail(e, wait),
            };
        }
        let deadline = if self.got_frame {
            self.deadline(
                Instant::now() + self.t.timeouts.idle,
                format!(
                    "the stream stalled: no data for {} (idle timeout)",
                    secs(self.t.timeouts.idle)
                ),
            )
        } else {
            self.deadline(
                self.first_byte_deadline,
                format!(
                    "no response data within {} (first-byte timeout)",
                    secs(self.t.timeouts.first_byte)
                ),
            )
        };
        let Some(frames) = self.frames.as_mut() else {
            return Ok(());
        };
        let read = match guarded(&self.cancel, deadline, frames.next()).await {
            Ok(read) => read,
            Err(i) => {
                let e = self.interrupted(i);
                return self.retry_or_fail(e, None);
            }
        };
        let mut out = Vec::new();
        match read {
            Ok(Some(frame)) => {
                self.got_frame = true;
                match self.decoder.frame(&frame, &mut out) {
                    Ok(None) => self.queue.extend(out),
                    Ok(Some(response)) => {
                        self.queue.extend(out);
                        self.queue.push_back(StreamEvent::Completed(response));
                        self.done = true;
                        self.frames = None;
                    }
                    Err(fail) => {
                        let e = self.t.fail_error(fail, self.produced);
                        return self.retry_or_fail(e, None);
                    }
                }
                Ok(())
            }
            Ok(None) => match self.decoder.eof(&mut out) {
                Ok(response) => {
                    self.queue.extend(out);
                    self.queue.push_back(StreamEvent::Completed(response));
                    self.done = true;
                    self.frames = None;
                    Ok(())
                }
                Err(fail) => Err(self.t.fail_error(fail, true)),
            },
            Err(FrameError::Transport(m)) => Err(self
                .t
                .stream_error(format!("the connection broke mid-stream: {m}"))),
            Err(FrameError::Malformed(m)) => Err(self.t.stream_error(m)),
        }
    }

    /// One attempt: sends the request and checks the status.
    async fn connect(&mut self) -> Result<Frames, (ProviderError, Option<Duration>)> {
        self.attempt += 1;
        let start = Instant::now();
        self.attempt_deadline = self.t.timeouts.total.map(|d| start + d);
        self.first_byte_deadline = start + self.t.timeouts.first_byte;
        self.got_frame = false;
        self.decoder = D::default();
        tracing::debug!(
            provider = self.t.provider,
            url = %self.t.url(&self.path),
            attempt = self.attempt,
            bytes = self.body.len(),
            "sending request"
        );
        let first_byte = self.deadline(
            self.first_byte_deadline,
            format!(
                "no response within {} (first-byte timeout)",
                secs(self.t.timeouts.first_byte)
            ),
        );
        let send = self
            .t
            .request(reqwest::Method::POST, &self.path)
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send();
        let response = guarded(&self.cancel, first_byte.clone(), send)
            .await
            .map_err(|i| (self.interrupted(i), None))?
            .map_err(|e| (self.t.send_error(&e), None))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let wait = retry_after(response.headers());
            let body = guarded(
                &self.cancel,
                first_byte.clone(),
                read_body(response, ERROR_BODY_LIMIT),
            )
            .await
            .map_err(|i| (self.interrupted(i), None))?
            .unwrap_or_default();
            return Err((self.t.status_error(status, &body), wait));
        }
        let json_answer = self.framing == Framing::Sse
            && response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if json_answer {
            let body = guarded(
                &self.cancel,
                first_byte.clone(),
                read_body(response, ERROR_BODY_LIMIT),
            )
            .await
            .map_err(|i| (self.interrupted(i), None))?
            .unwrap_or_default();
            return Err((
                self.t.stream_error(format!(
                    "expected an event stream but the server answered with JSON: {}",
                    error_message(&body, |m| self.t.scrub(m))
                )),
                None,
            ));
        }
        Ok(Frames::new(response, self.framing))
    }

    /// Schedules a retry of a failed attempt, or gives up with `e`.
    fn retry_or_fail(
        &mut self,
        e: ProviderError,
        wait: Option<Duration>,
    ) -> Result<(), ProviderError> {
        self.frames = None;
        let policy = &self.t.retry;
        if self.produced || !e.is_retryable() || self.attempt > policy.max_retries {
            return Err(e);
        }
        let delay = match wait {
            Some(d) if d > policy.max_retry_after => return Err(e),
            Some(d) => d,
            None => policy.backoff(self.attempt),
        };
        let reason = self.t.scrub(&retry_reason(&e));
        tracing::warn!(
            provider = self.t.provider,
            attempt = self.attempt + 1,
            delay_ms = delay.as_millis() as u64,
            "retrying: {reason}"
        );
        self.queue.push_back(StreamEvent::Retry {
            attempt: self.attempt + 1,
            delay,
            reason,
        });
        self.pending_delay = Some(delay);
        Ok(())
    }
}
