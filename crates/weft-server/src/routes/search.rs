//! Full-text search over the messages of every session the store holds.

use axum::Json;
use axum::extract::State;
use weft_core::store::SearchQuery;

use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::model::{SearchHitInfo, SearchParams};
use crate::routes::AppState;

/// The messages containing every word of `q` (case-insensitive), each
/// with its session and a snippet around the match.
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
    let hits = core
        .store()
        .search(&SearchQuery {
            text: text.to_string(),
            project: params.project.filter(|p| !p.is_empty()),
            limit,
        })
        .await?;
    Ok(Json(hits.into_iter().map(SearchHitInfo::from).collect()))
}
