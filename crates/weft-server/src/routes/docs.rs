//! Profiles and the OpenAPI document.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use utoipa::OpenApi;
use weft_core::profiles::list_profiles;

use crate::model::ProfileEntry;
use crate::openapi::ApiDoc;
use crate::routes::AppState;

/// The profiles sessions can be created with.
#[utoipa::path(
    get, path = "/api/v1/profiles", tag = "sessions",
    responses((status = 200, description = "Built-in profiles, then user profiles", body = Vec<ProfileEntry>))
)]
pub(crate) async fn profiles(State(core): State<AppState>) -> Json<Vec<ProfileEntry>> {
    Json(
        list_profiles(&core.ctx.home)
            .into_iter()
            .map(|p| ProfileEntry {
                name: p.name,
                source: p.source,
                description: p.description,
            })
            .collect(),
    )
}

/// This API's OpenAPI document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Json(DOC.get_or_init(ApiDoc::openapi).clone())
}
