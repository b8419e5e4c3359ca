//! Operations on a stored session that every front end performs the same
//! way: reading and changing its keyed state, and resuming its
//! configuration from its stored metadata. The runtime ([`Session`]'s
//! state API), the CLI (`weft state …`, `weft resume`) and the daemon
//! (`/state`, making a session live) all call these, so they agree.
//!
//! # Whose `user:` state a session sees
//!
//! A `user:` key of a session lives in the shared namespace of the
//! session's **owner**: `meta.user`, recorded when the session is created
//! (from [`SessionConfig::user`]), or [`DEFAULT_USER`] for a session
//! without one. It never depends on who asks: the runtime running a turn,
//! `weft state get` and `GET /state/{key}` read the same value of the same
//! session, whichever front end or user reads it (this is ADK's rule —
//! a session belongs to one user, and its `user:` state is that user's —
//! and the seeds' "branch owner" / "sessions per user"). So `user:` state
//! is shared by the sessions of one user and not seen by the sessions of
//! another; it is a sharing scope, not access control (weft has none
//! between users of one store).
//!
//! Who the user is, per front end, when a session is created: the library
//! takes [`SessionConfig::user`]; the CLI takes the `user` setting of
//! `config.toml`, else `WEFT_USER`, else `$USER`, else `default`; the
//! daemon (`weft serve`) takes the same setting of the process that
//! started it, and records it on every session it creates. A sub-agent's
//! session inherits its parent's owner.
//!
//! What this module must not know about: how a front end appends a
//! session's records (a live session's log, the daemon's busy-branch
//! check, [`crate::store::update_session`]): the session-key changes are
//! returned for the caller to append.
//!
//! [`Session`]: crate::runtime::Session

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::SessionError;
use crate::mount::MountPlan;
use crate::record::StateDelta;
use crate::registry::ModuleRegistry;
use crate::runtime::SessionConfig;
use crate::session::SessionMeta;
use crate::state::{DEFAULT_USER, StateScope, check_key, scope_of};
use crate::store::{Store, StoreError};

/// What a state operation on a stored session can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The key is empty, too long or has control characters.
    #[error("{0}")]
    InvalidKey(String),
    /// A `temp:` key, which lives only inside a running turn and is never
    /// stored.
    #[error(
        "{0:?} is a temp: key: temp: state lives only inside a running turn and is never stored; use a session key (no prefix) or an app:/user: key"
    )]
    Temp(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<StateError> for SessionError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Store(e) => SessionError::Store(e),
            other => SessionError::Invalid(other.to_string()),
        }
    }
}

/// The owner whose `user:` namespace session `meta` uses (see the module
/// doc).
pub fn owner(meta: &SessionMeta) -> &str {
    meta.user.as_deref().unwrap_or(DEFAULT_USER)
}

/// Whether `key` is a `temp:` key (held by a running turn, never stored).
pub fn is_temp(key: &str) -> bool {
    scope_of(key, "", None) == StateScope::Temp
}

/// Where `key` lives for session `meta`, after checking it.
pub fn scope(meta: &SessionMeta, key: &str) -> Result<StateScope, StateError> {
    check_key(key).map_err(StateError::InvalidKey)?;
    Ok(scope_of(key, &meta.profile, Some(owner(meta))))
}

/// The stored value of `key` in session `meta` (None: not set); `temp:`
/// keys are refused ([`StateError::Temp`]): only a running turn has them.
pub async fn get(
    store: &dyn Store,
    meta: &SessionMeta,
    key: &str,
) -> Result<Option<Value>, StateError> {
    Ok(match scope(meta, key)? {
        StateScope::Temp => return Err(StateError::Temp(key.to_string())),
        StateScope::Shared(ns) => store.shared_state(&ns).await?.get(key).cloned(),
        StateScope::Session => store.view(&meta.id).await?.state.get(key).cloned(),
    })
}

/// Sets (`Some`) or deletes (`None`) `key` of session `meta`. An `app:` or
/// `user:` key is written to the store's shared state here; for a session
/// key the `state` change is returned, for the caller to append to the
/// session's log (each front end has its own way to append). `temp:` keys
/// are refused ([`StateError::Temp`]).
#[must_use = "a session key's change must be appended to the session's log"]
pub async fn change(
    store: &dyn Store,
    meta: &SessionMeta,
    key: &str,
    value: Option<Value>,
) -> Result<Option<StateDelta>, StateError> {
    let mut delta = StateDelta::default();
    match value {
        Some(v) => {
            delta.set.insert(key.to_string(), v);
        }
        None => delta.delete.push(key.to_string()),
    }
    match scope(meta, key)? {
        StateScope::Temp => Err(StateError::Temp(key.to_string())),
        StateScope::Shared(ns) => {
            store.update_shared_state(&ns, &delta).await?;
            Ok(None)
        }
        StateScope::Session => Ok(Some(delta)),
    }
}

/// The stored state session `meta` sees: its own keys and the shared
/// `app:` and `user:` keys (a running turn adds its `temp:` keys).
pub async fn all(store: &dyn Store, meta: &SessionMeta) -> Result<Map<String, Value>, StateError> {
    let mut all = store.view(&meta.id).await?.state;
    for prefix in ["app:", "user:"] {
        if let StateScope::Shared(ns) = scope(meta, prefix)? {
            all.extend(store.shared_state(&ns).await?);
        }
    }
    Ok(all)
}

/// A stored session's configuration, rebuilt from its metadata: what
/// [`SessionConfig::resume`] returns.
pub struct Resumed {
    /// The config (approval, display and the like are left for the caller).
    pub config: SessionConfig,
    /// The sub-agent the session was made for, when the plan no longer has
    /// it (the plan itself runs instead).
    pub lost_agent: Option<String>,
}

impl SessionConfig {
    /// The config that resumes stored session `meta` with `plan` (the plan
    /// of its profile, or the one recorded with it, see
    /// [`MountPlan::recorded`]): its id, profile, parent, sub-agent (the
    /// plan narrowed by [`MountPlan::for_agent`]), project, owner and the
    /// model chosen at creation (`settingsOverrides`).
    pub fn resume(
        meta: &SessionMeta,
        plan: MountPlan,
        store: Arc<dyn Store>,
        registry: Arc<ModuleRegistry>,
    ) -> Resumed {
        let (plan, lost_agent) = match &meta.agent_name {
            Some(agent) => match plan.for_agent(agent) {
                Some(narrowed) => (narrowed, None),
                None => (plan, Some(agent.clone())),
            },
            None => (plan, None),
        };
        let mut config = SessionConfig::new(plan, store, registry);
        config.profile = meta.profile.clone();
        config.session_id = Some(meta.id.clone());
        config.parent_id = meta.parent_id.clone();
        config.agent_name = meta.agent_name.clone();
        config.project = meta.project.clone();
        config.user = meta.user.clone();
        config.model = model_override(meta);
        Resumed { config, lost_agent }
    }
}

/// A model chosen by `settingsOverrides` (`model` or `llm.model`) when the
/// session was created.
pub fn model_override(meta: &SessionMeta) -> Option<String> {
    let o = meta.metadata.get("settingsOverrides")?;
    o.get("model")
        .or_else(|| o.get("llm").and_then(|l| l.get("model")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::id::SessionId;
    use crate::memory::MemoryStore;
    use crate::mount::{AgentSpec, PlanFormat, SystemSpec};
    use crate::session::Project;

    async fn stored(store: &dyn Store, user: Option<&str>) -> SessionMeta {
        let mut meta = SessionMeta::new(
            SessionId::new_v7(),
            Project::from_dir(std::path::Path::new("/tmp")),
            "dev",
        );
        meta.user = user.map(str::to_string);
        store.create(meta, Vec::new()).await.expect("create")
    }

    #[tokio::test]
    async fn user_keys_follow_the_owner() {
        let store = MemoryStore::new();
        let ann = stored(&store, Some("ann")).await;
        let ann2 = stored(&store, Some("ann")).await;
        let bob = stored(&store, Some("bob")).await;
        let nobody = stored(&store, None).await;
        assert_eq!(owner(&nobody), DEFAULT_USER);

        let shared = change(&store, &ann, "user:x", Some(json!(1))).await;
        assert!(shared.expect("set").is_none(), "written to the store");
        assert_eq!(get(&store, &ann2, "user:x").await.unwrap(), Some(json!(1)));
        assert_eq!(get(&store, &bob, "user:x").await.unwrap(), None);
        assert_eq!(get(&store, &nobody, "user:x").await.unwrap(), None);
        assert_eq!(all(&store, &ann2).await.unwrap()["user:x"], json!(1));
        // Deleting in bob's session leaves ann's key alone.
        let _ = change(&store, &bob, "user:x", None).await.unwrap();
        assert_eq!(get(&store, &ann, "user:x").await.unwrap(), Some(json!(1)));
        let _ = change(&store, &ann2, "user:x", None).await.unwrap();
        assert_eq!(get(&store, &ann, "user:x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn session_keys_are_returned_and_temp_keys_refused() {
        let store = MemoryStore::new();
        let meta = stored(&store, Some("ann")).await;
        let delta = change(&store, &meta, "plan", Some(json!(2)))
            .await
            .unwrap()
            .expect("a session key's change is the caller's to append");
        assert_eq!(delta.set["plan"], json!(2));
        assert!(matches!(
            change(&store, &meta, "temp:x", Some(json!(1))).await,
            Err(StateError::Temp(_))
        ));
        assert!(matches!(
            get(&store, &meta, "temp:x").await,
            Err(StateError::Temp(_))
        ));
        assert!(matches!(
            get(&store, &meta, "").await,
            Err(StateError::InvalidKey(_))
        ));
        assert!(is_temp("temp:x") && !is_temp("user:x"));
    }

    #[tokio::test]
    async fn resume_rebuilds_the_config_from_the_metadata() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut plan = MountPlan::parse(
            "session: { orchestrator: loop-basic, context: context-simple }",
            PlanFormat::Yaml,
        )
        .unwrap()
        .plan;
        plan.agents.insert(
            "helper".into(),
            AgentSpec {
                system: Some(SystemSpec {
                    instruction: "You help.".into(),
                }),
                ..Default::default()
            },
        );
        let mut meta = stored(store.as_ref(), Some("ann")).await;
        meta.agent_name = Some("helper".into());
        meta.parent_id = Some(SessionId::new_v7());
        meta.metadata.insert(
            "settingsOverrides".into(),
            json!({"llm": {"model": "small"}}),
        );
        let registry = Arc::new(ModuleRegistry::with_core_modules());
        let r = SessionConfig::resume(&meta, plan.clone(), store.clone(), registry.clone());
        assert!(r.lost_agent.is_none());
        let c = r.config;
        assert_eq!(c.session_id.as_ref(), Some(&meta.id));
        assert_eq!(c.parent_id, meta.parent_id);
        assert_eq!(c.profile, "dev");
        assert_eq!(c.user.as_deref(), Some("ann"));
        assert_eq!(c.project, meta.project);
        assert_eq!(c.model.as_deref(), Some("small"));
        assert_eq!(c.plan.system_instruction(), Some("You help."));

        meta.agent_name = Some("gone".into());
        let r = SessionConfig::resume(&meta, plan.clone(), store, registry);
        assert_eq!(r.lost_agent.as_deref(), Some("gone"));
        assert_eq!(r.config.plan, plan);
    }
}
