//! A Confluent-compatible Schema Registry client: registers `avro/webhook_event.avsc` under
//! `{topic}-value` on a topic's first use and caches the id.

use super::SCHEMA_JSON;
use crate::configuration::SchemaRegistrySettings;
use parking_lot::RwLock;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Longest piece of a registry's error body repeated in our error detail.
const MAX_ERROR_BODY: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the schema registry could not be reached: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("the schema registry did not answer within kafka.ack_timeout")]
    Timeout,
    #[error("the schema registry answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the schema registry's answer has no schema id")]
    BadAnswer,
}

pub struct RegistryClient {
    http: reqwest::Client,
    /// Without a trailing slash.
    base_url: String,
    basic_auth: Option<(String, SecretString)>,
    /// Subject → schema id, filled on first use of each topic.
    ids: RwLock<HashMap<String, u32>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(settings: &SchemaRegistrySettings) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(RegistryError::Unreachable)?;
        Ok(Self {
            http,
            base_url: settings.url.trim_end_matches('/').to_string(),
            basic_auth: settings.basic_auth(),
            ids: RwLock::new(HashMap::new()),
        })
    }

    /// The id of hookstream's schema under `subject`, registering it the first time. The registry
    /// answers an already registered schema with its existing id, so this is idempotent.
    pub async fn schema_id(&self, subject: &str) -> Result<u32, RegistryError> {
        if let Some(id) = self.ids.read().get(subject) {
            return Ok(*id);
        }
        let url = format!("{}/subjects/{subject}/versions", self.base_url);
        let body = serde_json::json!({ "schema": SCHEMA_JSON, "schemaType": "AVRO" });
        let answer: serde_json::Value = self
            .send(
                self.http
                    .post(url)
                    .header("content-type", CONTENT_TYPE)
                    .json(&body),
            )
            .await?;
        let id = answer
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or(RegistryError::BadAnswer)?;
        self.ids.write().insert(subject.to_string(), id);
        tracing::info!(subject, id, "registered schema");
        Ok(id)
    }

    /// Whether the registry answers (`GET /subjects`).
    pub async fn probe(&self) -> bool {
        let url = format!("{}/subjects", self.base_url);
        self.send::<serde_json::Value>(self.http.get(url))
            .await
            .is_ok()
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<T, RegistryError> {
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password.expose_secret()));
        }
        let response = request
            .header("accept", CONTENT_TYPE)
            .send()
            .await
            .map_err(RegistryError::Unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RegistryError::Status {
                status: status.as_u16(),
                body: body.chars().take(MAX_ERROR_BODY).collect(),
            });
        }
        response.json().await.map_err(|_| RegistryError::BadAnswer)
    }
}
