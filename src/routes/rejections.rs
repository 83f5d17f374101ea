//! `GET /rejections[?provider=NAME]` (admin port): the latest rejected deliveries, newest first.

use super::AppState;
use crate::error::ApiError;
use crate::rejections::{Listing, Rejections};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

/// 200 with `{"kept_per_provider": N, "rejections": [...]}`; 400 `invalid_query` for a query it
/// does not take, 404 `unknown_provider` for a provider that is not configured.
pub async fn rejections(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match listing(req.query_string(), &state.rejections) {
        Ok(listing) => HttpResponse::Ok().json(listing),
        Err(error) => error.error_response(),
    }
}

fn listing(query: &str, rejections: &Rejections) -> Result<Listing, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::InvalidQuery(format!("the query string cannot be read: {e}")))?
        .into_inner();
    let mut provider = None;
    for (key, value) in pairs {
        match key.as_str() {
            "provider" if provider.is_none() => provider = Some(value),
            "provider" => {
                return Err(ApiError::InvalidQuery(
                    "provider is given more than once: give one, or none for every provider".into(),
                ))
            }
            _ => {
                return Err(ApiError::InvalidQuery(format!(
                    "unknown query parameter {:?}: the only one is provider",
                    truncated(&key)
                )))
            }
        }
    }
    let entries = rejections
        .newest_first(provider.as_deref())
        .ok_or_else(|| {
            ApiError::UnknownProvider(truncated(provider.as_deref().unwrap_or_default()))
        })?;
    Ok(Listing {
        kept_per_provider: rejections.per_provider(),
        rejections: entries,
    })
}

/// At most 64 characters of what the client sent, for an error that names it.
fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}
