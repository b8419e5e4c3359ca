//! The bench's HTTP client: a minimal keep-alive HTTP/1.1 connection on
//! tokio's `TcpStream` (so the figures measure the server, not a client
//! library) and a server-sent events reader on top of it.
//!
//! It knows HTTP/1.1 framing (content length, chunked bodies) and the SSE
//! wire format; nothing of weft's API.

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`.
    pub(crate) async fn open(port: u16) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::new(stream),
        })
    }

    /// Sends a request (without waiting for the answer).
    async fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<()> {
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.io.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        Ok(())
    }

    /// Status and headers (lower-cased names).
    async fn head(&mut self) -> anyhow::Result<(u16, Vec<(String, String)>)> {
        let mut status_line = String::new();
        if self.io.read_line(&mut status_line).await? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            self.io.read_line(&mut l).await?;
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Ok((status, headers))
    }

    /// Sends a request and reads the whole answer: status and body.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.send(method, path, body).await?;
        let (status, headers) = self.head().await?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut out = Vec::new();
        if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            out.resize(len, 0);
            self.io.read_exact(&mut out).await?;
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                self.io.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
                let mut chunk = vec![0; n + 2];
                self.io.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        }
        Ok((status, out))
    }

    /// [`Conn::request`] with JSON bodies (a body that is not JSON reads
    /// as null).
    pub(crate) async fn json(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let text = body.map(|b| b.to_string());
        let (status, bytes) = self.request(method, path, text.as_deref()).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, value))
    }
}

/// One server-sent event.
pub(crate) struct SseEvent {
    /// `id:` (records: their seq).
    pub(crate) id: Option<String>,
    /// `event:`.
    pub(crate) event: String,
    /// `data:` (lines joined by `\n`).
    pub(crate) data: String,
}

/// An open SSE stream: the response body of a `GET …/stream`, read event by
/// event (chunked transfer encoding or a body that ends with the
/// connection).
pub(crate) struct SseStream {
    conn: Conn,
    chunked: bool,
    buf: Vec<u8>,
}

impl SseStream {
    /// Opens `path` on `port` and waits for the `connected` event (returned
    /// too: its data carries `lastSeq`).
    pub(crate) async fn open(port: u16, path: &str) -> anyhow::Result<(Self, SseEvent)> {
        let mut conn = Conn::open(port).await?;
        conn.send("GET", path, None).await?;
        let (status, headers) = conn.head().await?;
        if status != 200 {
            bail!("the stream {path} answered {status}");
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let mut stream = Self {
            conn,
            chunked,
            buf: Vec::new(),
        };
        loop {
            match stream.next().await? {
                Some(e) if e.event == "connected" => return Ok((stream, e)),
                Some(_) => {}
                None => bail!("the stream {path} closed before `connected`"),
            }
        }
    }

    /// The next event (comments such as keep-alives skipped); None when
    /// the stream ends.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for l in text.lines() {
                    let (field, value) = match l.split_once(':') {
                        Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                        None => (l, ""),
                    };
                    match field {
                        "id" => event.id = Some(value.to_string()),
                        "event" => event.event = value.to_string(),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        _ => continue,
                    }
                    any = true;
                }
                if any {
                    return Ok(Some(event));
                }
            }
            if !self.read_more().await? {
                return Ok(None);
            }
        }
    }

    /// Appends the next piece of the body to the buffer; false at its end.
    async fn read_more(&mut self) -> anyhow::Result<bool> {
        let io = &mut self.conn.io;
        if !self.chunked {
            let mut piece = [0u8; 8192];
            let n = io.read(&mut piece).await?;
            self.buf.extend_from_slice(&piece[..n]);
            return Ok(n > 0);
        }
        let mut size = String::new();
        if io.read_line(&mut size).await? == 0 {
            return Ok(false);
        }
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        let mut chunk = vec![0; n + 2];
        io.read_exact(&mut chunk).await?;
        // SSE lines may end in CRLF too: the parser splits on `\n\n`.
        self.buf
            .extend(chunk[..n].iter().copied().filter(|&b| b != b'\r'));
        Ok(n > 0)
    }
}
