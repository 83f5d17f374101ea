//! `hookstream config check --connect`: can this configuration reach what it names? One line per
//! check, as a person reading a deploy log wants it: what was checked, and ok or why not.

use crate::configuration::Settings;
use crate::kafka::{ClientFailure, KafkaSink};
use crate::startup::{StartupError, Wiring};
use std::sync::Arc;

/// One check and its outcome.
pub struct Checked {
    pub what: String,
    pub outcome: Result<String, String>,
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(detail) => write!(f, "ok      {}: {detail}", self.what),
            Err(why) => write!(f, "FAILED  {}: {why}", self.what),
        }
    }
}

/// `None` when at least one bootstrap broker of `brokers` (`host:port,…`) takes a TCP
/// connection within `timeout`; else why each did not (`connection refused`, no such host, …).
async fn unreachable_brokers(brokers: &str, timeout: std::time::Duration) -> Option<String> {
    let mut failures = Vec::new();
    for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        // librdkafka accepts a `protocol://` prefix; the address is what follows it.
        let address = broker.rsplit("://").next().unwrap_or(broker);
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => failures.push(format!("{address}: {}", plain(&e))),
            Err(_) => failures.push(format!(
                "{address}: no connection within kafka.ack_timeout ({} ms)",
                timeout.as_millis()
            )),
        }
    }
    Some(failures.join("; "))
}

/// An I/O error as a person says it: `connection refused`, not `Connection refused (os error
/// 111)`.
fn plain(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => error.to_string(),
    }
}

/// The broker's metadata and a write to `{topic_prefix}.canary`. When not one bootstrap broker
/// takes a connection, that is said at once, rather than what librdkafka's metadata request says
/// after the whole timeout.
async fn kafka(
    settings: &Settings,
    wiring: &Wiring<'_>,
    timeout: std::time::Duration,
) -> Vec<Checked> {
    let metadata = format!("kafka metadata from {}", settings.kafka.brokers);
    if let Some(why) = unreachable_brokers(&settings.kafka.brokers, timeout).await {
        return vec![
            Checked {
                what: metadata,
                outcome: Err(why),
            },
            Checked {
                what: format!("kafka write to {}.canary", settings.kafka.topic_prefix),
                outcome: Err("not tried: no broker takes a connection".into()),
            },
        ];
    }
    let sink = match wiring.sink(false) {
        Ok(sink) => sink,
        Err(e) => {
            return vec![Checked {
                what: "kafka client".into(),
                outcome: Err(e.to_string()),
            }]
        }
    };
    let metadata_outcome = metadata_answered(&sink, timeout).await;
    let canary = format!("kafka write to {}", sink.canary_topic());
    if let Err(MetadataFailed::Known(failure)) = &metadata_outcome {
        return vec![
            Checked {
                what: metadata,
                outcome: Err(failure.to_string()),
            },
            Checked {
                what: canary,
                outcome: Err(format!("not tried: {}", failure.kind.heading())),
            },
        ];
    }
    vec![
        Checked {
            what: metadata,
            outcome: match metadata_outcome {
                Ok(()) => Ok("the cluster answered".into()),
                Err(e) => Err(e.to_string()),
            },
        },
        Checked {
            what: canary,
            outcome: sink
                .write_canary()
                .await
                .map(|()| "created if missing, written and acknowledged".into())
                .map_err(|e| e.to_string()),
        },
    ]
}

/// Why the cluster's metadata did not come.
enum MetadataFailed {
    /// librdkafka said why: the credentials, the handshake or a denial.
    Known(ClientFailure),
    /// No answer within the timeout; with the latest connection failure, if any.
    NoAnswer {
        timeout: std::time::Duration,
        latest: Option<ClientFailure>,
    },
}

impl std::fmt::Display for MetadataFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataFailed::Known(failure) => write!(f, "{failure}"),
            MetadataFailed::NoAnswer { timeout, latest } => {
                write!(
                    f,
                    "no metadata within kafka.ack_timeout ({} ms)",
                    timeout.as_millis()
                )?;
                match latest {
                    Some(latest) => write!(f, "; {latest}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Asks the cluster for its metadata, for at most `timeout`; gives up as soon as librdkafka
/// reports that authentication or the TLS handshake failed, naming it. Short requests one after
/// the other, so that nothing is left running once the answer is known.
async fn metadata_answered(
    sink: &Arc<KafkaSink>,
    timeout: std::time::Duration,
) -> Result<(), MetadataFailed> {
    const STEP: std::time::Duration = std::time::Duration::from_millis(100);
    let probe = sink.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || probe.client_blocking().is_some() {
                return false;
            }
            if probe.probe(left.min(STEP)) {
                return true;
            }
        }
    })
    .await
    .unwrap_or(false);
    if answered {
        return Ok(());
    }
    Err(sink.client_blocking().map_or_else(
        || MetadataFailed::NoAnswer {
            timeout,
            latest: sink.client_failure(),
        },
        MetadataFailed::Known,
    ))
}

/// Runs every check that applies to `settings`: the broker's metadata, a write to a topic
/// hookstream may create, Redis (with `dedupe.backend = "redis"`) and the Schema Registry (when
/// configured). Each is bounded by `kafka.ack_timeout`.
pub async fn connect(settings: &Settings) -> Vec<Checked> {
    let timeout = settings.kafka.ack_timeout;
    let mut checks = Vec::new();
    let wiring = match Wiring::new(settings, &[]) {
        Ok(wiring) => wiring,
        Err(e) => {
            checks.push(Checked {
                what: "metrics".into(),
                outcome: Err(e.to_string()),
            });
            return checks;
        }
    };
    checks.extend(kafka(settings, &wiring, timeout).await);
    match wiring.dedupe() {
        Ok(dedupe) => {
            if let Some(reached) = dedupe.check_shared_store().await {
                checks.push(Checked {
                    what: "redis (dedupe)".into(),
                    outcome: reached
                        .map(|()| "claim, release and commit of a probe key answered".into()),
                });
            }
        }
        Err(e) => checks.push(Checked {
            what: "redis (dedupe)".into(),
            outcome: Err(match e {
                StartupError::Dedupe(why) => why,
                other => other.to_string(),
            }),
        }),
    }
    if settings.schema_registry.enabled() {
        let outcome = match wiring.schema_registry() {
            Ok(Some(registry)) => match tokio::time::timeout(timeout, registry.subjects()).await {
                Ok(result) => result
                    .map(|n| format!("answered, {n} subject(s)"))
                    .map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "no answer within kafka.ack_timeout ({} ms)",
                    timeout.as_millis()
                )),
            },
            Ok(None) => Err("not configured".into()),
            Err(StartupError::SchemaRegistry(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        checks.push(Checked {
            what: format!(
                "schema registry at {}",
                crate::configuration::without_userinfo(&settings.schema_registry.url)
            ),
            outcome,
        });
    }
    checks
}
