//! A Confluent-compatible Schema Registry client: registers `avro/webhook_event.avsc` under
//! `{topic}-value` on a topic's first use and caches the id.
//!
//! A cached id is only as good as the registry's memory: a registry wiped, or restored from an
//! older backup, may no longer know the id, or know it as another schema — and a record framed
//! with it is acknowledged by the broker yet unreadable. So cached ids are checked again
//! (`GET /schemas/ids/{id}`, compared by the schema's fingerprint) on every readiness interval
//! ([`RegistryClient::probe`]), and after any registry error every cached id must pass that check
//! before it is used again; until it does, writes for its subject fail (503
//! `schema_registry_unavailable`). An id that names another schema is dropped and the schema
//! registered again.

use super::{canonical, schema_json, SCHEMA_JSON};
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
    ids: RwLock<HashMap<String, Cached>>,
    /// The fingerprint (CRC-64-AVRO of the canonical form) of hookstream's schema.
    fingerprint: [u8; 8],
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    id: u32,
    /// Confirmed since the last registry error: usable without asking the registry.
    verified: bool,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `http://user:password@host/x` → (`http://host/x`, the decoded user and password).
fn split_userinfo(url: &str) -> (String, Option<(String, SecretString)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let start = scheme_end + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return (url.to_string(), None);
    };
    let (user, password) = authority[..at]
        .split_once(':')
        .unwrap_or((&authority[..at], ""));
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    (
        format!("{}{}", &url[..start], &rest[at + 1..]),
        Some((decode(user), SecretString::from(decode(password)))),
    )
}

impl RegistryClient {
    pub fn new(settings: &SchemaRegistrySettings) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(RegistryError::Unreachable)?;
        // Credentials in the URL become basic auth, so that no request's URL (which errors
        // print) carries them.
        let (base_url, url_auth) = split_userinfo(settings.url.trim_end_matches('/'));
        Ok(Self {
            http,
            base_url,
            basic_auth: settings.basic_auth().or(url_auth),
            ids: RwLock::new(HashMap::new()),
            fingerprint: canonical::fingerprint(&schema_json()),
        })
    }

    /// The id of hookstream's schema under `subject`, registering it the first time. The registry
    /// answers an already registered schema with its existing id, so this is idempotent.
    pub async fn schema_id(&self, subject: &str) -> Result<u32, RegistryError> {
        let cached = self.ids.read().get(subject).copied();
        match cached {
            Some(Cached { id, verified: true }) => Ok(id),
            Some(Cached { id, .. }) if self.names_our_schema(id).await? => {
                self.cache(subject, id);
                Ok(id)
            }
            _ => self.register(subject).await,
        }
    }

    /// Checks every cached id against the registry; an id that no longer names hookstream's
    /// schema is dropped and the schema registered again.
    async fn recheck(&self) -> Result<(), RegistryError> {
        let cached: Vec<(String, u32)> = self
            .ids
            .read()
            .iter()
            .map(|(subject, c)| (subject.clone(), c.id))
            .collect();
        for (subject, id) in cached {
            if self.names_our_schema(id).await? {
                self.cache(&subject, id);
            } else {
                tracing::warn!(
                    subject,
                    id,
                    "the schema registry no longer knows schema id {id} as hookstream's schema: registering it again"
                );
                self.ids.write().remove(&subject);
                self.register(&subject).await?;
            }
        }
        Ok(())
    }

    /// Whether the registry knows `id` as hookstream's schema (`false` when it does not know the
    /// id at all).
    async fn names_our_schema(&self, id: u32) -> Result<bool, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let answer: serde_json::Value = match self.send(self.http.get(url)).await {
            Ok(answer) => answer,
            Err(RegistryError::Status { status: 404, .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let text = answer
            .get("schema")
            .and_then(serde_json::Value::as_str)
            .ok_or(RegistryError::BadAnswer)?;
        Ok(serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|theirs| canonical::fingerprint(&theirs) == self.fingerprint))
    }

    fn cache(&self, subject: &str, id: u32) {
        self.ids
            .write()
            .insert(subject.to_string(), Cached { id, verified: true });
    }

    /// After a registry error: every cached id must be confirmed before it is used again.
    fn distrust_cache(&self) {
        for cached in self.ids.write().values_mut() {
            cached.verified = false;
        }
    }

    async fn register(&self, subject: &str) -> Result<u32, RegistryError> {
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
        self.cache(subject, id);
        tracing::info!(subject, id, "registered schema");
        Ok(id)
    }

    /// The number of subjects the registry knows (`GET /subjects`): it answers, and the
    /// credentials are accepted.
    pub async fn subjects(&self) -> Result<usize, RegistryError> {
        let url = format!("{}/subjects", self.base_url);
        let subjects: Vec<serde_json::Value> = self.send(self.http.get(url)).await?;
        Ok(subjects.len())
    }

    /// Whether the registry answers (`GET /subjects`) and still knows every cached id as
    /// hookstream's schema (re-registering where it does not).
    pub async fn probe(&self) -> bool {
        let url = format!("{}/subjects", self.base_url);
        self.send::<serde_json::Value>(self.http.get(url))
            .await
            .is_ok()
            && self.recheck().await.is_ok()
    }

    /// Sends a request; any failure (but a 404) distrusts the cached ids.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, RegistryError> {
        let result = self.send_once(request).await;
        if matches!(&result, Err(e) if !matches!(e, RegistryError::Status { status: 404, .. })) {
            self.distrust_cache();
        }
        result
    }

    async fn send_once<T: serde::de::DeserializeOwned>(
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

#[cfg(test)]
mod tests {
    use super::split_userinfo;
    use secrecy::ExposeSecret;

    #[test]
    fn credentials_in_the_url_become_basic_auth_and_leave_the_url() {
        let (url, auth) = split_userinfo("https://us%40er:pa%3Ass@registry:8081/base");
        assert_eq!(url, "https://registry:8081/base");
        let (user, password) = auth.expect("credentials");
        assert_eq!(user, "us@er");
        assert_eq!(password.expose_secret(), "pa:ss");
        let (url, auth) = split_userinfo("http://registry:8081");
        assert_eq!(url, "http://registry:8081");
        assert!(auth.is_none());
    }
}
