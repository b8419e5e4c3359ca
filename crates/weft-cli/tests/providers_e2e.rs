//! The real `weft` binary against local servers speaking the vendors' wire
//! formats: `--provider openai --base-url` on a compatible server, and an
//! Anthropic run whose API key must never reach a file under `$WEFT_HOME`
//! or the log output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// The requests a test server saw: `(header block, body)`, in order.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves every request with `body` as an SSE stream and keeps the
/// requests' header blocks and bodies.
fn serve_sse(body: &'static str) -> (String, Seen) {
    serve(move |_| {
        (
            "200 OK".to_string(),
            "text/event-stream".to_string(),
            body.to_string(),
        )
    })
}

/// Serves every request with what `respond` makes of its header block
/// (`(status line, content type, body)`) and keeps the requests' header
/// blocks and bodies.
fn serve(respond: impl Fn(&str) -> (String, String, String) + Send + 'static) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut request_body = vec![0; length];
            let _ = reader.read_exact(&mut request_body);
            let (status, content_type, body) = respond(&head);
            s.lock()
                .unwrap()
                .push((head, String::from_utf8_lossy(&request_body).into_owned()));
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.flush();
        }
    });
    (addr, seen)
}

fn weft(home: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(args)
        .current_dir(home)
        .env("WEFT_HOME", home)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"local-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"local-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" from a compatible server\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"local-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":5,\"total_tokens\":14}}\n\n",
    "data: [DONE]\n\n",
);

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-test\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\":\"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi from \"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Claude\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

#[test]
fn openai_provider_with_a_base_url_talks_to_a_compatible_server() {
    let home = tempfile::tempdir().unwrap();
    let (addr, seen) = serve_sse(OPENAI_STREAM);
    let out = weft(
        home.path(),
        &[("OPENAI_API_KEY", "sk-local")],
        &[
            "run",
            "--provider",
            "openai",
            "--base-url",
            &format!("{addr}/v1"),
            "--model",
            "local-model",
            "--output",
            "json",
            "say hello",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answer"], "Hello from a compatible server");
    assert_eq!(v["usage"]["input_tokens"], 9);
    let requests = seen.lock().unwrap();
    let (head, body) = &requests[0];
    assert!(head.starts_with("POST /v1/chat/completions"), "{head}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["model"], "local-model");
    assert_eq!(body["stream"], true);
    assert!(
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "user" && m["content"] == "say hello")
    );
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && String::from_utf8_lossy(&bytes).contains(needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[test]
fn the_api_key_never_reaches_a_file_or_the_log() {
    let home = tempfile::tempdir().unwrap();
    let (addr, seen) = serve_sse(ANTHROPIC_STREAM);
    let out = weft(
        home.path(),
        &[
            ("ANTHROPIC_API_KEY", "sk-test-SECRET"),
            ("WEFT_LOG", "trace"),
        ],
        &[
            "-vv",
            "run",
            "--provider",
            "anthropic",
            "--base-url",
            &addr,
            "hello",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hi from Claude\n");
    // The key was used...
    let requests = seen.lock().unwrap();
    assert!(
        requests[0]
            .0
            .to_ascii_lowercase()
            .contains("x-api-key: sk-test-secret")
    );
    // ...and is nowhere else.
    assert!(!stderr.contains("SECRET"), "the log shows the key");
    let leaks = files_containing(home.path(), "SECRET");
    assert!(leaks.is_empty(), "the key reached {leaks:?}");
    assert!(
        !files_containing(home.path(), "Hi from Claude").is_empty(),
        "the session was stored"
    );
}

/// Issue 9 S5: a provider echoes the key where its error message is cut;
/// no 8-character piece of the key may reach a file or the log.
#[test]
fn a_key_echoed_at_the_message_limit_reaches_no_file() {
    const KEY: &str = "sk-test-SECRETXYZ-0123456789abcdefghij";
    let home = tempfile::tempdir().unwrap();
    let (addr, _seen) = serve(|head| {
        let key = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("x-api-key:")
                    .then(|| l[10..].trim().to_string())
            })
            .unwrap_or_default();
        let message = format!("{} key={key} end", "x".repeat(565));
        let body = serde_json::json!({"error": {"message": message}}).to_string();
        ("400 Bad Request".into(), "application/json".into(), body)
    });
    let out = weft(
        home.path(),
        &[("ANTHROPIC_API_KEY", KEY)],
        &[
            "run",
            "--provider",
            "anthropic",
            "--base-url",
            &addr,
            "--model",
            "m",
            "hi",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run should fail: {stderr}");
    assert!(
        stderr.contains("xxxx"),
        "the provider's message is shown: {stderr}"
    );
    for start in 0..=KEY.len() - 8 {
        let piece = &KEY[start..start + 8];
        assert!(!stderr.contains(piece), "stderr shows {piece:?}: {stderr}");
        let leaks = files_containing(home.path(), piece);
        assert!(leaks.is_empty(), "{piece:?} reached {leaks:?}");
    }
}
