//! Remembers which events were already written, so redeliveries produce nothing.
//!
//! Providers deliver at least once. An event id is *claimed* before its write, *recorded* only
//! after the broker acknowledged the write ([`Claim::commit`]), and *released* if the write fails
//! (dropping the [`Claim`]), so the provider's retry gets a fresh attempt. While a write is in
//! flight, other deliveries of the same id wait for its outcome instead of producing a second
//! copy.
//!
//! Two backends (`dedupe.backend`):
//! - `memory`: the bounded in-process cache ([`memory`]). Per process: another replica, or this
//!   one after a restart, does not know what was written.
//! - `redis`: the same cache as a first level, in front of ids shared through Redis ([`shared`]),
//!   so the promise holds for a fleet of replicas and across restarts. The claim protocol:
//!   an atomic set-if-absent holding a per-claim token with an expiry longer than the write's
//!   deadline; after the ack, the key becomes "recorded" for `dedupe.window`; on failure, the key
//!   is deleted only if it still holds this claim's token. A claim held by another replica is
//!   waited for until it is recorded (duplicate), released (claim it) or the request's deadline
//!   passes (503, the provider retries): never a second copy while the other write may succeed.
//!
//! When Redis cannot be asked (down, frozen, slow), `dedupe.redis.on_unavailable` decides: `write`
//! writes the delivery anyway — a duplicate is better than a loss — and `reject` answers 503
//! `dedupe_unavailable`. Either way every failed call is counted
//! (`hookstream_dedupe_errors_total{operation}`) and logged with rate limiting, and both heal by
//! themselves: the connection is re-established on the next call.
//!
//! Ids live in [`Namespace`]s: an event written to its topic and a delivery kept as a dead letter
//! are remembered apart, so a redelivered dead letter adds no second letter and never passes for
//! a written event.

mod memory;
mod shared;

use crate::configuration::{DedupeBackend, DedupeSettings, OnUnavailable};
use crate::internal_events::{DedupeFailed, DedupeMeasured, InternalEvent};
use crate::metrics::Metrics;
use memory::{LocalClaim, LocalVerdict, MemoryCache};
use shared::{SharedClaim, SharedStore, SharedVerdict};
use std::sync::Arc;
use std::time::Duration;

/// How much longer than a write's deadline a Redis claim lasts.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(2);

/// How long a Redis claim lasts: see [`Dedupe::new`].
pub(crate) fn claim_ttl(write_deadline: Duration, redis_timeout: Duration) -> Duration {
    write_deadline + redis_timeout * 2 + CLAIM_MARGIN
}

/// What kind of write an id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// The event was written to its topic.
    Event,
    /// The delivery was kept in the dead-letter topic.
    DeadLetter,
}

impl Namespace {
    fn tag(self) -> u8 {
        match self {
            Namespace::Event => 0,
            Namespace::DeadLetter => 1,
        }
    }

    /// The part of a Redis key that names the namespace.
    fn key_part(self) -> &'static str {
        match self {
            Namespace::Event => "e",
            Namespace::DeadLetter => "d",
        }
    }
}

/// The deduplication of one process: the in-process cache, and Redis when configured.
pub struct Dedupe {
    local: MemoryCache,
    shared: Option<SharedStore>,
    on_unavailable: OnUnavailable,
    metrics: Arc<Metrics>,
}

/// The outcome of [`Dedupe::claim`].
pub enum Verdict {
    /// Already written within the window: produce nothing.
    Duplicate,
    /// The caller owns the write of this id.
    Claimed(Claim),
}

/// Ownership of an in-flight write. Dropping it without [`Claim::commit`] releases the id.
pub struct Claim {
    local: LocalClaim,
    /// `None` with the memory backend, and when Redis could not be asked (`write` mode).
    shared: Option<SharedClaim>,
    metrics: Arc<Metrics>,
}

/// Redis could not be asked and `dedupe.redis.on_unavailable = "reject"`.
#[derive(Debug, thiserror::Error)]
#[error("the deduplication store could not be asked: {0}")]
pub struct Unavailable(String);

impl Dedupe {
    /// `write_deadline` is `kafka.ack_timeout`, the longest a write takes. A Redis claim lasts
    /// until the latest moment its commit can arrive — the write's deadline, then two Redis
    /// timeouts (the pipeline ahead of the commit, and its own) — plus [`CLAIM_MARGIN`], so it
    /// never expires while its write may still be acknowledged and recorded; the id of a
    /// replica that died while writing is free again soon after.
    pub fn new(
        settings: &DedupeSettings,
        write_deadline: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let claim_ttl = claim_ttl(write_deadline, settings.redis.timeout);
        let shared = match settings.backend {
            DedupeBackend::Memory => None,
            DedupeBackend::Redis => Some(SharedStore::new(
                &settings.redis,
                settings.window,
                claim_ttl,
                metrics.clone(),
            )?),
        };
        Ok(Self {
            local: MemoryCache::new(settings.window, settings.max_entries),
            shared,
            on_unavailable: settings.redis.on_unavailable,
            metrics,
        })
    }

    /// Decides whether this delivery is a duplicate, waiting for an in-flight write of the same
    /// id (in this process, or with Redis in any replica). The caller bounds the wait.
    pub async fn claim(
        &self,
        namespace: Namespace,
        provider: &str,
        event_id: &str,
    ) -> Result<Verdict, Unavailable> {
        let local = match self.local.claim(namespace, provider, event_id).await {
            LocalVerdict::Duplicate => return Ok(Verdict::Duplicate),
            LocalVerdict::Claimed(local) => local,
        };
        let Some(store) = &self.shared else {
            return Ok(self.claimed(local, None));
        };
        match store.claim(namespace, provider, event_id).await {
            Ok(SharedVerdict::Recorded) => {
                // Written by another replica (or before a restart): remembered here too.
                local.commit();
                Ok(Verdict::Duplicate)
            }
            Ok(SharedVerdict::Claimed(shared)) => Ok(self.claimed(local, Some(shared))),
            Err(e) => {
                DedupeFailed {
                    operation: "claim",
                    detail: &e,
                }
                .emit(&self.metrics);
                match self.on_unavailable {
                    // Recorded in Redis after the ack all the same, should it answer by then.
                    OnUnavailable::Write => {
                        Ok(self
                            .claimed(local, Some(store.unclaimed(namespace, provider, event_id))))
                    }
                    OnUnavailable::Reject => Err(Unavailable(e.to_string())),
                }
            }
        }
    }

    /// Whether the id was written within the window, as far as this process or Redis knows —
    /// asked without claiming it (a dry run's forecast; a store that cannot be asked says no).
    pub async fn recorded(&self, namespace: Namespace, provider: &str, event_id: &str) -> bool {
        if self.local.recorded(namespace, provider, event_id) {
            return true;
        }
        match &self.shared {
            Some(store) => store
                .recorded(namespace, provider, event_id)
                .await
                .unwrap_or(false),
            None => false,
        }
    }

    fn claimed(&self, local: LocalClaim, shared: Option<SharedClaim>) -> Verdict {
        Verdict::Claimed(Claim {
            local,
            shared,
            metrics: self.metrics.clone(),
        })
    }

    /// Whether Redis does what deliveries need — a claim, a release and a commit on a probe key
    /// — and which command failed and why not (`None` with the memory backend).
    pub async fn check_shared_store(&self) -> Option<Result<(), String>> {
        match &self.shared {
            Some(store) => Some(store.check().await.map_err(|e| e.to_string())),
            None => None,
        }
    }

    /// Whether an unreachable Redis makes hookstream not ready (`on_unavailable = "reject"`).
    pub fn needs_shared_store(&self) -> bool {
        self.shared.is_some() && self.on_unavailable == OnUnavailable::Reject
    }

    /// Measures the in-process cache: its size and horizon (with Redis, the horizon is the
    /// window: Redis keeps every id for it).
    pub fn measure(&self) {
        let window = self.local.window();
        DedupeMeasured {
            entries: self.local.len(),
            horizon: if self.shared.is_some() {
                window
            } else {
                self.local.horizon()
            },
            window,
        }
        .emit(&self.metrics);
    }
}

impl Claim {
    /// Records the id: the broker acknowledged the write.
    pub async fn commit(self) {
        self.local.commit();
        let Some(shared) = self.shared else {
            return;
        };
        let held = shared.holds_claim();
        let metrics = self.metrics;
        let commit = async move {
            if let Err(e) = shared.commit().await {
                DedupeFailed {
                    operation: "commit",
                    detail: &e,
                }
                .emit(&metrics);
            }
        };
        if held {
            commit.await;
        } else {
            // Written without a claim while Redis could not be asked: recorded when it answers,
            // without holding the answer back for a Redis that may still be gone.
            tokio::spawn(commit);
        }
    }
}
