//! `weft models` and `weft profiles`.

use std::path::PathBuf;

use anyhow::Context;
use weft_core::SessionId;
use weft_core::hooks::HookRegistry;
use weft_core::profiles::list_profiles;
use weft_core::registry::ModuleEnv;

use crate::app::{App, PlanChoice};

/// `weft models`: the models the chosen (or auto-selected) provider offers.
pub async fn models(
    app: &App,
    provider: Option<String>,
    base_url: Option<String>,
    script: Option<PathBuf>,
    json_out: bool,
) -> anyhow::Result<()> {
    let choice = PlanChoice {
        provider,
        base_url,
        script,
        ..Default::default()
    };
    let (plan, _) = app.plan(&choice).await?;
    let spec = plan
        .providers
        .first()
        .context("no provider to ask: pass --provider")?;
    let env = ModuleEnv {
        session_id: SessionId::parse("weft-models")?,
        parent_id: None,
        store: app.store.clone(),
        working_dir: PathBuf::from(&app.project.dir),
        hooks: HookRegistry::new(),
        agents: Vec::new(),
        providers: Default::default(),
    };
    let provider = app.registry.provider(spec, &env)?;
    let models = provider.list_models().await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&models)?);
    } else {
        for m in models {
            match (&m.display_name, m.context_window) {
                (Some(d), Some(w)) => println!("{:<40}  {d} ({w} tokens)", m.id),
                (Some(d), None) => println!("{:<40}  {d}", m.id),
                (None, Some(w)) => println!("{:<40}  ({w} tokens)", m.id),
                (None, None) => println!("{}", m.id),
            }
        }
    }
    Ok(())
}

/// `weft profiles`: the profiles that can be used with `--profile`.
pub fn profiles(app: &App, json_out: bool) -> anyhow::Result<()> {
    let profiles = list_profiles(&app.home);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&profiles)?);
    } else {
        for p in profiles {
            println!(
                "{:<16}  {:<8}  {}",
                p.name,
                if p.source == "builtin" {
                    "builtin"
                } else {
                    "user"
                },
                p.description
            );
        }
    }
    Ok(())
}
