//! The HTTP handlers, by area: [`sessions`] (CRUD and lifecycle),
//! [`messages`] (transcript, prompts, streams), [`branches`] (branches,
//! mail, `concat_messages`), [`state`] (session state), [`agentkernel`]
//! (`/run`, `/api/v1/chat`, agents, health), [`search`] (full-text search) and [`docs`] (profiles and the
//! OpenAPI document).

pub(crate) mod agentkernel;
pub(crate) mod branches;
pub(crate) mod docs;
pub(crate) mod messages;
pub(crate) mod search;
pub(crate) mod sessions;
pub(crate) mod state;

use std::sync::Arc;

use crate::live::Core;

/// The state every handler gets.
pub(crate) type AppState = Arc<Core>;
