//! Tests of multi-turn delegation ([`super::delegate`]) through a probe
//! tool that calls the session's [`Delegate`] as the `task` tool does, with
//! one [`FakeProvider`] answering parent and children in turn.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::feed::CHILD_SESSION_FIELD;
use crate::id::SessionId;
use crate::message::{META_TOOL_DATA, Role};
use crate::mount::AgentSpec;
use crate::runtime::Session;
use crate::session::{META_AGENT_CONFIG, META_AGENT_OVERLAY, SessionMeta};
use crate::store::{ListFilter, ListQuery, Store};
use crate::testing::{FakeProvider, Reply, config_with, messages, roles, session_from, within};
use crate::tool::{DelegateRequest, Tool, ToolContext, ToolOutput};

/// `delegate`: runs `{agent, instruction, session_id?}` through the
/// session's delegate; the output is the outcome as JSON.
struct Probe;

#[async_trait]
impl Tool for Probe {
    fn name(&self) -> &str {
        "delegate"
    }

    fn description(&self) -> &str {
        "delegates"
    }

    fn input_schema(&self) -> Value {
        json!({"type": "object"})
    }

    async fn execute(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let Some(delegate) = ctx.delegate.clone() else {
            return ToolOutput::error("no delegate");
        };
        let request = DelegateRequest {
            agent: input["agent"].as_str().unwrap_or_default().to_string(),
            instruction: input["instruction"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            session_id: input["session_id"]
                .as_str()
                .and_then(|s| SessionId::parse(s).ok()),
        };
        match delegate.delegate(request, ctx.cancel.clone()).await {
            Ok(outcome) => {
                let data = serde_json::to_value(&outcome).unwrap_or(Value::Null);
                ToolOutput::ok(data.to_string()).with_data(data)
            }
            Err(e) => ToolOutput::error(e),
        }
    }
}

/// A session with agents `helper` and `other` (in `store`, else a fresh
/// memory store).
async fn parent(provider: &FakeProvider, store: Option<Arc<dyn Store>>) -> Session {
    let mut config = config_with(provider, vec![Arc::new(Probe)]);
    if let Some(store) = store {
        config.store = store;
    }
    for name in ["helper", "other"] {
        config.plan.agents.insert(
            name.into(),
            AgentSpec {
                description: format!("the {name}"),
                system: None,
                providers: Vec::new(),
                tools: None,
            },
        );
    }
    session_from(config).await.expect("the parent starts")
}

async fn children(session: &Session) -> Vec<SessionMeta> {
    session
        .store()
        .list(&ListQuery {
            filter: ListFilter {
                parent_id: Some(session.id().clone()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("listing works")
        .sessions
}

/// One turn of `session` delegating `input`: the probe's call, the
/// child's answer, the parent's answer. Returns the probe's result text.
async fn delegate_turn(
    session: &Session,
    provider: &FakeProvider,
    input: Value,
    child_answer: Option<&str>,
) -> (String, bool) {
    provider.push(Reply::tool_call("delegate", input));
    if let Some(answer) = child_answer {
        provider.push(Reply::text(answer));
    }
    provider.push(Reply::text("parent done"));
    assert_eq!(
        session.execute("go").await.expect("the turn runs"),
        "parent done"
    );
    let all = messages(session, None).await.expect("messages");
    let last_tool = all
        .iter()
        .rev()
        .find(|m| m.role == Role::Tool)
        .expect("a tool result");
    let (_, output, is_error) = crate::testing::tool_results(std::slice::from_ref(last_tool))
        .pop()
        .expect("one result");
    if !is_error {
        assert_eq!(
            last_tool.metadata.get(META_TOOL_DATA).map(Value::to_string),
            Some(output.clone()),
            "the structured result is recorded on the tool message"
        );
    }
    (output, is_error)
}

#[tokio::test]
async fn a_session_id_continues_the_same_child() {
    let provider = FakeProvider::new();
    let session = parent(&provider, None).await;
    let mut feed = session
        .feed()
        .expect("mounted")
        .subscribe(None)
        .await
        .expect("subscribes");

    let (first, is_error) = delegate_turn(
        &session,
        &provider,
        json!({"agent": "helper", "instruction": "look around"}),
        Some("found it"),
    )
    .await;
    assert!(!is_error, "{first}");
    let first: Value = serde_json::from_str(&first).expect("json");
    assert_eq!(first["agent"], "helper");
    assert_eq!(first["response"], "found it");
    assert_eq!(first["status"], "completed");
    let child_id = first["session_id"].as_str().expect("an id").to_string();

    // The child's events reached the parent's feed, tagged with its id.
    let tagged = within(async {
        loop {
            let item = feed.recv().await.expect("the feed runs");
            if let Some(e) = item.as_event()
                && e.child_session() == Some(child_id.as_str())
            {
                return e.clone();
            }
        }
    })
    .await;
    assert_eq!(tagged.data["session_id"], child_id.as_str());
    assert_eq!(tagged.data[CHILD_SESSION_FIELD], child_id.as_str());

    let (second, is_error) = delegate_turn(
        &session,
        &provider,
        json!({"agent": "helper", "instruction": "look closer", "session_id": child_id}),
        Some("found more"),
    )
    .await;
    assert!(!is_error, "{second}");
    let second: Value = serde_json::from_str(&second).expect("json");
    assert_eq!(second["session_id"], child_id.as_str());
    assert_eq!(second["response"], "found more");

    // One child, holding both exchanges.
    let kids = children(&session).await;
    assert_eq!(kids.len(), 1, "{kids:?}");
    let child = &kids[0];
    assert_eq!(child.id.as_str(), child_id);
    assert_eq!(child.agent_name.as_deref(), Some("helper"));
    assert_eq!(child.turn_count, 2);
    assert!(child.metadata[META_AGENT_CONFIG].is_object());
    assert_eq!(
        child.metadata[META_AGENT_OVERLAY]["description"],
        "the helper"
    );
    let view = session.store().view(&child.id).await.expect("view");
    let transcript: Vec<(Role, String)> = view
        .default_branch()
        .expect("a branch")
        .messages
        .iter()
        .map(|m| (m.message.role, m.message.text_content()))
        .collect();
    assert_eq!(
        transcript,
        vec![
            (Role::User, "look around".to_string()),
            (Role::Assistant, "found it".to_string()),
            (Role::User, "look closer".to_string()),
            (Role::Assistant, "found more".to_string()),
        ]
    );
    let parent_roles = roles(&messages(&session, None).await.expect("messages"));
    assert_eq!(parent_roles.len(), 8);
}

#[tokio::test]
async fn foreign_and_mismatched_session_ids_are_tool_errors() {
    let provider = FakeProvider::new();
    let session = parent(&provider, None).await;
    let (first, _) = delegate_turn(
        &session,
        &provider,
        json!({"agent": "helper", "instruction": "look"}),
        Some("found"),
    )
    .await;
    let first: Value = serde_json::from_str(&first).expect("json");
    let child_id = first["session_id"].as_str().expect("an id").to_string();

    // Another session's child.
    let stranger = parent(&provider, Some(session.store().clone())).await;
    let (theirs, _) = delegate_turn(
        &stranger,
        &provider,
        json!({"agent": "helper", "instruction": "look"}),
        Some("found"),
    )
    .await;
    let theirs: Value = serde_json::from_str(&theirs).expect("json");

    for (input, wanted) in [
        (
            json!({"agent": "helper", "instruction": "x", "session_id": theirs["session_id"]}),
            "is not a sub-agent session of this session",
        ),
        (
            json!({"agent": "helper", "instruction": "x", "session_id": stranger.id()}),
            "is not a sub-agent session of this session",
        ),
        (
            json!({"agent": "helper", "instruction": "x", "session_id": "no-such-session"}),
            "there is no session no-such-session to continue",
        ),
        (
            json!({"agent": "other", "instruction": "x", "session_id": child_id}),
            "is a conversation with agent \"helper\", not \"other\"",
        ),
    ] {
        let (err, is_error) = delegate_turn(&session, &provider, input.clone(), None).await;
        assert!(is_error, "{input}: {err}");
        assert!(err.contains(wanted), "{input}: {err}");
    }
    // Nothing was added to either tree.
    assert_eq!(children(&session).await.len(), 1);
    assert_eq!(children(&stranger).await.len(), 1);
    let child = session
        .store()
        .get(&SessionId::parse(&child_id).expect("id"))
        .await
        .expect("child");
    assert_eq!(child.turn_count, 1);
}
