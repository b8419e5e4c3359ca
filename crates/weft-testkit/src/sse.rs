//! A reader of `text/event-stream` responses: [`SseClient`] reads a
//! response body chunk by chunk and yields [`SseEvent`]s, parsed as the
//! WHATWG event-stream format says (lines end in LF, CRLF or CR; one space
//! after the colon is dropped; `data` lines join with LF; comments and
//! blocks without data dispatch nothing). Bytes are kept until a line is
//! complete, so a chunk boundary inside a UTF-8 character or a CRLF is
//! harmless. It knows nothing of which events the daemon sends.

use std::time::Duration;

use serde_json::Value;

/// How long [`SseClient::next`] waits for an event before panicking.
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event` field, `message` when the block has none.
    pub event: String,
    /// The block's own `id` field as a number (`None` when the block has
    /// no `id` or it is not a number); not carried over from earlier
    /// events, so a test sees which events the daemon numbered.
    pub id: Option<u64>,
    /// The `data` lines joined with LF, as JSON, or as a string when they
    /// are not JSON.
    pub data: Value,
}

/// Reads the events of one SSE response.
pub struct SseClient {
    response: reqwest::Response,
    parser: Parser,
}

impl SseClient {
    /// Reads the events of `response` (whose status the caller checked).
    pub fn from_response(response: reqwest::Response) -> Self {
        Self {
            response,
            parser: Parser::default(),
        }
    }

    /// The next event, or `None` when the stream ends; panics when none
    /// comes within 20 s.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(EVENT_WAIT, self.next_inner())
            .await
            .expect("an SSE event within 20 s")
    }

    async fn next_inner(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(event);
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.parser.push(&bytes),
                _ => return None,
            }
        }
    }

    /// Events up to and including the first that matches `pred`; panics
    /// if the stream ends first.
    pub async fn until(&mut self, pred: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(event) = self.next().await {
            let stop = pred(&event);
            out.push(event);
            if stop {
                return out;
            }
        }
        panic!("the stream ended before the expected event; got {out:?}");
    }

    /// How many comment lines (`:` keep-alives) have been read so far.
    pub fn comments(&self) -> usize {
        self.parser.comments
    }
}

/// The event-stream parser: bytes in, events out.
#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: Vec<String>,
    comments: usize,
}

impl Parser {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event in the bytes pushed so far.
    fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(line) = self.take_line() {
            if line.is_empty() {
                if let Some(event) = self.dispatch() {
                    return Some(event);
                }
            } else {
                self.field(&line);
            }
        }
        None
    }

    /// The next complete line, without its ending. A CR at the very end
    /// of the buffer waits: the LF of a CRLF may be in the next chunk.
    fn take_line(&mut self) -> Option<String> {
        let pos = self.buf.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let end = match (self.buf[pos], self.buf.get(pos + 1)) {
            (b'\r', None) => return None,
            (b'\r', Some(b'\n')) => pos + 2,
            _ => pos + 1,
        };
        let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
        self.buf.drain(..end);
        Some(line)
    }

    fn field(&mut self, line: &str) {
        if line.starts_with(':') {
            self.comments += 1;
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "event" => self.event = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
    }

    /// Ends the block: an event if it had data; the fields reset either way.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let id = self.id.take();
        let data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        let text = data.join("\n");
        Some(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            id: id.and_then(|i| i.parse().ok()),
            data: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(chunks: &[&[u8]]) -> (Vec<SseEvent>, usize) {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            p.push(chunk);
            while let Some(e) = p.next_event() {
                out.push(e);
            }
        }
        (out, p.comments)
    }

    #[test]
    fn reads_event_id_and_json_data() {
        let (events, _) = parse(&[b"id: 7\nevent: done\ndata: {\"a\": 1}\n\n"]);
        assert_eq!(
            events,
            vec![SseEvent {
                event: "done".into(),
                id: Some(7),
                data: json!({"a": 1}),
            }]
        );
    }

    #[test]
    fn joins_data_lines_and_keeps_non_json_as_text() {
        let (events, _) = parse(&[b"data: one\ndata:  two\ndata\n\n"]);
        assert_eq!(events[0].data, json!("one\n two\n"));
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].id, None);
    }

    #[test]
    fn comments_and_blocks_without_data_dispatch_nothing() {
        let (events, comments) = parse(&[b": keep-alive\n\nid: 3\nevent: x\n\ndata: 1\n\n"]);
        assert_eq!(comments, 1);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].id, None,
            "the id of a dataless block is not carried over"
        );
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, json!(1));
    }

    #[test]
    fn accepts_crlf_and_cr_line_endings() {
        let (events, _) = parse(&[b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r\n"]);
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn chunk_boundaries_split_nothing() {
        let text = "id: 1\r\ndata: \"héllo\"\r\n\r\n".as_bytes();
        let accent = text.iter().position(|&b| b == 0xc3).expect("é");
        let crlf = text.len() - 1;
        let (events, _) = parse(&[&text[..accent + 1], &text[accent + 1..crlf], &text[crlf..]]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, json!("héllo"));
        // A CR at a chunk's end is held until the next byte shows whether
        // it is a CRLF: its LF must not read as an empty line.
        let (events, _) = parse(&[b"data: 1\r", b"\ndata: 2\n\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, json!("1\n2"));
    }
}
