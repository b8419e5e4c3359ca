//! # weft-providers
//!
//! weft's LLM providers, each an implementation of
//! [`weft_core::provider::Provider`]:
//!
//! - `provider-scripted` ([`scripted`]): deterministic responses from a
//!   script, for tests, demos and benchmarks; also an `echo` mode.
//!
//! [`register`] adds every provider module to a
//! [`weft_core::registry::ModuleRegistry`].
//!
//! What it must not know about: storage, sessions, HTTP servers, terminals.

#![warn(missing_docs)]

pub mod scripted;

use weft_core::registry::ModuleRegistry;

/// Registers every provider module of this crate.
pub fn register(registry: &mut ModuleRegistry) {
    scripted::register(registry);
}
