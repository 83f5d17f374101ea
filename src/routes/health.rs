//! Liveness and readiness.

use super::AppState;
use crate::error::ApiError;
use actix_web::{web, HttpResponse, ResponseError};
use std::sync::atomic::Ordering;

/// 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 while the broker answers metadata requests (checked on a timer, not per probe).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.broker_ready.load(Ordering::Relaxed) {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        ApiError::BrokerNotReady.error_response()
    }
}
