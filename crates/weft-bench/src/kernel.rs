//! `weft-bench kernel`: the kernel's overhead per turn.
//!
//! One session runs `--turns` prompts against provider-scripted with zero
//! delay, so the time measured is weft's own: the hook registry, the
//! orchestrator loop, the context manager and the log appends. Two
//! workloads: `text_turn` (prompt → answer) and `tool_turn` (prompt → tool
//! call → result → answer), each on the memory store (pure kernel) and the
//! fs store (kernel plus durable appends).
//!
//! `hook_emit` measures the hook registry alone: emits per second of a
//! `tool:pre`-shaped event (a session's default fields merged in) with one
//! and with five no-op Rust handlers, each kind: `async` (an
//! [`HookHandler`] whose `handle` is an `async fn`, one boxed future per
//! call) and `sync` (one answering through `handle_now`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Value, json};
use weft_core::hooks::{HookError, HookHandler, HookRegistry, HookResult, events};
use weft_core::memory::MemoryStore;
use weft_core::mount::{MountPlan, PlanFormat};
use weft_core::registry::ModuleRegistry;
use weft_core::store::Store;
use weft_core::tool::{Tool, ToolContext, ToolOutput};
use weft_core::{Session, SessionConfig};

/// Flags of `weft-bench kernel`.
#[derive(clap::Args, Debug, Clone)]
pub struct KernelBenchArgs {
    /// Prompts per workload.
    #[arg(long, default_value_t = 2000)]
    pub turns: usize,
    /// Skip the fs store runs.
    #[arg(long)]
    pub memory_only: bool,
    /// Emits per hook dispatch figure.
    #[arg(long, default_value_t = 500_000)]
    pub emits: usize,
    /// Only the hook dispatch figures.
    #[arg(long)]
    pub hooks_only: bool,
    /// Drive the prompts from a task on the runtime's worker threads, as
    /// the daemon's request handlers do. By default they are driven from
    /// the main thread (`block_on`, as `weft run` does), where each turn
    /// also pays the wake-up of a worker and of the main thread.
    #[arg(long)]
    pub from_task: bool,
}

struct NoopTool;

#[async_trait]
impl Tool for NoopTool {
    fn name(&self) -> &str {
        "noop"
    }
    fn description(&self) -> &str {
        "does nothing"
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object"})
    }
    async fn execute(&self, _input: Value, _ctx: &ToolContext) -> ToolOutput {
        ToolOutput::ok("ok")
    }
}

fn plan(turns: usize, with_tools: bool) -> anyhow::Result<MountPlan> {
    let mut responses = Vec::with_capacity(turns * 2);
    for i in 0..turns {
        if with_tools {
            responses.push(json!({"tool_calls": [{"name": "noop", "arguments": {"i": i}}]}));
        }
        responses.push(
            json!({"text": format!("answer {i}: the quick brown fox jumps over the lazy dog")}),
        );
    }
    let text = json!({
        "session": {"orchestrator": "loop-basic", "context": "context-simple"},
        "providers": [{"module": "provider-scripted", "config": {"responses": responses}}],
        "tools": ["tool-noop"],
    });
    Ok(MountPlan::parse(&text.to_string(), PlanFormat::Json)?.plan)
}

async fn one(
    store: Arc<dyn Store>,
    store_name: &'static str,
    turns: usize,
    with_tools: bool,
    from_task: bool,
) -> anyhow::Result<()> {
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    registry.register_tool("tool-noop", |_, _| {
        Ok(vec![Arc::new(NoopTool) as Arc<dyn Tool>])
    });
    let session = Session::new(SessionConfig::new(
        plan(turns, with_tools)?,
        store,
        Arc::new(registry),
    ));
    session.initialize().await?;
    // Warm up outside the measurement? Every turn is measured: the first
    // turn's one-time costs are part of the figure and amortised.
    let prompts = {
        let session = session.clone();
        async move {
            let start = Instant::now();
            for i in 0..turns {
                session.execute(&format!("prompt {i}")).await?;
            }
            anyhow::Ok(start.elapsed())
        }
    };
    let elapsed = if from_task {
        tokio::spawn(prompts).await??
    } else {
        prompts.await?
    };
    session.cleanup().await?;
    let per_turn_us = elapsed.as_secs_f64() * 1e6 / turns as f64;
    println!(
        "{}",
        json!({
            "bench": "kernel",
            "workload": if with_tools { "tool_turn" } else { "text_turn" },
            "store": store_name,
            "driver": if from_task { "task" } else { "main" },
            "turns": turns,
            "seconds": elapsed.as_secs_f64(),
            "turns_per_s": turns as f64 / elapsed.as_secs_f64(),
            "us_per_turn": per_turn_us,
        })
    );
    Ok(())
}

/// A no-op handler answering through the async `handle` (boxed future).
struct AsyncNoop;

#[async_trait]
impl HookHandler for AsyncNoop {
    async fn handle(&self, _event: &str, _data: &Value) -> Result<HookResult, HookError> {
        Ok(HookResult::proceed())
    }
}

/// A no-op handler answering at once through `handle_now`.
struct SyncNoop;

#[async_trait]
impl HookHandler for SyncNoop {
    async fn handle(&self, _event: &str, _data: &Value) -> Result<HookResult, HookError> {
        Ok(HookResult::proceed())
    }
    fn handle_now(&self, _event: &str, _data: &Value) -> Option<Result<HookResult, HookError>> {
        Some(Ok(HookResult::proceed()))
    }
}

async fn hook_emits(emits: usize, handlers: usize, sync: bool) {
    let registry = HookRegistry::new();
    registry.set_default("session_id", json!("0197a7b2-5c4e-7d1a-9f3e-2b8c4d5e6f70"));
    registry.set_default("parent_id", Value::Null);
    // Handlers of other events are registered too, as in a session.
    for event in [events::PROVIDER_REQUEST, events::PROMPT_SUBMIT] {
        registry.register(event, Arc::new(AsyncNoop), 0, "other");
    }
    for i in 0..handlers {
        let handler: Arc<dyn HookHandler> = if sync {
            Arc::new(SyncNoop)
        } else {
            Arc::new(AsyncNoop)
        };
        registry.register(events::TOOL_PRE, handler, i as i32, format!("noop{i}"));
    }
    let start = Instant::now();
    for i in 0..emits {
        let out = registry
            .emit(
                events::TOOL_PRE,
                json!({"tool_name": "noop", "call_id": "call_1", "i": i}),
            )
            .await;
        std::hint::black_box(out);
    }
    let elapsed = start.elapsed();
    println!(
        "{}",
        json!({
            "bench": "kernel",
            "workload": "hook_emit",
            "handlers": handlers,
            "kind": if sync { "sync" } else { "async" },
            "emits": emits,
            "seconds": elapsed.as_secs_f64(),
            "emits_per_s": emits as f64 / elapsed.as_secs_f64(),
            "ns_per_emit": elapsed.as_secs_f64() * 1e9 / emits as f64,
        })
    );
}

/// Runs the kernel workloads, printing one JSON line per figure.
pub async fn run(args: KernelBenchArgs) -> anyhow::Result<()> {
    for handlers in [1, 5] {
        for sync in [false, true] {
            hook_emits(args.emits, handlers, sync).await;
        }
    }
    if args.hooks_only {
        return Ok(());
    }
    for with_tools in [false, true] {
        one(
            Arc::new(MemoryStore::new()),
            "memory",
            args.turns,
            with_tools,
            args.from_task,
        )
        .await?;
        if !args.memory_only {
            let dir = tempfile::tempdir()?;
            let store = weft_store::open_store(&weft_store::StoreConfig::default(), dir.path())?;
            one(store, "fs", args.turns, with_tools, args.from_task).await?;
        }
    }
    Ok(())
}
