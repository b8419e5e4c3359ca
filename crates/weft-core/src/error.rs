//! [`SessionError`]: what running a session can fail with.

use crate::id::IdError;
use crate::mount::MountError;
use crate::provider::ProviderError;
use crate::store::StoreError;

/// What a session operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Storage failed (including a conflict with another writer).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The mount plan or a module failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// An id was malformed.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// A branch or mail operation was refused.
    #[error(transparent)]
    Branch(#[from] crate::branches::BranchError),
    /// The turn was cancelled.
    #[error("the turn was cancelled")]
    Cancelled,
    /// A hook denied the prompt.
    #[error("the prompt was denied by a hook: {0}")]
    Denied(String),
    /// No provider is mounted.
    #[error(
        "no provider is mounted: name one with --provider (anthropic, openai, ollama, scripted) or add one to the mount plan's providers"
    )]
    NoProvider,
    /// `execute` was called before `initialize`, or after `cleanup`.
    #[error("the session is not initialized: call initialize() first")]
    NotInitialized,
    /// The session has ended (cleanup ran).
    #[error("the session has ended: resume it to run more prompts")]
    Ended,
    /// A request was malformed.
    #[error("{0}")]
    Invalid(String),
    /// A structured turn's response format was refused (refused before
    /// any model call).
    #[error(transparent)]
    InvalidSchema(#[from] crate::structured::SchemaError),
    /// A structured turn's answer did not match its schema, even after one
    /// repair round-trip.
    #[error(
        "the model's answer did not match the response schema after one repair attempt ({}): simplify the schema or use a more capable model",
        errors.join("; ")
    )]
    StructuredOutput {
        /// What was wrong with the last answer (`/path: what`).
        errors: Vec<String>,
    },
}

impl SessionError {
    /// Whether the error is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            SessionError::Cancelled | SessionError::Provider(ProviderError::Cancelled)
        )
    }
}
