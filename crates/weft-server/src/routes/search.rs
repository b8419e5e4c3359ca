//! Full-text search over the messages of every session the store holds.

use axum::Json;
use axum::extract::State;
use weft_core::store::SearchQuery;

use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::model::{SearchHitInfo, SearchParams};
use crate::routes::AppState;
use crate::tenancy::Caller;
use crate::tokens::Scope;

/// The most hits a tenant's search reads from the store to fill its page
/// with hits from its own sessions.
const MAX_SCANNED_HITS: usize = 20_000;

/// The messages containing every word of `q` (case-insensitive), each
/// with its session and a snippet around the match. A tenant's token
/// finds only its tenant's sessions.
#[utoipa::path(
    get, path = "/api/v1/search", tag = "sessions",
    params(SearchParams),
    responses(
        (status = 200, description = "The matching messages", body = Vec<SearchHitInfo>),
        (status = 422, description = "`q` is empty or too long, or `limit` is out of range", body = ErrorBody),
    )
)]
pub(crate) async fn search(
    State(core): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<Vec<SearchHitInfo>>, ApiError> {
    let text = params.q.trim();
    if text.is_empty() || params.q.chars().count() > 500 {
        return Err(ApiError::unprocessable(
            "invalid query parameter: q: give one to 500 characters of words to find",
        ));
    }
    let limit = params.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::unprocessable(
            "invalid query parameter: limit: give a number of hits from 1 to 500",
        ));
    }
    let project = params.project.filter(|p| !p.is_empty());
    if caller.scope == Scope::Admin {
        let hits = core
            .store()
            .search(&SearchQuery {
                text: text.to_string(),
                project,
                limit,
            })
            .await?;
        return Ok(Json(hits.into_iter().map(SearchHitInfo::from).collect()));
    }
    // Hits come newest first across every tenant: read more until the page
    // is full of this tenant's hits or the store has no more.
    let mut scanned = limit;
    // Whether the caller may see a session, kept across the wider reads.
    let mut seen = std::collections::HashMap::new();
    loop {
        let hits = core
            .store()
            .search(&SearchQuery {
                text: text.to_string(),
                project: project.clone(),
                limit: scanned,
            })
            .await?;
        let exhausted = hits.len() < scanned || scanned >= MAX_SCANNED_HITS;
        let mut visible = Vec::new();
        for hit in hits {
            let ok = match seen.get(&hit.session_id) {
                Some(ok) => *ok,
                None => {
                    let ok = match core.store().get(&hit.session_id).await {
                        Ok(meta) => caller.can_see(&meta),
                        Err(_) => false,
                    };
                    seen.insert(hit.session_id.clone(), ok);
                    ok
                }
            };
            if ok {
                visible.push(SearchHitInfo::from(hit));
                if visible.len() == limit {
                    break;
                }
            }
        }
        if visible.len() == limit || exhausted {
            return Ok(Json(visible));
        }
        scanned = (scanned * 4).min(MAX_SCANNED_HITS);
    }
}
