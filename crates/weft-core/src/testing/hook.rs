//! [`RecordingHook`]: a hook handler that records every event it sees.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Notify;

use super::lock;
use crate::hooks::{ALL_EVENTS, HookError, HookHandle, HookHandler, HookRegistry, HookResult};

#[derive(Default)]
struct Inner {
    events: Mutex<Vec<(String, Value)>>,
    notify: Notify,
}

/// Records every `(event name, data)` it handles, in order, and always
/// answers "continue". Register it with [`RecordingHook::attach`] (every
/// event, first in the chain, so it sees events later handlers deny) or
/// yourself for chosen events. Tests wait for events with
/// [`RecordingHook::wait_for`] instead of sleeping.
///
/// Cheap to clone; clones share the records.
#[derive(Clone, Default)]
pub struct RecordingHook {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RecordingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHook")
            .field("events", &lock(&self.inner.events).len())
            .finish()
    }
}

impl RecordingHook {
    /// A recorder with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a clone for every event ([`ALL_EVENTS`]) at priority
    /// `i32::MIN`, named `recording-hook`.
    pub fn attach(&self, hooks: &HookRegistry) -> HookHandle {
        hooks.register(
            ALL_EVENTS,
            Arc::new(self.clone()),
            i32::MIN,
            "recording-hook",
        )
    }

    /// Every `(event name, data)` recorded, in order.
    pub fn events(&self) -> Vec<(String, Value)> {
        lock(&self.inner.events).clone()
    }

    /// The recorded event names, in order.
    pub fn names(&self) -> Vec<String> {
        lock(&self.inner.events)
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The data of every recorded `name` event, in order.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        lock(&self.inner.events)
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// How many `name` events were recorded.
    pub fn count(&self, name: &str) -> usize {
        lock(&self.inner.events)
            .iter()
            .filter(|(n, _)| n == name)
            .count()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        lock(&self.inner.events).clear();
    }

    /// Waits for the first `name` event (returns at once if one was
    /// recorded) and returns its data.
    pub async fn wait_for(&self, name: &str) -> Value {
        self.wait_for_where(name, |_| true).await
    }

    /// Waits for the first `name` event whose data satisfies `matches`
    /// (returns at once if one was recorded) and returns its data.
    pub async fn wait_for_where(&self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            // Registered before the check, so an event in between is seen.
            let notified = self.inner.notify.notified();
            let found = lock(&self.inner.events)
                .iter()
                .find(|(n, d)| n == name && matches(d))
                .map(|(_, d)| d.clone());
            if let Some(data) = found {
                return data;
            }
            notified.await;
        }
    }

    /// Waits until `n` `name` events were recorded in total.
    pub async fn wait_for_count(&self, name: &str, n: usize) {
        loop {
            let notified = self.inner.notify.notified();
            if self.count(name) >= n {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl HookHandler for RecordingHook {
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError> {
        lock(&self.inner.events).push((event.to_string(), data.clone()));
        self.inner.notify.notify_waiters();
        Ok(HookResult::proceed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn records_events_and_wakes_waiters() {
        let hooks = HookRegistry::new();
        let hook = RecordingHook::new();
        hook.attach(&hooks);
        let waiter = tokio::spawn({
            let hook = hook.clone();
            async move { hook.wait_for_where("b", |d| d["n"] == 2).await }
        });
        hooks.emit("a", json!({"n": 1})).await;
        hooks.emit("b", json!({"n": 1})).await;
        hooks.emit("b", json!({"n": 2})).await;
        assert_eq!(waiter.await.expect("waiter")["n"], 2);
        assert_eq!(hook.names(), ["a", "b", "b"]);
        assert_eq!(hook.count("b"), 2);
        assert_eq!(hook.events_named("a")[0]["n"], 1);
        hook.wait_for_count("b", 2).await;
        hook.clear();
        assert!(hook.events().is_empty());
    }
}
