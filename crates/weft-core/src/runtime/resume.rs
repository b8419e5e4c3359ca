//! Resuming a stored session: its [`SessionConfig`] rebuilt from its
//! metadata (id, profile, parent, sub-agent, project, owner, the model
//! chosen at creation), one place for the CLI's `open_session` and the
//! daemon's `ensure_live`.
//!
//! It knows the metadata and the mount plan, nothing of how a front end
//! finds the plan (profiles, `--mount-plan`, the daemon's plan source).

use std::sync::Arc;

use super::SessionConfig;
use crate::mount::MountPlan;
use crate::registry::ModuleRegistry;
use crate::session::SessionMeta;
use crate::settings::SettingsOverrides;
use crate::store::Store;

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
    /// settings chosen at creation (`settingsOverrides`, applied to the
    /// plan by [`SettingsOverrides::apply`]).
    pub fn resume(
        meta: &SessionMeta,
        plan: MountPlan,
        store: Arc<dyn Store>,
        registry: Arc<ModuleRegistry>,
    ) -> Resumed {
        let (mut plan, lost_agent) = match &meta.agent_name {
            Some(agent) => match plan.for_agent(agent) {
                Some(narrowed) => (narrowed, None),
                None => (plan, Some(agent.clone())),
            },
            None => (plan, None),
        };
        if let Some(overrides) = SettingsOverrides::recorded(&meta.metadata) {
            overrides.apply(&mut plan);
        }
        let mut config = SessionConfig::new(plan, store, registry);
        config.profile = meta.profile.clone();
        config.session_id = Some(meta.id.clone());
        config.parent_id = meta.parent_id.clone();
        config.agent_name = meta.agent_name.clone();
        config.project = meta.project.clone();
        config.user = meta.user.clone();
        config.tenant = meta.tenant().map(str::to_string);
        config.model = model_override(meta);
        Resumed { config, lost_agent }
    }
}

/// A model chosen by `settingsOverrides` (`model` or `llm.model`) when the
/// session was created.
pub fn model_override(meta: &SessionMeta) -> Option<String> {
    SettingsOverrides::recorded(&meta.metadata)?.model
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
        let mut meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "dev");
        meta.user = user.map(str::to_string);
        store.create(meta, Vec::new()).await.unwrap()
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
