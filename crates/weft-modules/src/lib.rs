//! Every module weft ships, in one registry, as the `weft` CLI, `weft serve`
//! and the Python package mount them.
//!
//! This crate owns one decision: which module constructors a weft front end
//! offers (core, providers, tools, MCP) and what the file tools must never
//! touch (weft's home and the store's data: config, tokens, other sessions'
//! logs). It knows nothing about commands, HTTP or Python; those front ends
//! call [`full_registry`] with the [`tool_access`] they decide on (the
//! daemon narrows it further with approvals).
//!
//! ```
//! let home = std::env::temp_dir().join("weft-modules-doc");
//! let store = weft_store::StoreConfig::default();
//! let registry = weft_modules::full_registry(weft_modules::tool_access(&home, &store));
//! assert!(registry.knows("tool-filesystem") && registry.knows("provider-anthropic"));
//! ```

use std::path::{Path, PathBuf};

use weft_core::registry::ModuleRegistry;
use weft_store::StoreConfig;
use weft_tools::ToolAccess;

/// Every module weft ships: core, providers, tools (the file tools under
/// `access`, see [`tool_access`]) and MCP.
pub fn full_registry(access: ToolAccess) -> ModuleRegistry {
    let mut registry = ModuleRegistry::with_core_modules();
    weft_providers::register(&mut registry);
    weft_tools::register_with(&mut registry, access);
    weft_mcp::register(&mut registry);
    registry
}

/// What the file tools may touch: never weft's `home` nor the store's data
/// (a relative store path is under `home`; a sqlite database's `-wal`,
/// `-shm` and `-journal` files beside it), whatever path, link or pattern
/// leads there. Everything else is allowed: front ends that serve someone
/// else than the account's owner narrow it further.
pub fn tool_access(home: &Path, store: &StoreConfig) -> ToolAccess {
    let mut access = ToolAccess::new().protect(home);
    if let Some(path) = &store.path {
        let path = home.join(path);
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            access = access.protect(PathBuf::from(side));
        }
        access = access.protect(path);
    }
    access
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_and_a_sqlite_database_with_its_journals_are_protected() {
        let home = tempfile::tempdir().unwrap();
        let store = StoreConfig {
            kind: weft_store::StoreKind::Sqlite,
            path: Some("db/weft.sqlite".into()),
            ..StoreConfig::default()
        };
        let access = tool_access(home.path(), &store);
        let home = home.path().canonicalize().unwrap();
        assert!(access.protected_dir(&home.join("config.toml")).is_some());
        let outside = tempfile::tempdir().unwrap();
        let outside = outside.path().canonicalize().unwrap();
        let db = outside.join("weft.sqlite");
        let store = StoreConfig {
            kind: weft_store::StoreKind::Sqlite,
            path: Some(db.clone()),
            ..StoreConfig::default()
        };
        let access = tool_access(&home, &store);
        for name in [
            "weft.sqlite",
            "weft.sqlite-wal",
            "weft.sqlite-shm",
            "weft.sqlite-journal",
        ] {
            assert!(
                access.protected_dir(&outside.join(name)).is_some(),
                "{name}"
            );
        }
        assert!(access.protected_dir(&outside.join("notes.txt")).is_none());
    }

    #[test]
    fn every_shipped_module_kind_is_registered() {
        let registry = full_registry(ToolAccess::new());
        for name in [
            "tool-filesystem",
            "tool-bash",
            "tool-mcp",
            "provider-anthropic",
            "provider-openai",
        ] {
            assert!(registry.knows(name), "{name}");
        }
        assert!(registry.provider_names().len() >= 2);
    }
}
