//! A whole session through the kernel: a scripted provider asks for
//! `read_file`, the kernel runs it, and the provider answers with what the
//! tool returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use weft_core::memory::MemoryStore;
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::provider::{
    ChatRequest, ChatResponse, ModelInfo, Provider, ProviderError, ProviderInfo, ProviderStream,
    StopReason, StreamEvent,
};
use weft_core::runtime::{Session, SessionConfig};
use weft_core::session::Project;
use weft_core::{ContentBlock, Role, Usage};

use crate::common::*;

/// Asks for `read_file notes.txt` first, then answers with the tool result
/// it was sent.
#[derive(Default)]
struct TwoStep {
    requests: AtomicUsize,
}

fn respond(content: Vec<ContentBlock>, stop_reason: StopReason) -> ProviderStream {
    let response = ChatResponse {
        content,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        },
        stop_reason,
        model: Some("two-step".into()),
    };
    futures::stream::iter(vec![Ok(StreamEvent::Completed(response))]).boxed()
}

#[async_trait]
impl Provider for TwoStep {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "two-step".into(),
            default_model: "two-step".into(),
            context_window: 100_000,
            max_output_tokens: 1_000,
            supports_tools: true,
            supports_thinking: false,
        }
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(Vec::new())
    }

    async fn stream(
        &self,
        request: ChatRequest,
        _cancel: CancellationToken,
    ) -> Result<ProviderStream, ProviderError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let result = request.messages.iter().rev().find_map(|m| {
            m.content.iter().find_map(|b| match b {
                ContentBlock::ToolResult {
                    output, is_error, ..
                } => Some((output.clone(), *is_error)),
                _ => None,
            })
        });
        Ok(match result {
            None => {
                assert!(
                    request.tools.iter().any(|t| t.name == "read_file"),
                    "read_file is offered"
                );
                respond(
                    vec![ContentBlock::ToolCall {
                        id: "call-read".into(),
                        name: "read_file".into(),
                        arguments: json!({"path": "notes.txt"}),
                    }],
                    StopReason::ToolUse,
                )
            }
            Some((output, is_error)) => respond(
                vec![ContentBlock::text(format!(
                    "The file says (error: {is_error}):\n{output}"
                ))],
                StopReason::EndTurn,
            ),
        })
    }
}

#[tokio::test]
async fn read_file_result_reaches_the_answer_through_the_kernel() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("notes.txt"), "remember the milk\n")?;

    let provider = Arc::new(TwoStep::default());
    let mut registry = registry();
    let p = provider.clone();
    registry.register_provider("provider-two-step", move |_spec, _env| {
        Ok(p.clone() as Arc<dyn Provider>)
    });
    let plan = MountPlan::parse(
        r#"
session: { orchestrator: loop-basic, context: context-simple }
providers: [ provider-two-step ]
tools: [ tool-filesystem, tool-search ]
"#,
        PlanFormat::Yaml,
    )?
    .plan;
    let mut config = SessionConfig::new(plan, Arc::new(MemoryStore::new()), Arc::new(registry));
    config.project = Project::from_dir(dir.path());
    let session = Session::new(config);
    session.initialize().await?;
    assert!(
        session.mount_warnings().is_empty(),
        "{:?}",
        session.mount_warnings()
    );
    assert_eq!(
        session.tool_names(),
        vec!["edit_file", "glob", "grep", "read_file", "write_file"]
    );

    let answer = session.execute("what is in notes.txt?").await?;
    assert_eq!(
        answer,
        "The file says (error: false):\n     1\tremember the milk\n"
    );
    assert_eq!(provider.requests.load(Ordering::SeqCst), 2);

    // The transcript holds prompt, tool call, tool result and answer.
    let view = session.view().await?;
    let messages = view.messages("main");
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert!(messages[2].content.iter().any(|b| matches!(
        b,
        ContentBlock::ToolResult { call_id, output, is_error: false }
            if call_id == "call-read" && output.contains("remember the milk")
    )));
    session.cleanup().await?;
    Ok(())
}
