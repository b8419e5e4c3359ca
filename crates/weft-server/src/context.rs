//! [`ServerContext`]: what the daemon serves — the store, the modules, how
//! a profile becomes a mount plan ([`PlanSource`]), the project and the
//! approval policy.
//!
//! The daemon does not choose backends, providers or profiles itself: the
//! embedder (the CLI's `weft serve`) does, and hands them over here.
//!
//! Confinement: a session's tools run in its project directory, so the
//! daemon runs only sessions whose project lies inside its own
//! ([`ServerContext::confine`]); a stored session that names another one
//! (made by `weft run` elsewhere, or imported with `working_dir: "/"`) is
//! refused with 409 rather than given the run of that directory. It can
//! still be read, and continued with `weft continue` from its directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use weft_core::approval::ApprovalSystem;
use weft_core::id::SessionId;
use weft_core::mount::MountPlan;
use weft_core::registry::ModuleRegistry;
use weft_core::session::Project;
use weft_core::store::Store;

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No profile has this name (the message lists the ones there are).
    #[error("{0}")]
    UnknownProfile(String),
    /// The plan cannot be built now (no provider configured, a bad plan
    /// file, …).
    #[error("{0}")]
    Unavailable(String),
}

/// Turns a profile name into a mount plan with its provider chosen.
#[async_trait]
pub trait PlanSource: Send + Sync {
    /// The plan for `profile` (None: the default profile) and the profile
    /// name to record.
    async fn plan(&self, profile: Option<&str>) -> Result<(MountPlan, String), PlanError>;

    /// The name of the one plan this source serves whatever profile is
    /// asked for (`weft serve --mount-plan FILE`), or None when the profile
    /// chooses the plan. The daemon refuses a `profileName` or `agent`
    /// that names another plan instead of ignoring it.
    fn fixed_plan(&self) -> Option<String> {
        None
    }
}

/// Why `asked` cannot be used as a profile when `plans` runs one fixed
/// plan (None: it can). `field` is the request field that named it;
/// `agents` are the fixed plan's sub-agents, which `agent` may also name.
pub(crate) fn refuse_other_plan(
    plans: &dyn PlanSource,
    field: &str,
    asked: &str,
    agents: &[String],
) -> Option<String> {
    let name = plans.fixed_plan()?;
    let bare = asked.strip_prefix("foundation/").unwrap_or(asked);
    if bare == name || agents.iter().any(|a| a == asked) {
        return None;
    }
    let also = if agents.is_empty() {
        String::new()
    } else {
        format!(" or one of its agents ({})", agents.join(", "))
    };
    Some(format!(
        "{field}: this daemon runs one mount plan ({name}); leave out {field} or pass {name}{also}"
    ))
}

/// A fixed set of named plans: for tests and embedders that build plans
/// in code.
#[derive(Debug, Clone)]
pub struct StaticPlanSource {
    plans: BTreeMap<String, MountPlan>,
    default: String,
    fixed: bool,
}

impl StaticPlanSource {
    /// One plan, served as profile `name` (and as the default).
    pub fn new(name: impl Into<String>, plan: MountPlan) -> Self {
        let name = name.into();
        let mut plans = BTreeMap::new();
        plans.insert(name.clone(), plan);
        Self {
            plans,
            default: name,
            fixed: false,
        }
    }

    /// Serves the default plan whatever profile is asked for, as
    /// `weft serve --mount-plan` does ([`PlanSource::fixed_plan`]).
    pub fn fixed(mut self) -> Self {
        self.fixed = true;
        self
    }

    /// Adds another named plan.
    pub fn with(mut self, name: impl Into<String>, plan: MountPlan) -> Self {
        self.plans.insert(name.into(), plan);
        self
    }
}

#[async_trait]
impl PlanSource for StaticPlanSource {
    async fn plan(&self, profile: Option<&str>) -> Result<(MountPlan, String), PlanError> {
        let name = match profile {
            Some(p) if !self.fixed => p,
            _ => &self.default,
        };
        let bare = name.strip_prefix("foundation/").unwrap_or(name);
        match self.plans.get(name).or_else(|| self.plans.get(bare)) {
            Some(plan) => Ok((plan.clone(), name.to_string())),
            None => Err(PlanError::UnknownProfile(format!(
                "unknown profile {name:?}: the available profiles are {}",
                self.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn fixed_plan(&self) -> Option<String> {
        self.fixed.then(|| self.default.clone())
    }
}

/// Everything the daemon works with.
#[derive(Clone)]
pub struct ServerContext {
    /// The session store (the same one the CLI uses).
    pub store: Arc<dyn Store>,
    /// Module constructors (core, providers, tools).
    pub registry: Arc<ModuleRegistry>,
    /// Profile → mount plan.
    pub plans: Arc<dyn PlanSource>,
    /// The project new sessions belong to; `amplifiedDir` is resolved
    /// inside its directory.
    pub project: Project,
    /// The owner recorded on new sessions (for `user:` state).
    pub user: String,
    /// The weft home (user profiles live in `<home>/profiles`).
    pub home: PathBuf,
    /// Where approvals go. None: everything that needs approval is denied
    /// (the daemon has no terminal to ask at).
    pub approval: Option<Arc<dyn ApprovalSystem>>,
}

impl ServerContext {
    /// Checks that session `id`'s stored `project` lies inside the daemon's
    /// project directory (both resolved physically: symlinks and `..`
    /// cannot lead out); the error is the sentence to show.
    pub fn confine(&self, id: &SessionId, project: &Project) -> Result<(), String> {
        let own = std::fs::canonicalize(&self.project.dir)
            .unwrap_or_else(|_| PathBuf::from(&self.project.dir));
        match std::fs::canonicalize(&project.dir) {
            Ok(dir) if dir.starts_with(&own) => Ok(()),
            Ok(_) => Err(format!(
                "session {id} belongs to the project directory {}, which is outside this \
                 server's project directory {}; the daemon runs tools only inside its own \
                 project: continue it with `weft continue` in that directory, or run \
                 `weft serve` there",
                project.dir,
                own.display()
            )),
            Err(_) => Err(format!(
                "session {id} belongs to the project directory {}, which does not exist; the \
                 daemon runs a session only inside its own project directory {}",
                project.dir,
                own.display()
            )),
        }
    }
}
