//! Liveness and readiness.

use super::AppState;
use crate::error::ApiError;
use actix_web::{web, HttpResponse, ResponseError};

/// 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 while the broker (and the Schema Registry, when configured) answered the last check;
/// 503 with the reason otherwise.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.readiness.get() {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(why) => ApiError::NotReady(why).error_response(),
    }
}
