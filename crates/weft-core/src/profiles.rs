//! Profiles: named mount plans.
//!
//! Built in: `base` (files, logging, session naming) and `dev` (files,
//! search, bash, task delegation, a sub-agent, logging, session naming), also reachable as `foundation/base` and
//! `foundation/dev`. User profiles are mount-plan files in
//! `$WEFT_HOME/profiles/<name>.{yaml,yml,json,toml}`; a user file named like
//! a built-in profile overrides it (the `foundation/` name always means the
//! built-in one).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::id::validate_id;
use crate::mount::{MountError, MountPlan, ParsedPlan, PlanFormat};

/// The `base` profile.
pub const BASE_PROFILE: &str = r#"
session:
  orchestrator: loop-basic
  context: context-simple
system:
  instruction: >-
    You are weft, a careful assistant working in the user's project directory.
    Use the tools when they help, and say briefly what you did.
tools:
  - tool-filesystem
hooks:
  - hooks-logging
  - hooks-session-naming
"#;

/// The `dev` profile.
pub const DEV_PROFILE: &str = r#"
session:
  orchestrator: { module: loop-basic, config: { max_iterations: 50 } }
  context: context-simple
system:
  instruction: >-
    You are weft, a software engineering assistant working in the user's project
    directory. Read before you change things, keep changes small, run the
    project's checks with bash when it helps, and delegate self-contained
    investigations to a sub-agent with the task tool.
tools:
  - tool-filesystem
  - tool-search
  - tool-bash
  - tool-task
hooks:
  - hooks-logging
  - hooks-session-naming
agents:
  explorer:
    description: Reads and searches the project to answer one focused question; it changes nothing.
    system:
      instruction: >-
        You are an explorer sub-agent. Answer the question you are given by reading
        and searching files. Do not modify anything. Reply with a concise answer
        that names the files you relied on.
    tools:
      - tool-filesystem
      - tool-search
"#;

const BUILTIN: &[(&str, &str, &str)] = &[
    ("base", BASE_PROFILE, "files and logging"),
    (
        "dev",
        DEV_PROFILE,
        "files, search, bash (with approval), task delegation",
    ),
];

const EXTENSIONS: &[&str] = &["yaml", "yml", "json", "toml"];

/// A profile that can be loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileInfo {
    /// Its name.
    pub name: String,
    /// `builtin`, or the file it comes from.
    pub source: String,
    /// A one-line description.
    pub description: String,
}

/// The directory user profiles live in.
pub fn profiles_dir(weft_home: &Path) -> PathBuf {
    weft_home.join("profiles")
}

fn user_file(weft_home: &Path, name: &str) -> Option<PathBuf> {
    EXTENSIONS
        .iter()
        .map(|ext| profiles_dir(weft_home).join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// Loads the profile `name` (see the module docs for the lookup order).
pub fn load_profile(name: &str, weft_home: &Path) -> Result<ParsedPlan, MountError> {
    let (builtin_only, bare) = match name.strip_prefix("foundation/") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if validate_id(bare).is_err() {
        return Err(unknown_profile(name, weft_home));
    }
    if !builtin_only && let Some(path) = user_file(weft_home, bare) {
        return MountPlan::load(&path);
    }
    match BUILTIN.iter().find(|(n, _, _)| *n == bare) {
        Some((_, text, _)) => MountPlan::parse(text, PlanFormat::Yaml),
        None => Err(unknown_profile(name, weft_home)),
    }
}

fn unknown_profile(name: &str, weft_home: &Path) -> MountError {
    MountError::UnknownProfile {
        name: name.to_string(),
        available: list_profiles(weft_home)
            .into_iter()
            .map(|p| p.name)
            .collect(),
    }
}

/// Every profile: built-ins first, then user files.
pub fn list_profiles(weft_home: &Path) -> Vec<ProfileInfo> {
    let mut out: Vec<ProfileInfo> = BUILTIN
        .iter()
        .map(|(name, _, description)| ProfileInfo {
            name: name.to_string(),
            source: "builtin".into(),
            description: description.to_string(),
        })
        .collect();
    if let Ok(entries) = std::fs::read_dir(profiles_dir(weft_home)) {
        let mut user: Vec<ProfileInfo> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e))
            })
            .filter_map(|p| {
                let name = p.file_stem()?.to_str()?.to_string();
                validate_id(&name).ok()?;
                Some(ProfileInfo {
                    name,
                    source: p.display().to_string(),
                    description: "user profile".into(),
                })
            })
            .collect();
        user.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(user);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_have_aliases() {
        let home = tempfile::tempdir().unwrap();
        for name in ["base", "dev", "foundation/base", "foundation/dev"] {
            let p = load_profile(name, home.path()).unwrap();
            assert!(p.warnings.is_empty());
            assert_eq!(p.plan.session.context.module, "context-simple");
        }
        let dev = load_profile("dev", home.path()).unwrap().plan;
        assert!(dev.agents.contains_key("explorer"));
    }

    #[test]
    fn user_profiles_override_and_unknown_lists_available() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(profiles_dir(home.path())).unwrap();
        std::fs::write(
            profiles_dir(home.path()).join("mine.json"),
            r#"{"session":{"orchestrator":"loop-basic","context":"context-simple"},"providers":["provider-scripted"]}"#,
        )
        .unwrap();
        let p = load_profile("mine", home.path()).unwrap().plan;
        assert_eq!(p.providers[0].module, "provider-scripted");
        let err = load_profile("nope", home.path()).unwrap_err().to_string();
        assert!(err.contains("base, dev, mine"), "{err}");
        assert!(load_profile("../etc/passwd", home.path()).is_err());
    }
}
