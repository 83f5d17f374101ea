//! Event ids shared through Redis: the claim protocol every replica follows.
//!
//! One key per (namespace, provider, event id): `{key_prefix}{e|d}:{digest}`, the digest being the
//! first 128 bits of SHA-256 over the provider and the id, in hex — a fixed size whatever the
//! vendor's id. Its value is `c:{token}` while a write holds the claim, then `r` once recorded.
//!
//! - **Claim**: `SET key c:{token} NX PX {claim_ttl} GET` — one atomic command that either takes
//!   the key or says what holds it (Redis ≥ 7.0).
//! - **Commit**: `SET key r PX {window}`, unconditionally: the write happened, so it is recorded
//!   even if the claim expired meanwhile.
//! - **Release**: a script deletes the key only if it still holds this claim's token, so a slow
//!   replica never deletes another's claim. Releases are rare (a failed write), so the script is
//!   sent whole (`EVAL`) rather than cached.
//!
//! Every call has its own timeout (`dedupe.redis.timeout`), within the request's one deadline.
//! Commands are pipelined ([`lanes`]): those of concurrent requests travel together, never one
//! round trip after another's.

mod lanes;

use super::Namespace;
use crate::configuration::RedisSettings;
use crate::internal_events::{DedupeFailed, InternalEvent};
use crate::metrics::Metrics;
use lanes::{IfAbandoned, Lanes};
use redis::aio::ConnectionManagerConfig;
use redis::IntoConnectionInfo;
use secrecy::ExposeSecret;
use sha2::{Digest as _, Sha256};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The value of a recorded id.
const RECORDED: &[u8] = b"r";
/// First and longest pause between two looks at a claim held by another replica.
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(200);

/// Deletes the key if it still holds this claim's token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Why a Redis call failed. Never shows the URL or password.
#[derive(Debug, thiserror::Error)]
pub(super) enum SharedError {
    #[error("redis did not answer within dedupe.redis.timeout ({} ms)", .0.as_millis())]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(String),
}

pub(super) struct SharedStore(Arc<Inner>);

struct Inner {
    lanes: Lanes,
    key_prefix: String,
    window_ms: u64,
    claim_ttl_ms: u64,
    timeout: Duration,
    /// Random per process, so claim tokens of different replicas never collide.
    token_prefix: String,
    claims: AtomicU64,
    metrics: Arc<Metrics>,
}

pub(super) enum SharedVerdict {
    /// Recorded by some replica: a duplicate.
    Recorded,
    Claimed(SharedClaim),
}

/// This process's claim of a key. Dropped without [`SharedClaim::commit`], it is released.
pub(super) struct SharedClaim {
    store: Arc<Inner>,
    key: String,
    /// `c:{token}`; `None` once committed.
    value: Option<String>,
}

impl SharedStore {
    /// Connects lazily: the first call (or [`SharedStore::check`]) opens the connection, so
    /// hookstream starts while Redis is down.
    pub(super) fn new(
        settings: &RedisSettings,
        window: Duration,
        claim_ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let mut info = settings
            .url
            .expose_secret()
            .into_connection_info()
            .map_err(|_| "dedupe.redis.url is not a redis:// or rediss:// URL".to_string())?;
        let password = settings.password.expose_secret();
        if !password.is_empty() {
            let redis = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info).map_err(|e| format!("dedupe.redis.url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(0)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let nonce = RandomState::new().hash_one(std::process::id());
        Ok(Self(Arc::new(Inner {
            lanes: Lanes::new(client, config, settings.timeout),
            key_prefix: settings.key_prefix.clone(),
            window_ms: millis(window),
            claim_ttl_ms: millis(claim_ttl),
            timeout: settings.timeout,
            token_prefix: format!("{nonce:016x}"),
            claims: AtomicU64::new(0),
            metrics,
        })))
    }

    /// Claims the id, or says it was recorded; waits while another replica holds it.
    pub(super) async fn claim(
        &self,
        namespace: Namespace,
        provider: &str,
        event_id: &str,
    ) -> Result<SharedVerdict, SharedError> {
        let inner = &self.0;
        let key = inner.key(namespace, provider, event_id);
        let value = format!(
            "c:{}-{:x}",
            inner.token_prefix,
            inner.claims.fetch_add(1, Ordering::Relaxed)
        );
        let mut pause = FIRST_POLL;
        loop {
            let mut command = redis::cmd("SET");
            command
                .arg(&key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(inner.claim_ttl_ms)
                .arg("GET");
            let mut release = redis::cmd("EVAL");
            release.arg(RELEASE).arg(1).arg(&key).arg(&value);
            let held: Option<Vec<u8>> = inner
                .call(
                    command,
                    IfAbandoned::Skip {
                        undo: Some(release),
                    },
                )
                .await?;
            match held {
                None => {
                    return Ok(SharedVerdict::Claimed(SharedClaim {
                        store: inner.clone(),
                        key,
                        value: Some(value),
                    }))
                }
                Some(held) if held == RECORDED => return Ok(SharedVerdict::Recorded),
                // Another replica is writing it: look again shortly.
                Some(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_POLL);
                }
            }
        }
    }

    /// Whether the id is recorded as written (a read: it claims nothing).
    pub(super) async fn recorded(
        &self,
        namespace: Namespace,
        provider: &str,
        event_id: &str,
    ) -> Result<bool, SharedError> {
        let mut command = redis::cmd("GET");
        command.arg(self.0.key(namespace, provider, event_id));
        let held: Option<Vec<u8>> = self
            .0
            .call(command, IfAbandoned::Skip { undo: None })
            .await?;
        Ok(held.as_deref() == Some(RECORDED))
    }

    /// The record of an id written without a claim (Redis could not be asked, `write` mode):
    /// committing it records the id once Redis answers again, so a redelivery after the outage
    /// is still a duplicate. Dropped, it does nothing.
    pub(super) fn unclaimed(
        &self,
        namespace: Namespace,
        provider: &str,
        event_id: &str,
    ) -> SharedClaim {
        SharedClaim {
            store: self.0.clone(),
            key: self.0.key(namespace, provider, event_id),
            value: None,
        }
    }

    /// Runs the claim protocol on a probe key of its own — claim, release, commit — so that a
    /// Redis which answers PING but refuses what deliveries need (an ACL without `SET` or
    /// `EVAL`, a cluster node answering `MOVED`, a Redis older than 7.0) is caught. `Err` names
    /// the command that failed and why.
    pub(super) async fn check(&self) -> Result<(), SharedError> {
        let inner = &self.0;
        let key = format!("{}probe:{}", inner.key_prefix, inner.token_prefix);
        let value = format!(
            "c:{}-probe-{:x}",
            inner.token_prefix,
            inner.claims.fetch_add(1, Ordering::Relaxed)
        );
        let mut claim = redis::cmd("SET");
        claim
            .arg(&key)
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(PROBE_TTL_MS)
            .arg("GET");
        inner
            .call::<Option<Vec<u8>>>(claim, IfAbandoned::Skip { undo: None })
            .await
            .map_err(|e| e.during("claim (SET … NX PX … GET)"))?;
        let mut release = redis::cmd("EVAL");
        release.arg(RELEASE).arg(1).arg(&key).arg(&value);
        inner
            .call::<i64>(release, IfAbandoned::Skip { undo: None })
            .await
            .map_err(|e| e.during("release (EVAL compare-and-delete)"))?;
        let mut commit = redis::cmd("SET");
        commit.arg(&key).arg(RECORDED).arg("PX").arg(PROBE_TTL_MS);
        inner
            .call::<()>(commit, IfAbandoned::Skip { undo: None })
            .await
            .map_err(|e| e.during("commit (SET … PX)"))
    }
}

/// How long a probe key lives: it is written by every readiness check.
const PROBE_TTL_MS: u64 = 10_000;

impl SharedError {
    /// The error of `command` of the probe, with what the reply means for hookstream.
    fn during(self, command: &'static str) -> SharedError {
        let SharedError::Redis(why) = self else {
            return self;
        };
        let upper = why.to_ascii_uppercase();
        let meaning = if upper.contains("NOPERM") {
            "; the Redis user may not run it (ACL)"
        } else if upper.contains("MOVED")
            || upper.contains("CROSSSLOT")
            || upper.contains("CLUSTER")
        {
            "; this is a Redis Cluster node: hookstream needs a single Redis (or a primary with replicas)"
        } else if command.starts_with("claim")
            && (upper.contains("SYNTAX") || upper.contains("GET OPTION"))
        {
            "; Redis older than 7.0 refuses SET with both NX and GET: upgrade Redis"
        } else {
            ""
        };
        SharedError::Redis(format!("{command} failed: {why}{meaning}"))
    }
}

impl Inner {
    fn key(&self, namespace: Namespace, provider: &str, event_id: &str) -> String {
        let mut digest = Sha256::new();
        digest.update(provider.as_bytes());
        digest.update([0u8]);
        digest.update(event_id.as_bytes());
        let digest = digest.finalize();
        format!(
            "{}{}:{}",
            self.key_prefix,
            namespace.key_part(),
            hex::encode(&digest[..16])
        )
    }

    /// One command, bounded by the timeout.
    async fn call<T: redis::FromRedisValue>(
        &self,
        command: redis::Cmd,
        if_abandoned: IfAbandoned,
    ) -> Result<T, SharedError> {
        let value = tokio::time::timeout(self.timeout, self.lanes.send(command, if_abandoned))
            .await
            .map_err(|_| SharedError::Timeout(self.timeout))?
            .map_err(SharedError::Redis)?;
        T::from_redis_value(value).map_err(|e| SharedError::Redis(e.to_string()))
    }
}

impl SharedClaim {
    /// Whether this holds a claim in Redis (not [`SharedStore::unclaimed`]).
    pub(super) fn holds_claim(&self) -> bool {
        self.value.is_some()
    }

    /// Records the id for the window.
    pub(super) async fn commit(mut self) -> Result<(), SharedError> {
        self.value = None;
        let mut command = redis::cmd("SET");
        command
            .arg(&self.key)
            .arg(RECORDED)
            .arg("PX")
            .arg(self.store.window_ms);
        self.store.call::<()>(command, IfAbandoned::Send).await
    }
}

impl Drop for SharedClaim {
    /// Releases the claim in a task of its own (a drop cannot wait); if that fails, the claim
    /// expires by itself after the claim TTL.
    fn drop(&mut self) {
        let Some(value) = self.value.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, key) = (self.store.clone(), std::mem::take(&mut self.key));
        runtime.spawn(async move {
            let mut command = redis::cmd("EVAL");
            command.arg(RELEASE).arg(1).arg(&key).arg(&value);
            let Err(error) = store.call::<i64>(command, IfAbandoned::Send).await else {
                return;
            };
            DedupeFailed {
                operation: "release",
                detail: &error,
            }
            .emit(&store.metrics);
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
