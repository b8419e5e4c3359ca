//! The profiles sessions can be created with. (The OpenAPI document is
//! served by [`crate::openapi`].)

use axum::Json;
use axum::extract::State;
use weft_core::profiles::list_profiles;

use crate::model::ProfileEntry;
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
