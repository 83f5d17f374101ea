//! Confluent wire format through a Schema Registry, against an HTTP test double of the
//! registry's REST API (register, look up by id, list subjects).

use crate::support::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use apache_avro::types::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

const USER: &str = "registry-user";
const PASSWORD: &str = "registry-password";

#[derive(Default)]
struct Registry {
    /// Schema texts; the id is the index + 1.
    schemas: Mutex<Vec<String>>,
    subjects: Mutex<HashMap<String, Vec<u32>>>,
    registrations: AtomicUsize,
    failing: AtomicBool,
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
async fn start_registry() -> (String, web::Data<Registry>) {
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

async fn app_with_registry(url: &str) -> TestApp {
    spawn_app_with(|s| {
        s.schema_registry.url = url.into();
        s.schema_registry.username = USER.into();
        s.schema_registry.set_password(PASSWORD);
    })
    .await
}

#[tokio::test]
async fn values_are_confluent_framed_and_decode_with_the_schema_fetched_back() {
    let (url, registry) = start_registry().await;
    let app = app_with_registry(&url).await;
    let topic = app.topic("livesession", "js_error");
    for i in 0..2 {
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = format!("sr-{i}").into()
        });
        let reply = app.post_signed("livesession", body).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(
        registry.registrations.load(Ordering::Relaxed),
        1,
        "registered once per topic"
    );
    let subjects = registry.subjects.lock().unwrap().clone();
    assert_eq!(
        subjects.keys().collect::<Vec<_>>(),
        vec![&format!("{topic}-value")]
    );

    let messages = app.read_messages(&topic, 2).await;
    let client = reqwest::Client::new();
    for (i, message) in messages.iter().enumerate() {
        let value = rdkafka::Message::payload(message).expect("value");
        assert_eq!(value[0], 0, "Confluent magic byte");
        let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        let fetched: serde_json::Value = client
            .get(format!("{url}/schemas/ids/{id}"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("lookup")
            .json()
            .await
            .expect("lookup JSON");
        let schema = apache_avro::Schema::parse_str(fetched["schema"].as_str().expect("schema"))
            .expect("fetched schema parses");
        let mut datum = &value[5..];
        let Value::Record(fields) =
            apache_avro::from_avro_datum(&schema, &mut datum, None).expect("decodes")
        else {
            panic!("record")
        };
        assert!(datum.is_empty());
        let fields: HashMap<_, _> = fields.into_iter().collect();
        assert_eq!(string(&fields["event_id"]), format!("sr-{i}"));
        assert_eq!(string(&fields["event_name"]), "js_error");
    }
}

#[tokio::test]
async fn a_registry_failure_is_503_never_an_unframed_message() {
    let (url, registry) = start_registry().await;
    registry.failing.store(true, Ordering::Relaxed);
    let app = app_with_registry(&url).await;
    let reply = app
        .post_signed("livesession", fixture("livesession", "js_error"))
        .await;
    reply.assert_error(503, "schema_registry_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
    app.assert_nothing_produced().await;
    wait_for_error(&app, "/readyz", 503, "schema_registry_unavailable")
        .await
        .assert_error(503, "schema_registry_unavailable");

    // The registry recovers: the provider's retry goes through.
    registry.failing.store(false, Ordering::Relaxed);
    let reply = app
        .post_signed("livesession", fixture("livesession", "js_error"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(wait_for_status(&app, "/readyz", 200).await.status, 200);
}

#[tokio::test]
async fn wrong_registry_credentials_are_503() {
    let (url, _registry) = start_registry().await;
    let app = spawn_app_with(|s| {
        s.schema_registry.url = url.clone();
        s.schema_registry.username = USER.into();
        s.schema_registry.set_password("wrong");
    })
    .await;
    let detail = app
        .post_signed("livesession", fixture("livesession", "js_error"))
        .await
        .assert_error(503, "schema_registry_unavailable");
    assert!(detail.contains("401"), "{detail}");
    assert!(
        !detail.contains("wrong"),
        "no credentials in the detail: {detail}"
    );
    app.assert_nothing_produced().await;
}

impl Registry {
    /// Loses every schema, as a wiped registry does, and gives id 1 to another schema.
    fn lose_state(&self) {
        *self.schemas.lock().unwrap() = vec![r#"{"type":"string"}"#.to_string()];
        self.subjects.lock().unwrap().clear();
    }
}

/// The schema a Confluent-framed message names, fetched from the registry double.
async fn schema_of(url: &str, message: &rdkafka::message::OwnedMessage) -> apache_avro::Schema {
    let value = rdkafka::Message::payload(message).expect("value");
    let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
    let fetched: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/schemas/ids/{id}"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("lookup")
        .json()
        .await
        .expect("lookup JSON");
    apache_avro::Schema::parse_str(fetched["schema"].as_str().expect("schema")).expect("parses")
}

fn decodes_with(schema: &apache_avro::Schema, message: &rdkafka::message::OwnedMessage) -> bool {
    let value = rdkafka::Message::payload(message).expect("value");
    let mut datum = &value[5..];
    matches!(
        apache_avro::from_avro_datum(schema, &mut datum, None),
        Ok(Value::Record(_))
    ) && datum.is_empty()
}

#[tokio::test]
async fn a_registry_that_lost_its_state_gets_the_schema_registered_again_before_the_next_write() {
    let (url, registry) = start_registry().await;
    let app = app_with_registry(&url).await;
    let send = |id: &'static str| {
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = id.into()
        });
        app.post_signed("livesession", body)
    };
    assert_eq!(send("before").await.status, 200);
    registry.lose_state();
    // The readiness check notices and registers again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while registry.registrations.load(Ordering::Relaxed) < 2 {
        assert!(std::time::Instant::now() < deadline, "not registered again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reply = send("after").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app
        .read_messages(&app.topic("livesession", "js_error"), 2)
        .await;
    let after = messages
        .iter()
        .find(|m| headers_of(m)["hookstream-event-id"] == "after")
        .expect("the second record");
    let schema = schema_of(&url, after).await;
    assert!(
        decodes_with(&schema, after),
        "the record decodes with the schema its id names now"
    );
}

#[tokio::test]
async fn while_cached_ids_cannot_be_checked_writes_are_503() {
    let (url, registry) = start_registry().await;
    let app = app_with_registry(&url).await;
    let body = |id: &str| {
        with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = id.into()
        })
    };
    assert_eq!(
        app.post_signed("livesession", body("first")).await.status,
        200
    );
    registry.lose_state();
    registry.failing.store(true, Ordering::Relaxed);
    wait_for_error(&app, "/readyz", 503, "schema_registry_unavailable").await;
    app.post_signed("livesession", body("while-down"))
        .await
        .assert_error(503, "schema_registry_unavailable");

    registry.failing.store(false, Ordering::Relaxed);
    let reply = app.post_signed("livesession", body("back")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app
        .read_messages(&app.topic("livesession", "js_error"), 2)
        .await;
    let back = messages
        .iter()
        .find(|m| headers_of(m)["hookstream-event-id"] == "back")
        .expect("the record written after the registry came back");
    assert!(decodes_with(&schema_of(&url, back).await, back));
}
