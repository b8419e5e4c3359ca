//! [`App`]: what every command works with — configuration, the store, the
//! module registry, the current project — and how a mount plan is chosen
//! from a profile and the provider flags.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use weft_core::approval::{ApprovalSystem, DisplaySystem};
use weft_core::mount::{ModuleSpec, MountPlan};
use weft_core::profiles::load_profile;
use weft_core::registry::ModuleRegistry;
use weft_core::session::Project;
use weft_core::store::Store;
use weft_core::{SessionConfig, SessionId};

use crate::config::{StoreFlags, WeftConfig};

pub use weft_modules::{full_registry, tool_access};

/// The loaded configuration, store and registry.
pub struct App {
    /// The configuration.
    pub config: WeftConfig,
    /// The weft home.
    pub home: PathBuf,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Module constructors.
    pub registry: Arc<ModuleRegistry>,
    /// The current project.
    pub project: Project,
}

/// How to choose a session's mount plan and provider.
#[derive(Debug, Clone, Default)]
pub struct PlanChoice {
    /// A profile name (default: the configured one, else `base`).
    pub profile: Option<String>,
    /// A mount-plan file (instead of a profile).
    pub mount_plan: Option<PathBuf>,
    /// The mount plan recorded with a resumed session (it was started with
    /// `--mount-plan`); used instead of `profile`, which then only names it.
    pub recorded: Option<MountPlan>,
    /// A provider (`anthropic`, `openai`, `ollama`, `scripted`).
    pub provider: Option<String>,
    /// A model.
    pub model: Option<String>,
    /// A base URL for the provider.
    pub base_url: Option<String>,
    /// A script for provider-scripted.
    pub script: Option<PathBuf>,
}

/// The profile name a session run from the mount-plan file `path` records:
/// the file's stem (`plan.yaml` → `plan`).
pub fn mount_plan_name(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("custom")
        .to_string()
}

impl App {
    /// Loads configuration and opens the store (`store`: the `--store` and
    /// `--store-url` flags).
    pub fn load(home: Option<PathBuf>, store: &StoreFlags) -> anyhow::Result<Self> {
        let home = home.unwrap_or_else(weft_store::default_weft_home);
        let config = WeftConfig::load(&home, store)?;
        let progress = crate::ui::progress::Progress::new("indexing sessions", 0);
        let store = weft_store::open_store_reporting(&config.store, &home, &progress);
        drop(progress);
        let store = store.with_context(|| match &config.store.url {
            Some(url) => format!(
                "cannot open the {} store at {}",
                config.store.kind,
                weft_store::redact_url(url)
            ),
            None => format!(
                "cannot open the {:?} store under {}",
                config.store.kind,
                home.display()
            ),
        })?;
        let registry = Arc::new(full_registry(tool_access(&home, &config.store)));
        Ok(Self {
            config,
            home,
            store,
            registry,
            project: Project::current(),
        })
    }

    /// Where the store is, for messages: its URL without the password, or
    /// the home directory of a local store.
    pub fn store_location(&self) -> String {
        match &self.config.store.url {
            Some(url) => weft_store::redact_url(url),
            None => self.home.display().to_string(),
        }
    }

    /// Resolves an id or unique prefix.
    pub async fn resolve(&self, id_or_prefix: &str) -> anyhow::Result<SessionId> {
        Ok(self.store.resolve(id_or_prefix).await?)
    }

    /// The profile a session runs when none is named: the one the
    /// project directory's marker names (`.weft/config.toml`,
    /// `.amplified/metadata.json`, `.amplifier/settings.yaml`; see
    /// [`weft_core::project_profile`]), else the configured one, else
    /// `base`.
    pub fn default_profile(&self) -> anyhow::Result<String> {
        let dir = Path::new(&self.project.dir);
        if let Some(found) = weft_core::project_profile::directory_profile(dir)? {
            return Ok(found.name);
        }
        Ok(self.config.profile.clone().unwrap_or_else(|| "base".into()))
    }

    /// The plan and profile name for `choice` before providers are
    /// chosen: the recorded plan, the mount-plan file or the profile, with
    /// the MCP servers of config.toml added (see
    /// [`weft_mcp::McpConfig::add_to_plan`]).
    pub fn base_plan(&self, choice: &PlanChoice) -> anyhow::Result<(MountPlan, String)> {
        let (mut plan, profile) = match (&choice.mount_plan, &choice.recorded) {
            (None, Some(recorded)) => (
                recorded.clone(),
                choice.profile.clone().unwrap_or_else(|| "custom".into()),
            ),
            (Some(path), _) => (MountPlan::load(path)?.plan, mount_plan_name(path)),
            (None, None) => {
                let name = match &choice.profile {
                    Some(name) => name.clone(),
                    None => self.default_profile()?,
                };
                (load_profile(&name, &self.home)?.plan, name)
            }
        };
        self.config.mcp.add_to_plan(&mut plan);
        Ok((plan, profile))
    }

    /// The plan and profile name for `choice`.
    pub async fn plan(&self, choice: &PlanChoice) -> anyhow::Result<(MountPlan, String)> {
        let (mut plan, profile) = self.base_plan(choice)?;
        let provider = choice.provider.clone().or_else(|| {
            // A script implies the scripted provider.
            if choice.script.is_some() {
                Some("scripted".into())
            } else if plan.providers.is_empty() {
                self.config.provider.clone()
            } else {
                None
            }
        });
        let model = choice.model.clone().or_else(|| self.config.model.clone());
        match provider {
            Some(name) => {
                let module = weft_providers::provider_module_name(&name).with_context(|| {
                    format!("unknown provider {name:?}: use anthropic, openai, ollama or scripted")
                })?;
                let mut spec = ModuleSpec::named(module);
                if let Some(script) = &choice.script {
                    let absolute = absolute(script)?;
                    spec.config
                        .insert("script".into(), absolute.display().to_string().into());
                } else if module == weft_providers::scripted::MODULE {
                    bail!("the scripted provider needs a script: pass --script FILE");
                }
                plan.providers = vec![spec];
            }
            None if plan.providers.is_empty() => {
                plan.providers = vec![weft_providers::auto_select().await?];
            }
            None => {}
        }
        if let Some(first) = plan.providers.first_mut() {
            if let Some(model) = &model {
                first.config.insert("model".into(), model.clone().into());
            }
            if let Some(url) = &choice.base_url {
                first.config.insert("base_url".into(), url.clone().into());
            }
        }
        Ok((plan, profile))
    }

    /// A session config for `plan` in this app's store and project.
    pub fn session_config(
        &self,
        plan: MountPlan,
        profile: String,
        approval: Option<Arc<dyn ApprovalSystem>>,
        display: Option<Arc<dyn DisplaySystem>>,
    ) -> SessionConfig {
        let mut config = SessionConfig::new(plan, self.store.clone(), self.registry.clone());
        config.profile = profile;
        config.project = self.project.clone();
        config.approval = approval;
        config.display = display;
        config.user = Some(self.config.user_name());
        config
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    if !p.is_file() {
        bail!(
            "script {} does not exist: pass the path of a JSON or YAML script",
            p.display()
        );
    }
    Ok(p)
}
