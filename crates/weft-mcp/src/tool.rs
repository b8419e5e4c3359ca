//! One MCP server tool as a kernel [`Tool`]: `mcp__<server>__<tool>`.
//!
//! Owns the approval step (like `bash`: fail-closed, skipped for a server
//! with `trust: true`) and mapping the server's result to a
//! [`ToolOutput`]; the connection itself is [`McpServer`]'s.
//!
//! Result mapping: text blocks are joined by newlines; an image or audio
//! block becomes a line `[image: MIME, N bytes of base64 not shown]` (the
//! kernel's tool results are text); an embedded resource gives its text
//! (or `[resource: URI]`); a resource link `[resource link: URI]`;
//! `structuredContent` is added as JSON text unless a text block already
//! holds the same JSON; `isError: true` makes a failed output.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use weft_core::tool::{Tool, ToolContext, ToolOutput};

use crate::server::McpServer;

/// The most characters of a result returned to the model.
pub const MAX_OUTPUT_CHARS: usize = 100_000;

/// A tool of an MCP server, as offered to the model.
pub struct McpTool {
    server: Arc<McpServer>,
    remote: String,
    name: String,
    description: String,
    schema: Value,
    approval_timeout: Duration,
    /// Argument sets answered `allow_always` in this session.
    always: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool")
            .field("name", &self.name)
            .field("server", &self.server.name())
            .finish_non_exhaustive()
    }
}

impl McpTool {
    /// The tool `remote` of `server`, offered as `name`.
    pub fn new(
        server: Arc<McpServer>,
        remote: String,
        name: String,
        description: Option<String>,
        schema: Value,
        approval_timeout: Duration,
    ) -> Self {
        let description = description
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| format!("The tool {remote} of the MCP server {}.", server.name()));
        let schema = if schema.is_object() {
            schema
        } else {
            json!({"type": "object"})
        };
        Self {
            server,
            remote,
            name,
            description,
            schema,
            approval_timeout,
            always: Mutex::new(HashSet::new()),
        }
    }

    /// The tool's name on its server.
    pub fn remote_name(&self) -> &str {
        &self.remote
    }

    async fn approve(&self, arguments: &Value, ctx: &ToolContext) -> Result<(), String> {
        if self.server.config().trust {
            return Ok(());
        }
        let key = arguments.to_string();
        if self
            .always
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let event = json!({
            "tool_name": self.name,
            "call_id": ctx.call_id,
            "branch": ctx.branch,
            "mcp_server": self.server.name(),
            "mcp_tool": self.remote,
            "arguments": arguments,
        });
        let pretty = serde_json::to_string_pretty(arguments).unwrap_or_else(|_| key.clone());
        let prompt = format!(
            "Call the tool {} of the MCP server {} with these arguments?\n\n    {}",
            self.remote,
            self.server.name(),
            pretty.replace('\n', "\n    ")
        );
        let always = ctx
            .ask_approval(&self.name, prompt, event, self.approval_timeout)
            .await?;
        if always {
            self.always
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key);
        }
        Ok(())
    }
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_schema(&self) -> Value {
        self.schema.clone()
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let arguments = match input {
            Value::Null => None,
            Value::Object(map) => Some(map),
            other => {
                return ToolOutput::error(format!(
                    "the arguments of {} must be a JSON object, not {other}",
                    self.name
                ));
            }
        };
        let shown = arguments.clone().map(Value::Object).unwrap_or(json!({}));
        if let Err(reason) = self.approve(&shown, ctx).await {
            return ToolOutput::error(format!("the tool {} was not called: {reason}", self.name));
        }
        let result = tokio::select! {
            r = self.server.call(&self.remote, arguments) => r,
            _ = ctx.cancel.cancelled() => {
                return ToolOutput::error(format!("the call to {} was cancelled", self.name));
            }
        };
        match result {
            Ok(result) => map_result(
                &serde_json::to_value(&result).unwrap_or(Value::Null),
                self.server.name(),
                &self.remote,
            ),
            Err(message) => ToolOutput::error(message),
        }
    }
}

/// Maps a `CallToolResult` (as JSON) to a tool output.
pub fn map_result(result: &Value, server: &str, tool: &str) -> ToolOutput {
    let mut parts: Vec<String> = Vec::new();
    let mut texts: Vec<&str> = Vec::new();
    for block in result["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => {
                let text = block["text"].as_str().unwrap_or_default();
                texts.push(text);
                parts.push(text.to_string());
            }
            Some(kind @ ("image" | "audio")) => parts.push(format!(
                "[{kind}: {}, {} bytes of base64 not shown]",
                block["mimeType"].as_str().unwrap_or("unknown type"),
                block["data"].as_str().map_or(0, str::len)
            )),
            Some("resource") => {
                let resource = &block["resource"];
                parts.push(match resource["text"].as_str() {
                    Some(text) => text.to_string(),
                    None => format!("[resource: {}]", resource["uri"].as_str().unwrap_or("?")),
                });
            }
            Some("resource_link") => parts.push(format!(
                "[resource link: {}]",
                block["uri"].as_str().unwrap_or("?")
            )),
            _ => parts.push(block.to_string()),
        }
    }
    if let Some(structured) = result.get("structuredContent") {
        let already = texts
            .iter()
            .any(|t| serde_json::from_str::<Value>(t).is_ok_and(|v| &v == structured));
        if !already {
            parts.push(structured.to_string());
        }
    }
    let text = cap(parts.join("\n"));
    if result["isError"].as_bool() == Some(true) {
        let detail = if text.is_empty() {
            "no details".to_string()
        } else {
            text
        };
        return ToolOutput::error(format!(
            "the tool {tool} of MCP server {server} reported an error: {detail}"
        ));
    }
    ToolOutput::ok(text)
}

fn cap(text: String) -> String {
    if text.chars().count() <= MAX_OUTPUT_CHARS {
        return text;
    }
    let head: String = text.chars().take(MAX_OUTPUT_CHARS).collect();
    format!("{head}\n[output cut at {MAX_OUTPUT_CHARS} characters]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_mapped() {
        let out = map_result(
            &json!({"content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "data": "aGk=", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "file:///a", "text": "body"}},
                {"type": "resource_link", "uri": "file:///b", "name": "b"}
            ], "structuredContent": {"n": 1}}),
            "s",
            "t",
        );
        assert!(out.success);
        assert_eq!(
            out.output,
            "hello\n[image: image/png, 4 bytes of base64 not shown]\nbody\n[resource link: file:///b]\n{\"n\":1}"
        );
        let same = map_result(
            &json!({"content": [{"type": "text", "text": "{\"n\": 1}"}], "structuredContent": {"n": 1}}),
            "s",
            "t",
        );
        assert_eq!(
            same.output, "{\"n\": 1}",
            "structured content is not repeated"
        );
        let failed = map_result(
            &json!({"content": [{"type": "text", "text": "bad input"}], "isError": true}),
            "files",
            "read",
        );
        assert!(!failed.success);
        assert_eq!(
            failed.text_for_model(),
            "the tool read of MCP server files reported an error: bad input"
        );
    }
}
