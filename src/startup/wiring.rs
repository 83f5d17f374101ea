//! The parts every command that talks to the cluster builds from the settings, built one way:
//! `serve`, `dead-letters replay`, `spool drain` and `config check --connect` alike.
//!
//! Each part is built on its own, so that a command needing one (or reporting each failure on
//! its own line, as `config check --connect` does) builds only that one; the metrics they
//! count into are made once, here.

use super::StartupError;
use crate::avro::{Framing, RegistryClient};
use crate::codes::{ErrorCode, FailureReason};
use crate::configuration::Settings;
use crate::dedupe::Dedupe;
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use std::sync::Arc;
use strum::IntoEnumIterator;

/// Builds the parts of one process from its settings, counting into one set of metrics.
pub(crate) struct Wiring<'s> {
    settings: &'s Settings,
    metrics: Arc<Metrics>,
}

impl<'s> Wiring<'s> {
    /// Metrics of its own (a command-line run's are not exported; its parts need somewhere to
    /// count). `providers`: the series created at zero for them.
    pub(crate) fn new(settings: &'s Settings, providers: &[&str]) -> Result<Self, StartupError> {
        let metrics = Arc::new(Metrics::new()?);
        initialize_series(&metrics, providers);
        Ok(Self { settings, metrics })
    }

    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The Kafka sink; `patient`: with the producer of writes that may outlive their request
    /// (the spool's).
    pub(crate) fn sink(&self, patient: bool) -> Result<Arc<KafkaSink>, StartupError> {
        Ok(Arc::new(KafkaSink::with_patient(
            &self.settings.kafka,
            self.metrics.clone(),
            patient,
        )?))
    }

    /// The deployment's deduplication (`dedupe.backend`), bounded by `kafka.ack_timeout`.
    pub(crate) fn dedupe(&self) -> Result<Arc<Dedupe>, StartupError> {
        Dedupe::new(
            &self.settings.dedupe,
            self.settings.kafka.ack_timeout,
            self.metrics.clone(),
        )
        .map(Arc::new)
        .map_err(StartupError::Dedupe)
    }

    /// The Schema Registry client, when one is configured.
    pub(crate) fn schema_registry(&self) -> Result<Option<Arc<RegistryClient>>, StartupError> {
        if !self.settings.schema_registry.enabled() {
            return Ok(None);
        }
        Ok(Some(Arc::new(RegistryClient::new(
            &self.settings.schema_registry,
        )?)))
    }
}

/// How records are framed: the Schema Registry's wire format with a registry, else Avro's
/// single-object encoding.
pub(crate) fn framing(schema_registry: Option<&Arc<RegistryClient>>) -> Framing {
    match schema_registry {
        Some(registry) => Framing::SchemaRegistry(registry.clone()),
        None => Framing::single_object(),
    }
}

/// Creates at zero every series whose labels are known up front, for `providers`.
pub(crate) fn initialize_series(metrics: &Metrics, providers: &[&str]) {
    let reasons: Vec<_> = FailureReason::iter().map(FailureReason::label).collect();
    let codes: Vec<_> = ErrorCode::iter().map(ErrorCode::as_str).collect();
    metrics.initialize(providers, &codes, &reasons);
}
