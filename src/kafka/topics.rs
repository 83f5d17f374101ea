//! Topic management: which topic an event goes to (its own, or its provider's overflow topic
//! past `kafka.max_topics_per_provider`), creating topics through the Admin API once each, and
//! `hookstream topics create` for clusters that forbid the service account to.
//!
//! The sink asks [`Topics::ensure`] before every write; a failed write forgets its topic
//! ([`Topics::forget`]), so the retry checks again that it exists (a deleted or wiped topic is
//! created anew). Creation is single-flight: one CreateTopics request per topic at a time,
//! however many writes wait for it.

use super::client_errors::ClientHealth;
use super::error::{self, PublishError};
use super::producer_config;
use super::stats::StatsContext;
use crate::codes::FailureReason;
use crate::configuration::KafkaSettings;
use crate::internal_events::{InternalEvent, TopicCreated, TopicOverflowed};
use crate::metrics::Metrics;
use parking_lot::{Mutex, RwLock};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The last segment of a provider's overflow topic: upper case, which no event name has
/// ([`crate::naming::snake_case`] lowercases), so it can never be an event's own topic — nor
/// collide with one in Kafka's eyes (`.` and `_` alike).
const OVERFLOW_EVENT: &str = "OVERFLOW";

/// `{topic_prefix}.{provider}.OVERFLOW`: where a provider's events go once it has
/// `kafka.max_topics_per_provider` topics.
fn overflow_topic(event_topic_prefix: &str, provider: &str) -> String {
    format!("{event_topic_prefix}{provider}.{OVERFLOW_EVENT}")
}

/// How often a provider at its topic cap has the cluster's topics counted again (an operator
/// may have deleted some).
const RELIST_AT_CAP: Duration = Duration::from_secs(60);

/// The event topics of one provider that exist or are being created.
#[derive(Default)]
struct ProviderTopics {
    /// The cluster's at the last listing, and those reserved since: at most
    /// `max_topics_per_provider` beyond what the cluster already had.
    exist: HashSet<String>,
    /// `None` until the cluster's topics were first listed.
    listed_at: Option<Instant>,
}

/// The admin client and what this process knows of the cluster's topics.
pub(crate) struct Topics {
    /// Replaced when the certificate files change ([`Topics::rotate`]).
    admin: RwLock<Arc<AdminClient<StatsContext>>>,
    /// Kept to build the admin client again.
    admin_config: ClientConfig,
    /// Told of a creation the cluster denies, for readiness.
    client: Arc<ClientHealth>,
    /// Topics created or found to exist; checked before every write so each topic is created
    /// once per process.
    known: RwLock<HashSet<String>>,
    /// One lock per topic being created: concurrent first writes to a topic (or every write
    /// after a failure forgot it, during an outage) send one CreateTopics request, not one each.
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds a CreateTopics request and a metadata request.
    ack_timeout: Duration,
    partitions: i32,
    replication_factor: i32,
    /// `{topic_prefix}.`: event topics are `{topic_prefix}.{provider}.{event_name}`.
    event_topic_prefix: String,
    /// `kafka.max_topics_per_provider`: event names become topics, and a provider with
    /// free-form names (or a hostile sender of one) must not create them without limit.
    max_topics_per_provider: usize,
    /// Per provider, the event topics that exist or are being created (at most
    /// `max_topics_per_provider` each), and when the cluster's were last listed.
    provider_topics: Mutex<HashMap<&'static str, ProviderTopics>>,
    metrics: Arc<Metrics>,
}

impl Topics {
    pub(crate) fn new(
        settings: &KafkaSettings,
        admin_config: ClientConfig,
        client: Arc<ClientHealth>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let admin = admin_config.create_with_context(StatsContext::admin(client.clone()))?;
        Ok(Self {
            admin: RwLock::new(Arc::new(admin)),
            admin_config,
            client,
            known: RwLock::new(HashSet::new()),
            creating: Mutex::new(HashMap::new()),
            ack_timeout: settings.ack_timeout,
            partitions: settings.topic_partitions,
            replication_factor: settings.topic_replication_factor,
            event_topic_prefix: format!("{}.", settings.topic_prefix),
            max_topics_per_provider: settings.max_topics_per_provider,
            provider_topics: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// A new admin client from the configuration (its certificate files read again); `Err`
    /// builds nothing.
    pub(crate) fn build_admin(&self) -> Result<AdminClient<StatsContext>, String> {
        self.admin_config
            .create_with_context(StatsContext::admin(self.client.clone()))
            .map_err(|e| e.to_string())
    }

    /// Moves topic creation to `admin`.
    pub(crate) fn rotate(&self, admin: AdminClient<StatsContext>) {
        *self.admin.write() = Arc::new(admin);
    }

    /// The topic an event of `provider` goes to: `topic` (its own), unless that does not exist
    /// yet and the provider already has `kafka.max_topics_per_provider` topics in the cluster —
    /// then the provider's overflow topic ([`overflow_topic`]). The record keeps its real event
    /// name either way. `listing`: whether the cluster may be asked now (not while it is known
    /// to refuse the credentials: the write is refused at once anyway).
    pub(crate) async fn event_topic(
        &self,
        provider: &'static str,
        topic: String,
        deadline: Instant,
        listing: bool,
    ) -> String {
        if self.is_known(&topic) || !listing {
            return topic;
        }
        if let Some(decided) = self.reserve(provider, &topic) {
            return if decided {
                topic
            } else {
                self.overflow(provider, &topic)
            };
        }
        // First unknown topic of this provider in this process, or at the cap for a while:
        // count what the cluster has, so replicas and restarts share one cap.
        let listed = self.list_provider_topics(provider, deadline).await;
        let mut all = self.provider_topics.lock();
        let entry = all.entry(provider).or_default();
        if let Some(listed) = listed {
            // The cluster is the truth: topics deleted since are free again.
            entry.exist = listed.into_iter().collect();
        }
        entry.listed_at = Some(Instant::now());
        if entry.exist.contains(&topic) {
            return topic;
        }
        if entry.exist.len() < self.max_topics_per_provider {
            entry.exist.insert(topic.clone());
            return topic;
        }
        drop(all);
        self.overflow(provider, &topic)
    }

    /// `Some(true)`: `topic` may be written (known, or reserved under the cap); `Some(false)`:
    /// the provider is at its cap; `None`: the cluster should be listed first.
    fn reserve(&self, provider: &'static str, topic: &str) -> Option<bool> {
        let mut all = self.provider_topics.lock();
        let entry = all.get_mut(provider)?;
        if entry.exist.contains(topic) {
            return Some(true);
        }
        if entry.exist.len() < self.max_topics_per_provider {
            entry.exist.insert(topic.to_string());
            return Some(true);
        }
        match entry.listed_at {
            Some(at) if at.elapsed() < RELIST_AT_CAP => Some(false),
            _ => None,
        }
    }

    fn overflow(&self, provider: &'static str, topic: &str) -> String {
        let overflow = overflow_topic(&self.event_topic_prefix, provider);
        TopicOverflowed {
            provider,
            topic,
            overflow: &overflow,
            max: self.max_topics_per_provider,
        }
        .emit(&self.metrics);
        overflow
    }

    /// The names of the cluster's topics (`None`: no answer within `timeout`).
    async fn cluster_topics(&self, timeout: Duration) -> Option<Vec<String>> {
        let admin = self.admin.read().clone();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|m| {
                    m.topics()
                        .iter()
                        .map(|t| t.name().to_string())
                        .collect::<Vec<_>>()
                })
        })
        .await
        .ok()?
        .ok()
    }

    /// The event topics of `provider` the cluster has (`None`: no answer by `deadline`).
    async fn list_provider_topics(
        &self,
        provider: &'static str,
        deadline: Instant,
    ) -> Option<Vec<String>> {
        let names = self
            .cluster_topics(deadline.saturating_duration_since(Instant::now()))
            .await?;
        let own = format!("{}{provider}.", self.event_topic_prefix);
        Some(
            names
                .into_iter()
                .filter(|name| {
                    name.strip_prefix(&own)
                        .is_some_and(|event| !event.contains('.') && event != OVERFLOW_EVENT)
                })
                .collect(),
        )
    }

    /// `topic` exists, created by `create_by` if this process did not know it.
    pub(crate) async fn ensure(
        &self,
        topic: &str,
        provider: &'static str,
        create_by: Instant,
    ) -> Result<(), PublishError> {
        tokio::time::timeout_at(create_by, self.ensure_known(topic, provider))
            .await
            .map_err(|_| {
                PublishError::new(
                    FailureReason::Deadline,
                    "the topic could not be created within the write's deadline; nothing was written",
                )
            })?
    }

    /// Creates `topic` unless this process already knows it exists; one attempt at a time.
    async fn ensure_known(&self, topic: &str, provider: &'static str) -> Result<(), PublishError> {
        if self.is_known(topic) {
            return Ok(());
        }
        let lock = self
            .creating
            .lock()
            .entry(topic.to_string())
            .or_default()
            .clone();
        let created = {
            let _creating = lock.lock().await;
            if self.is_known(topic) {
                Ok(())
            } else {
                self.create(topic, provider).await
            }
        };
        // The lock is only needed while a creation is under way: the map holds no more entries
        // than there are creations at once.
        self.creating.lock().remove(topic);
        created?;
        self.known.write().insert(topic.to_string());
        Ok(())
    }

    async fn create(&self, topic: &str, provider: &'static str) -> Result<(), PublishError> {
        let new_topic = NewTopic::new(
            topic,
            self.partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        let options = AdminOptions::new()
            .request_timeout(Some(self.ack_timeout))
            .operation_timeout(Some(self.ack_timeout));
        let admin = self.admin.read().clone();
        let err = match admin.create_topics([&new_topic], &options).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => {
                    TopicCreated { provider, topic }.emit(&self.metrics);
                    return Ok(());
                }
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => return Ok(()),
                Some(Err((_, code))) => KafkaError::AdminOp(code),
            },
            Err(e) => e,
        };
        // A cluster that forbids topic creation denies it for a topic that exists too (Kafka
        // checks CREATE before existence): one an administrator created is written to.
        if error::is_denial(&err) && self.exists(topic).await {
            return Ok(());
        }
        let error = error::create_topic_failed(topic, &err);
        if error::is_denial(&err) {
            self.client.topic_denied(topic, &error.detail);
        }
        Err(error)
    }

    /// Whether the cluster's metadata lists `topic` (`false` without an answer in
    /// `kafka.ack_timeout`).
    async fn exists(&self, topic: &str) -> bool {
        self.cluster_topics(self.ack_timeout)
            .await
            .is_some_and(|names| names.iter().any(|name| name == topic))
    }

    /// Forgets that `topic` exists: the next write checks again.
    pub(crate) fn forget(&self, topic: &str) {
        self.known.write().remove(topic);
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known.read().contains(topic)
    }
}

/// How `hookstream topics create` left a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicCreation {
    Created,
    Exists,
}

/// Creates `topics` with `kafka.topic_partitions` and `kafka.topic_replication_factor`, in one
/// CreateTopics request with the configured credentials; the outcome of each, in order (`Err`
/// names the cause). `Err` alone: no answer from the cluster at all.
pub(crate) async fn create_topics(
    settings: &KafkaSettings,
    topics: &[String],
) -> Result<Vec<(String, Result<TopicCreation, String>)>, String> {
    let client = Arc::new(ClientHealth::new(None));
    let admin: AdminClient<StatsContext> = producer_config(settings)
        .create_with_context(StatsContext::admin(client.clone()))
        .map_err(|e| format!("cannot create the Kafka admin client: {e}"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            NewTopic::new(
                topic,
                settings.topic_partitions,
                TopicReplication::Fixed(settings.topic_replication_factor),
            )
        })
        .collect();
    // Bounded as the service's own creations are: a topic still being created then is
    // reported with the timeout, and found to exist by the next run.
    let options = AdminOptions::new()
        .request_timeout(Some(settings.ack_timeout))
        .operation_timeout(Some(settings.ack_timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| {
            // librdkafka's own words when it said why (a refused password, a failed
            // handshake), rather than the timeout that followed.
            let why = client
                .blocking()
                .map_or_else(|| e.to_string(), |failure| failure.to_string());
            format!(
                "cannot create topics on {}: {why}",
                crate::configuration::without_userinfo(&settings.brokers)
            )
        })?;
    let mut outcomes: HashMap<String, Result<TopicCreation, String>> = results
        .into_iter()
        .map(|result| match result {
            Ok(topic) => (topic, Ok(TopicCreation::Created)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => (topic, Ok(TopicCreation::Exists)),
            Err((topic, code)) => {
                let err = KafkaError::AdminOp(code);
                let cause = if error::is_denial(&err) {
                    format!("not authorized ({code:?}): these credentials need CREATE on the topic or the cluster")
                } else {
                    err.to_string()
                };
                (topic, Err(cause))
            }
        })
        .collect();
    Ok(topics
        .iter()
        .map(|topic| {
            let outcome = outcomes
                .remove(topic)
                .unwrap_or_else(|| Err("the cluster did not answer for this topic".to_string()));
            (topic.clone(), outcome)
        })
        .collect())
}
