//! The API's request and response bodies.
//!
//! Responses are camelCase; request bodies take camelCase keys and the
//! snake_case ones amplifierd clients send (`profile_name`, …). Message
//! content blocks keep weft's own wire shape (the one in the session log),
//! and agentkernel's `/run` answers with its own `session_id` key.
//!
//! Branches, mail and state (issue 6) follow the same conventions:
//! [`BranchInfo`] / [`BranchDetail`], [`NewBranchRequest`],
//! [`SendMailRequest`] / [`MailInfo`], [`StateEntry`] / [`SetStateRequest`]
//! (a state value is sent wrapped: `{"value": <any JSON>}`).
//!
//! The types live in submodules by area and are re-exported here, so
//! `crate::model::X` names each of them.

mod agentkernel;
mod branches;
mod content;
mod messages;
mod search;
mod sessions;

pub use agentkernel::*;
pub use branches::*;
pub(crate) use content::*;
pub use messages::*;
pub use search::*;
pub use sessions::*;

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use weft_core::message::{ContentBlock, Message};
use weft_core::session::{Mail, MailCategory, SessionMeta, SessionStatus};
use weft_core::view::{BranchView, LoggedMessage, PendingMail};

/// Whole numbers in request bodies: `3` and `3.0` alike (JSON Schema counts
/// both as integers, and so do JavaScript clients).
mod whole {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error};
    use serde_json::Number;

    /// The largest integer an f64 holds exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;

    fn from(n: &Number) -> Option<u64> {
        n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=EXACT).contains(f))
                .map(|f| f as u64)
        })
    }

    /// A whole number ≥ 0.
    pub(super) fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let n = Number::deserialize(d)?;
        from(&n).ok_or_else(|| D::Error::custom(format!("{n} is not a whole number ≥ 0")))
    }

    /// A count in a query string (`limit`): digits, where a count larger
    /// than any the server can hold means "all" (the largest it can).
    pub(super) fn query_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom(format!(
                "limit: {text:?} is not a whole number ≥ 0"
            )));
        }
        Ok(Some(text.parse().unwrap_or(usize::MAX)))
    }

    /// A whole number ≥ 0, or null.
    pub(super) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => from(&n)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number ≥ 0"))),
        }
    }
}
