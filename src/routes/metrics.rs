//! `GET /metrics` in the Prometheus text format.

use super::AppState;
use actix_web::{web, HttpResponse};

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    state.ingest.measure();
    match m.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => HttpResponse::InternalServerError().json(serde_json::json!({
            "error": "internal_error", "detail": format!("metrics could not be rendered: {e}"),
        })),
    }
}
