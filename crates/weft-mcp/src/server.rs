//! One MCP server as a session uses it: started on demand, shared by the
//! session's turns, restarted after a crash or a timeout, stopped (with its
//! whole process group) at session cleanup or when dropped.
//!
//! Owns the rmcp client connection, the child process and the tail of its
//! stderr; knows nothing about tools as the kernel sees them (see
//! [`crate::tool`]). Every error is a sentence naming the server, with the
//! tail of its stderr when it has one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool as RemoteTool};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, Transport};

/// How many stderr lines are kept.
const STDERR_LINES: usize = 20;
/// The most stderr characters an error shows.
const STDERR_CHARS: usize = 2000;
/// How long a stopping server gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The last lines a server wrote to stderr.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == STDERR_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let joined = lines.iter().cloned().collect::<Vec<_>>().join("\n");
        let chars = joined.chars().count();
        if chars > STDERR_CHARS {
            joined.chars().skip(chars - STDERR_CHARS).collect()
        } else {
            joined
        }
    }
}

/// A running child: its process group is killed when this is dropped
/// (unless [`Connection::stop`] already did).
struct Child {
    pid: i32,
    /// Set once the group got its final SIGKILL.
    killed: std::sync::atomic::AtomicBool,
    /// Fires when the process has exited (and been reaped).
    exited: CancellationToken,
    /// Fires when stderr reached its end.
    stderr_done: CancellationToken,
}

impl Child {
    fn signal_group(&self, signal: i32) {
        if self.pid <= 0 {
            return;
        }
        // SAFETY: killpg only sends a signal; the group is the one the
        // child leads (it was spawned with process_group(0)).
        unsafe {
            libc::killpg(self.pid, signal);
        }
    }
}

impl Child {
    /// SIGKILL to the whole group, once: not again later, when the group
    /// id could belong to someone else.
    fn kill_group(&self) {
        if !self.killed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.signal_group(libc::SIGKILL);
        }
    }
}

impl Child {
    /// Waits (briefly) until stderr has ended, so the last lines of a
    /// crashed server are in the tail.
    async fn stderr_finished(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stderr_done.cancelled()).await;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// A live connection to a server.
struct Connection {
    service: RunningService<RoleClient, ()>,
    child: Option<Child>,
    tail: Tail,
}

impl Connection {
    /// Whether the child has exited (always false for HTTP).
    fn exited(&self) -> Option<&CancellationToken> {
        self.child.as_ref().map(|c| &c.exited)
    }

    /// Stops the connection: closes the transport, then SIGTERM and (after
    /// a grace period) SIGKILL to the child's process group.
    async fn stop(&self) {
        self.service.cancellation_token().cancel();
        if let Some(child) = &self.child {
            if tokio::time::timeout(STOP_GRACE, child.exited.cancelled())
                .await
                .is_err()
            {
                child.signal_group(libc::SIGTERM);
                let _ = tokio::time::timeout(STOP_GRACE, child.exited.cancelled()).await;
            }
            // Whatever the leader did, nothing of its group survives.
            child.kill_group();
        }
    }

    /// The stderr tail, once stderr has ended (briefly waited for, so the
    /// last lines of a crashed server are there).
    async fn final_tail(&self) -> String {
        if let Some(child) = &self.child {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), child.stderr_done.cancelled()).await;
        }
        self.tail.text()
    }
}

/// A configured server, connected on first use.
pub struct McpServer {
    name: String,
    config: ServerConfig,
    working_dir: PathBuf,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("name", &self.name)
            .field("target", &self.config.target())
            .finish_non_exhaustive()
    }
}

fn with_tail(message: String, tail: &str) -> String {
    if tail.trim().is_empty() {
        message
    } else {
        format!("{message}\n--- stderr (last lines) ---\n{tail}")
    }
}

impl McpServer {
    /// A server named `name` (not started).
    pub fn new(name: impl Into<String>, config: ServerConfig, working_dir: &Path) -> Self {
        Self {
            name: name.into(),
            config,
            working_dir: working_dir.to_path_buf(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The pid of its child process, while one runs (stdio servers).
    pub async fn pid(&self) -> Option<u32> {
        let conn = self.conn.lock().await;
        conn.as_ref()
            .and_then(|c| c.child.as_ref())
            .filter(|c| !c.exited.is_cancelled())
            .map(|c| c.pid as u32)
    }

    /// Connects (if not connected) and lists the server's tools.
    pub async fn list_tools(&self) -> Result<Vec<RemoteTool>, String> {
        let conn = self.connection().await?;
        let timeout = self.config.timeout();
        let listed = tokio::time::timeout(timeout, conn.service.list_all_tools()).await;
        match listed {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(e)) => Err(self
                .fail(&conn, format!("could not list its tools: {e}"))
                .await),
            Err(_) => Err(self
                .fail(
                    &conn,
                    format!("did not list its tools within {} s", timeout.as_secs()),
                )
                .await),
        }
    }

    /// Calls `tool` with `arguments`; `Err` is a sentence for the model.
    /// A transport failure, a crash or a timeout stops the server, which is
    /// started again by the next call. Cancelling (dropping the future)
    /// tells the server the request is cancelled.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Option<Map<String, Value>>,
    ) -> Result<CallToolResult, String> {
        let conn = self.connection().await?;
        let timeout = self.config.timeout();
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = arguments;
        let call = tokio::time::timeout(timeout, conn.service.call_tool(params));
        let outcome = match conn.exited() {
            Some(exited) => tokio::select! {
                r = call => r,
                _ = exited.cancelled() => Ok(Err(ServiceError::TransportClosed)),
            },
            None => call.await,
        };
        match outcome {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ServiceError::McpError(e))) => Err(format!(
                "MCP server {} refused the call to {tool}: {}",
                self.name, e.message
            )),
            Ok(Err(e)) => Err(self
                .fail(&conn, format!("failed while running {tool} ({e})"))
                .await),
            Err(_) => Err(self
                .fail(
                    &conn,
                    format!("did not answer {tool} within {} s", timeout.as_secs()),
                )
                .await),
        }
    }

    /// Stops the server if it runs (its whole process group).
    pub async fn stop(&self) {
        let conn = self.conn.lock().await.take();
        if let Some(conn) = conn {
            conn.stop().await;
        }
    }

    /// Forgets and stops a failed connection; the error names the server
    /// and carries its stderr tail.
    async fn fail(&self, conn: &Arc<Connection>, what: String) -> String {
        {
            let mut current = self.conn.lock().await;
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
                *current = None;
            }
        }
        let crashed = conn.exited().is_some_and(|e| e.is_cancelled());
        conn.stop().await;
        let tail = conn.final_tail().await;
        let state = if crashed {
            "it exited; it will be started again on the next call"
        } else {
            "it was stopped and will be started again on the next call"
        };
        with_tail(format!("MCP server {} {what}; {state}.", self.name), &tail)
    }

    async fn connection(&self) -> Result<Arc<Connection>, String> {
        let mut current = self.conn.lock().await;
        if let Some(conn) = current.as_ref() {
            let dead = conn.exited().is_some_and(|e| e.is_cancelled()) || conn.service.is_closed();
            if !dead {
                return Ok(conn.clone());
            }
            let old = current.take();
            if let Some(old) = old {
                old.stop().await;
            }
        }
        let conn = Arc::new(self.connect().await?);
        *current = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<Connection, String> {
        let transport = self
            .config
            .transport(&self.name, &self.working_dir, |k| std::env::var(k).ok())
            .map_err(|e| e.to_string())?;
        match transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => self.connect_stdio(&command, &args, &env, &cwd).await,
            Transport::Http { url, headers } => self.connect_http(&url, &headers).await,
        }
    }

    async fn connect_stdio(
        &self,
        command: &str,
        args: &[String],
        env: &std::collections::BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<Connection, String> {
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(args)
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "MCP server {} cannot start: running {command:?} in {} failed: {e}; check `command` and `cwd`.",
                self.name,
                cwd.display()
            )
        })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(format!(
                "MCP server {} cannot start: its pipes are missing.",
                self.name
            ));
        };
        let tail = Tail::default();
        let stderr_done = CancellationToken::new();
        {
            let tail = tail.clone();
            let done = stderr_done.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tail.push(line);
                }
                done.cancel();
            });
        }
        let exited = CancellationToken::new();
        {
            let exited = exited.clone();
            tokio::spawn(async move {
                let _ = child.wait().await;
                exited.cancel();
            });
        }
        let guard = Child {
            pid,
            killed: std::sync::atomic::AtomicBool::new(false),
            exited,
            stderr_done,
        };
        let timeout = self.config.timeout();
        let started = tokio::select! {
            r = tokio::time::timeout(timeout, ().serve((stdout, stdin))) => r,
            _ = guard.exited.cancelled() => {
                return Err(self.failed_start(guard, &tail, "exited while starting".into()).await);
            }
        };
        match started {
            Ok(Ok(service)) => Ok(Connection {
                service,
                child: Some(guard),
                tail,
            }),
            Ok(Err(e)) => Err(self
                .failed_start(guard, &tail, format!("did not start: {e}"))
                .await),
            Err(_) => Err(self
                .failed_start(
                    guard,
                    &tail,
                    format!("did not finish starting within {} s", timeout.as_secs()),
                )
                .await),
        }
    }

    /// Kills a child that failed to start; the error with its stderr tail.
    async fn failed_start(&self, child: Child, tail: &Tail, what: String) -> String {
        child.kill_group();
        child.stderr_finished().await;
        with_tail(format!("MCP server {} {what}.", self.name), &tail.text())
    }

    async fn connect_http(
        &self,
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Result<Connection, String> {
        use reqwest::header::{HeaderName, HeaderValue};
        let mut map = std::collections::HashMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                format!(
                    "MCP server {}: {k:?} is not a valid header name.",
                    self.name
                )
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                format!(
                    "MCP server {}: the value of header {k:?} is not valid.",
                    self.name
                )
            })?;
            map.insert(name, value);
        }
        // Installing fails harmlessly when a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                format!(
                    "MCP server {}: cannot build the HTTP client: {e}",
                    self.name
                )
            })?;
        let config =
            StreamableHttpClientTransportConfig::with_uri(url.to_string()).custom_headers(map);
        let transport = StreamableHttpClientTransport::with_client(client, config);
        let timeout = self.config.timeout();
        match tokio::time::timeout(timeout, ().serve(transport)).await {
            Ok(Ok(service)) => Ok(Connection {
                service,
                child: None,
                tail: Tail::default(),
            }),
            Ok(Err(e)) => Err(format!(
                "MCP server {} at {url} did not start: {e}.",
                self.name
            )),
            Err(_) => Err(format!(
                "MCP server {} at {url} did not answer within {} s.",
                self.name,
                timeout.as_secs()
            )),
        }
    }
}
