//! Full-text search over the messages of every session:
//! [`SearchParams`] and [`SearchHitInfo`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use weft_core::store::SearchHit;

/// `GET /api/v1/search` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The words to find (every word must occur in a message,
    /// case-insensitively).
    #[param(min_length = 1, max_length = 500)]
    pub q: String,
    /// Only sessions of this project (its slug).
    pub project: Option<String>,
    /// At most this many hits (1-500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// One message that matched a search.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchHitInfo {
    /// The session.
    pub session_id: String,
    /// Its name.
    pub session_name: Option<String>,
    /// Its project slug.
    pub project: String,
    /// The seq of the message's record.
    pub seq: u64,
    /// The message's branch.
    pub branch: String,
    /// `user`, `assistant`, `system` or `tool`.
    pub role: String,
    /// Up to 160 characters around the first match.
    pub snippet: String,
    /// When the message was written.
    pub timestamp: DateTime<Utc>,
}

impl From<SearchHit> for SearchHitInfo {
    fn from(hit: SearchHit) -> Self {
        Self {
            session_id: hit.session_id.to_string(),
            session_name: hit.session_name,
            project: hit.project,
            seq: hit.seq,
            branch: hit.branch,
            role: serde_json::to_value(hit.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            snippet: hit.snippet,
            timestamp: hit.timestamp,
        }
    }
}
