//! Liveness and readiness.

use super::AppState;
use crate::error::ApiError;
use actix_web::{web, HttpResponse, ResponseError};

/// 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 while the broker (and the Schema Registry, when configured) answered the last check,
/// with `warnings` when some topics cannot be created; 503 with the reason otherwise, naming
/// what failed when that is known.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.readiness.get() {
        Ok(()) => {
            let warnings = state.readiness.warnings();
            if warnings.is_empty() {
                HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
            } else {
                HttpResponse::Ok()
                    .json(serde_json::json!({ "status": "ready", "warnings": warnings }))
            }
        }
        Err(why) => ApiError::NotReady {
            why,
            cause: state.readiness.cause(why),
        }
        .error_response(),
    }
}
