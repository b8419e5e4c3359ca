//! Context managers: what the model is shown of a branch's history.
//!
//! The [`ContextManager`] keeps a branch's full history and hands the
//! orchestrator a view that fits the model's token budget.
//! [`SimpleContext`] (`context-simple`) compacts only when the estimate
//! exceeds 92% of the budget: first it truncates old tool results, then it
//! drops the oldest messages, never separating a tool call from its results
//! and always keeping system messages, the first and the last user prompt and
//! the most recent messages.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use crate::hooks::{HookRegistry, events};
use crate::id::BranchId;
use crate::message::{ContentBlock, Message, Role};
use crate::message_list::MessageList;

/// Keeps a branch's history and builds the provider's view of it.
///
/// Messages are stored behind [`Arc`] in a shared [`MessageList`], so
/// handing out a view of the history that compaction leaves whole costs one
/// reference count, whatever the history's length.
///
/// Contract: `messages` returns everything added, in order; the view from
/// `messages_for_request` is a subsequence of it (tool results may be
/// shortened, in new messages: the history itself is never changed) in
/// which every tool result follows the call it answers.
#[async_trait]
pub trait ContextManager: Send + Sync {
    /// Adds a message to the history.
    async fn add_message(&self, message: Message);

    /// Replaces the whole history (when a session is resumed).
    async fn set_messages(&self, messages: Vec<Message>);

    /// The full history, shared with the context (no message is copied).
    async fn messages(&self) -> Vec<Arc<Message>>;

    /// The view to send for a request with `budget_tokens` of context,
    /// compacted if needed (emitting `context:pre_compact` and
    /// `context:post_compact`). Messages compaction leaves unchanged are
    /// shared with the history, not copied.
    async fn messages_for_request(&self, budget_tokens: usize, hooks: &HookRegistry)
    -> MessageList;

    /// The view of [`ContextManager::messages_for_request`] with the
    /// system prompt `system` (a system message on the given branch, not
    /// part of the history) first. A context may keep this list across
    /// calls, so that it too costs nothing per message.
    async fn request_view(
        &self,
        budget_tokens: usize,
        hooks: &HookRegistry,
        system: Option<(&BranchId, &str)>,
    ) -> MessageList {
        let mut view = self.messages_for_request(budget_tokens, hooks).await;
        if let Some((branch, text)) = system {
            view.insert(0, Arc::new(system_message(branch, text)));
        }
        view
    }

    /// Forgets everything.
    async fn clear(&self);
}

/// The system message a request starts with.
fn system_message(branch: &BranchId, text: &str) -> Message {
    Message::text(branch.clone(), Role::System, text)
}

/// The share of the budget above which [`SimpleContext`] compacts.
pub const COMPACT_THRESHOLD: f64 = 0.92;
/// Tool results longer than this (bytes) are truncated in compaction's
/// first pass.
pub const TRUNCATED_TOOL_RESULT_BYTES: usize = 256;
/// How many of the most recent messages compaction never touches.
pub const PROTECTED_RECENT: usize = 4;

/// `context-simple`: full history, compacted view within the budget.
#[derive(Default)]
pub struct SimpleContext {
    history: Mutex<History>,
}

/// The messages and their running token estimate (kept so a request costs
/// no re-estimation of the whole history, nor a copy of the list).
#[derive(Default)]
struct History {
    messages: MessageList,
    /// The last uncompacted request view with a system prompt: that
    /// prompt's branch and text, and the list `[system] + messages[..k]`,
    /// caught up with the history (append-only) at the next request.
    with_system: Option<(BranchId, String, MessageList)>,
}

impl SimpleContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn total_tokens(messages: &[Arc<Message>]) -> usize {
    messages.iter().map(|m| m.estimated_tokens()).sum()
}

/// Groups messages into units that must stay together: an assistant message
/// with tool calls and the tool messages answering it form one unit.
fn units(messages: &[Arc<Message>]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < messages.len() {
        let start = i;
        let calls: Vec<String> = messages[i]
            .tool_calls()
            .iter()
            .map(|(id, _, _)| id.to_string())
            .collect();
        i += 1;
        if !calls.is_empty() {
            while i < messages.len()
                && messages[i].role == Role::Tool
                && messages[i]
                    .tool_result_ids()
                    .iter()
                    .any(|id| calls.iter().any(|c| c == id))
            {
                i += 1;
            }
        }
        out.push(start..i);
    }
    out
}

/// Compacts `messages` to fit `target` tokens (see the module docs).
///
/// The view shares the messages it keeps unchanged with `messages`; a tool
/// result it truncates becomes a new message (`messages` is never changed).
pub fn compact(messages: &[Arc<Message>], target: usize) -> Vec<Arc<Message>> {
    let mut view: Vec<Arc<Message>> = messages.to_vec();
    if total_tokens(&view) <= target {
        return view;
    }
    let protected_from = view.len().saturating_sub(PROTECTED_RECENT);

    // Pass 1: truncate old tool results (copy-on-write: `make_mut` copies
    // a message, shared with `messages`, only when one of its results is cut).
    for m in view.iter_mut().take(protected_from) {
        if m.role != Role::Tool || !m.content.iter().any(is_long_tool_result) {
            continue;
        }
        for block in &mut Arc::make_mut(m).content {
            if let ContentBlock::ToolResult { output, .. } = block
                && output.len() > TRUNCATED_TOOL_RESULT_BYTES
            {
                let mut cut = TRUNCATED_TOOL_RESULT_BYTES;
                while !output.is_char_boundary(cut) {
                    cut -= 1;
                }
                let dropped = output.len() - cut;
                output.truncate(cut);
                output.push_str(&format!(
                    "\n[… {dropped} bytes truncated to fit the context]"
                ));
            }
        }
    }
    if total_tokens(&view) <= target {
        return view;
    }

    // Pass 2: drop the oldest unprotected units.
    let first_user = view.iter().position(|m| m.role == Role::User);
    let last_user = view.iter().rposition(|m| m.role == Role::User);
    let groups = units(&view);
    let protected = |range: &std::ops::Range<usize>| {
        range.end > protected_from
            || range.clone().any(|i| {
                view[i].role == Role::System || Some(i) == first_user || Some(i) == last_user
            })
    };
    let mut keep = vec![true; view.len()];
    let mut total = total_tokens(&view);
    for range in &groups {
        if total <= target {
            break;
        }
        if protected(range) {
            continue;
        }
        for i in range.clone() {
            keep[i] = false;
            total -= view[i].estimated_tokens();
        }
    }
    let mut i = 0;
    view.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
    view
}

/// Whether compaction's first pass would truncate `block`.
fn is_long_tool_result(block: &ContentBlock) -> bool {
    matches!(block, ContentBlock::ToolResult { output, .. } if output.len() > TRUNCATED_TOOL_RESULT_BYTES)
}

#[async_trait]
impl ContextManager for SimpleContext {
    async fn add_message(&self, message: Message) {
        let message = Arc::new(message);
        self.lock().messages.push(message);
    }

    async fn set_messages(&self, messages: Vec<Message>) {
        let messages = MessageList::from(messages);
        *self.lock() = History {
            messages,
            with_system: None,
        };
    }

    async fn messages(&self) -> Vec<Arc<Message>> {
        self.lock().messages.to_vec()
    }

    async fn messages_for_request(
        &self,
        budget_tokens: usize,
        hooks: &HookRegistry,
    ) -> MessageList {
        let target = compact_target(budget_tokens);
        let messages = self.lock().messages.clone();
        let before_tokens = messages.estimated_tokens();
        if before_tokens <= target {
            return messages;
        }
        hooks
            .emit(
                events::CONTEXT_PRE_COMPACT,
                json!({"message_count": messages.len(), "tokens": before_tokens, "budget": budget_tokens}),
            )
            .await;
        let view = MessageList::from(compact(&messages, target));
        hooks
            .emit(
                events::CONTEXT_POST_COMPACT,
                json!({
                    "before_messages": messages.len(),
                    "after_messages": view.len(),
                    "before_tokens": before_tokens,
                    "after_tokens": view.estimated_tokens(),
                    "budget": budget_tokens,
                }),
            )
            .await;
        view
    }

    async fn request_view(
        &self,
        budget_tokens: usize,
        hooks: &HookRegistry,
        system: Option<(&BranchId, &str)>,
    ) -> MessageList {
        let Some((branch, text)) = system else {
            return self.messages_for_request(budget_tokens, hooks).await;
        };
        {
            let mut guard = self.lock();
            let History {
                messages,
                with_system,
            } = &mut *guard;
            if messages.estimated_tokens() <= compact_target(budget_tokens) {
                // The history only grows between resets (which drop the
                // cache), so the cached list is `[system]` + a prefix of it.
                let reusable = with_system.as_ref().is_some_and(|(b, t, list)| {
                    b == branch && t == text && list.len() <= messages.len() + 1
                });
                if !reusable {
                    let first = Arc::new(system_message(branch, text));
                    *with_system = Some((branch.clone(), text.to_string(), vec![first].into()));
                }
                if let Some((_, _, list)) = with_system {
                    let known = list.len() - 1;
                    list.extend(messages[known..].iter().cloned());
                    return list.clone();
                }
            }
        }
        let mut view = self.messages_for_request(budget_tokens, hooks).await;
        view.insert(0, Arc::new(system_message(branch, text)));
        view
    }

    async fn clear(&self) {
        *self.lock() = History::default();
    }
}

/// The token count above which a request's view is compacted.
fn compact_target(budget_tokens: usize) -> usize {
    (budget_tokens as f64 * COMPACT_THRESHOLD) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BranchId;
    use crate::message::unanswered_tool_calls;
    use std::collections::HashSet;

    fn text(role: Role, s: &str) -> Message {
        Message::text(BranchId::main(), role, s)
    }

    fn call(id: &str) -> Message {
        Message::new(
            BranchId::main(),
            Role::Assistant,
            vec![ContentBlock::ToolCall {
                id: id.into(),
                name: "read_file".into(),
                arguments: json!({"path": "x"}),
            }],
        )
    }

    fn result(id: &str, size: usize) -> Message {
        Message::new(
            BranchId::main(),
            Role::Tool,
            vec![ContentBlock::ToolResult {
                call_id: id.into(),
                output: "r".repeat(size),
                is_error: false,
            }],
        )
    }

    fn history(turns: usize) -> Vec<Message> {
        let mut out = vec![text(Role::System, "be helpful")];
        for t in 0..turns {
            out.push(text(Role::User, &format!("prompt {t} {}", "p".repeat(400))));
            out.push(call(&format!("c{t}")));
            out.push(result(&format!("c{t}"), 4000));
            out.push(text(Role::Assistant, &"a".repeat(400)));
        }
        out
    }

    /// `history(turns)` behind `Arc`s, as a context holds it.
    fn shared(turns: usize) -> Vec<Arc<Message>> {
        history(turns).into_iter().map(Arc::new).collect()
    }

    /// Every tool result in `view` follows, in the same view, the call it
    /// answers; and no call is left without its results.
    fn assert_pairs_intact(view: &[Arc<Message>]) {
        let mut seen_calls = HashSet::new();
        for m in view {
            for (id, _, _) in m.tool_calls() {
                seen_calls.insert(id.to_string());
            }
            for id in m.tool_result_ids() {
                assert!(seen_calls.contains(id), "orphaned tool result {id}");
            }
        }
        assert!(
            unanswered_tool_calls(view.iter().map(|m| &**m)).is_empty(),
            "call without result"
        );
    }

    #[test]
    fn small_history_is_untouched_and_shared() {
        let h = shared(2);
        let view = compact(&h, 1_000_000);
        assert_eq!(view, h);
        assert!(
            view.iter().zip(&h).all(|(v, m)| Arc::ptr_eq(v, m)),
            "messages are shared, not copied"
        );
    }

    #[test]
    fn compaction_keeps_pairs_system_first_and_last_prompt() {
        for budget in [200, 800, 1500, 3000, 6000, 20_000] {
            let h = shared(30);
            let view = compact(&h, budget);
            assert_pairs_intact(&view);
            assert_eq!(view[0].role, Role::System);
            let first_user = h.iter().find(|m| m.role == Role::User).unwrap();
            let last_user = h.iter().rev().find(|m| m.role == Role::User).unwrap();
            assert!(
                view.iter().any(|m| m.id == first_user.id),
                "first prompt kept"
            );
            assert!(
                view.iter().any(|m| m.id == last_user.id),
                "last prompt kept"
            );
            // The most recent messages are kept verbatim (the very same
            // messages).
            for m in &h[h.len() - PROTECTED_RECENT..] {
                assert!(view.iter().any(|v| Arc::ptr_eq(v, m)));
            }
        }
    }

    #[test]
    fn truncation_comes_before_dropping() {
        let h = shared(3);
        let full = total_tokens(&h);
        // Enough room once the old tool results are truncated.
        let view = compact(&h, full - 1500);
        assert_eq!(view.len(), h.len(), "nothing dropped");
        assert!(total_tokens(&view) < full);
        let protected_from = h.len() - PROTECTED_RECENT;
        for (i, (v, m)) in view.iter().zip(&h).enumerate() {
            assert_eq!(v.id, m.id, "same message, in order");
            let truncated = i < protected_from && m.role == Role::Tool;
            if truncated {
                // A new message with the result cut...
                assert!(!Arc::ptr_eq(v, m));
                let ContentBlock::ToolResult { output, .. } = &v.content[0] else {
                    panic!("tool result expected");
                };
                assert!(output.starts_with(&"r".repeat(TRUNCATED_TOOL_RESULT_BYTES)));
                assert!(output.ends_with("bytes truncated to fit the context]"));
            } else {
                // ...every other one shared as it is.
                assert!(Arc::ptr_eq(v, m), "message {i} shared");
            }
        }
        // The history itself is unchanged.
        for m in h.iter().filter(|m| m.role == Role::Tool) {
            let ContentBlock::ToolResult { output, .. } = &m.content[0] else {
                panic!("tool result expected");
            };
            assert_eq!(output.len(), 4000, "history not truncated");
        }
    }

    #[tokio::test]
    async fn view_shares_the_history() {
        let ctx = SimpleContext::new();
        ctx.set_messages(history(2)).await;
        ctx.add_message(text(Role::User, "more")).await;
        let hooks = HookRegistry::new();
        let all = ctx.messages().await;
        let view = ctx.messages_for_request(1_000_000, &hooks).await;
        assert_eq!(all.len(), 10);
        assert_eq!(view.len(), all.len());
        assert!(view.iter().zip(&all).all(|(v, m)| Arc::ptr_eq(v, m)));
    }

    #[tokio::test]
    async fn request_view_with_a_system_prompt_follows_the_history() {
        let ctx = SimpleContext::new();
        ctx.set_messages(history(1)).await;
        let hooks = HookRegistry::new();
        let main = BranchId::main();
        let first = ctx
            .request_view(1_000_000, &hooks, Some((&main, "sys")))
            .await;
        ctx.add_message(text(Role::User, "more")).await;
        let second = ctx
            .request_view(1_000_000, &hooks, Some((&main, "sys")))
            .await;
        let all = ctx.messages().await;
        // An earlier view never sees later messages.
        assert_eq!(first.len(), all.len());
        assert_eq!(second.len(), all.len() + 1);
        for view in [&first, &second] {
            assert_eq!(view[0].role, Role::System);
            assert_eq!(view[0].text_content(), "sys");
            assert!(view[1..].iter().zip(&all).all(|(v, m)| Arc::ptr_eq(v, m)));
            assert_eq!(view.estimated_tokens(), total_tokens(view));
        }
        // Another prompt, no prompt, a reset: each is honoured.
        let other = ctx
            .request_view(1_000_000, &hooks, Some((&main, "other")))
            .await;
        assert_eq!(other[0].text_content(), "other");
        assert_eq!(other.len(), all.len() + 1);
        let bare = ctx.request_view(1_000_000, &hooks, None).await;
        assert_eq!(bare.len(), all.len());
        ctx.set_messages(history(1)).await;
        let reset = ctx
            .request_view(1_000_000, &hooks, Some((&main, "sys")))
            .await;
        assert_eq!(reset.len(), history(1).len() + 1);
        // Compacted, the system message still comes first.
        ctx.set_messages(history(20)).await;
        let small = ctx.request_view(2000, &hooks, Some((&main, "sys"))).await;
        assert_eq!(small[0].text_content(), "sys");
        assert!(small.len() < 82);
    }

    #[tokio::test]
    async fn emits_compaction_events() {
        let ctx = SimpleContext::new();
        ctx.set_messages(history(20)).await;
        let hooks = HookRegistry::new();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        hooks.register(
            crate::hooks::ALL_EVENTS,
            crate::hooks::hook_fn(move |e, d| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push((e, d));
                    Ok(crate::hooks::HookResult::proceed())
                }
            }),
            0,
            "rec",
        );
        let view = ctx.messages_for_request(2000, &hooks).await;
        assert!(view.len() < 81);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0].0, events::CONTEXT_PRE_COMPACT);
        assert_eq!(seen[1].0, events::CONTEXT_POST_COMPACT);
        assert_eq!(seen[1].1["after_messages"], view.len());
        let all = ctx.messages().await;
        assert_eq!(all.len(), 81, "full history kept");
        assert!(
            all.iter()
                .filter(|m| m.role == Role::Tool)
                .all(|m| m.estimated_tokens() > 1000),
            "history not truncated"
        );
    }
}
