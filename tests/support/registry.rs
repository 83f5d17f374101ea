//! An HTTP test double of a Confluent Schema Registry's REST API: register a schema under a
//! subject, look one up by id, list subjects; basic auth; a switch that makes it fail.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

pub const USER: &str = "registry-user";
pub const PASSWORD: &str = "registry-password";

#[derive(Default)]
pub struct Registry {
    /// Schema texts; the id is the index + 1.
    pub schemas: Mutex<Vec<String>>,
    pub subjects: Mutex<HashMap<String, Vec<u32>>>,
    pub registrations: AtomicUsize,
    pub failing: AtomicBool,
}

fn authorized(req: &HttpRequest) -> bool {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str())
}

fn refuse(req: &HttpRequest, registry: &Registry) -> Option<HttpResponse> {
    if registry.failing.load(Ordering::Relaxed) {
        return Some(
            HttpResponse::InternalServerError()
                .json(serde_json::json!({"error_code": 50001, "message": "store unavailable"})),
        );
    }
    if !authorized(req) {
        return Some(
            HttpResponse::Unauthorized()
                .json(serde_json::json!({"error_code": 401, "message": "unauthorized"})),
        );
    }
    None
}

async fn register(
    req: HttpRequest,
    subject: web::Path<String>,
    body: web::Json<serde_json::Value>,
    registry: web::Data<Registry>,
) -> HttpResponse {
    if let Some(refusal) = refuse(&req, &registry) {
        return refusal;
    }
    let Some(schema) = body["schema"].as_str() else {
        return HttpResponse::UnprocessableEntity().finish();
    };
    if apache_avro::Schema::parse_str(schema).is_err() {
        return HttpResponse::UnprocessableEntity()
            .json(serde_json::json!({"error_code": 42201, "message": "invalid schema"}));
    }
    registry.registrations.fetch_add(1, Ordering::Relaxed);
    let mut schemas = registry.schemas.lock().unwrap();
    let id = match schemas.iter().position(|s| s == schema) {
        Some(i) => i as u32 + 1,
        None => {
            schemas.push(schema.to_string());
            schemas.len() as u32
        }
    };
    let mut subjects = registry.subjects.lock().unwrap();
    let versions = subjects.entry(subject.into_inner()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    HttpResponse::Ok()
        .content_type("application/vnd.schemaregistry.v1+json")
        .json(serde_json::json!({ "id": id }))
}

async fn schema_by_id(
    req: HttpRequest,
    id: web::Path<u32>,
    registry: web::Data<Registry>,
) -> HttpResponse {
    if let Some(refusal) = refuse(&req, &registry) {
        return refusal;
    }
    let schemas = registry.schemas.lock().unwrap();
    match schemas.get((*id as usize).wrapping_sub(1)) {
        Some(schema) => HttpResponse::Ok().json(serde_json::json!({ "schema": schema })),
        None => HttpResponse::NotFound()
            .json(serde_json::json!({"error_code": 40403, "message": "Schema not found"})),
    }
}

async fn subjects(req: HttpRequest, registry: web::Data<Registry>) -> HttpResponse {
    if let Some(refusal) = refuse(&req, &registry) {
        return refusal;
    }
    let names: Vec<String> = registry.subjects.lock().unwrap().keys().cloned().collect();
    HttpResponse::Ok().json(names)
}

/// Starts the double; returns its base URL and state.
pub async fn start_registry() -> (String, web::Data<Registry>) {
    let registry = web::Data::new(Registry::default());
    let state = registry.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().content_type(|_| true))
            .route("/subjects/{subject}/versions", web::post().to(register))
            .route("/schemas/ids/{id}", web::get().to(schema_by_id))
            .route("/subjects", web::get().to(subjects))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("registry double binds");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), registry)
}
