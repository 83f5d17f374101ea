//! One pipelining lane per thread: the commands a thread's requests issue are queued, and a task
//! on that thread sends all that are waiting as one pipeline — one write, one read, one round
//! trip for many requests — while the next ones gather. Redis then reads many commands per
//! syscall (pipelined, it serves an order of magnitude more commands per core than one by one),
//! and a command never wakes another thread. Each lane has a connection of its own, multiplexed
//! and re-established by the next batch after it broke.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Commands sent in one pipeline, at most.
const MAX_BATCH: usize = 512;
/// Commands waiting in a lane, at most; beyond it a call fails at once (counted like any other
/// Redis failure) rather than queueing without bound behind a frozen Redis.
const MAX_WAITING: usize = 8192;

/// A command's reply, or why there is none (never the URL or password).
pub(super) type Reply = Result<Value, String>;

struct Pending {
    command: redis::Cmd,
    reply: oneshot::Sender<Reply>,
}

/// Where a store's lanes connect to.
pub(super) struct Lanes {
    /// Tells this store's lanes apart from other stores' in the per-thread map.
    id: u64,
    client: redis::Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
}

impl Lanes {
    pub(super) fn new(
        client: redis::Client,
        config: ConnectionManagerConfig,
        timeout: Duration,
    ) -> Self {
        static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            client,
            config,
            timeout,
        }
    }

    /// Queues `command` on this thread's lane; resolves with its reply. The caller bounds the
    /// wait.
    pub(super) async fn send(&self, command: redis::Cmd) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.lane()?
            .try_send(Pending { command, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    "too many Redis commands waiting: Redis is slow or gone".to_string()
                }
                mpsc::error::TrySendError::Closed(_) => "the Redis lane stopped".to_string(),
            })?;
        answer
            .await
            .map_err(|_| "the Redis lane stopped".to_string())?
    }

    /// This thread's lane, started on first use on this thread's runtime.
    fn lane(&self) -> Result<mpsc::Sender<Pending>, String> {
        thread_local! {
            static LANES: RefCell<HashMap<u64, mpsc::Sender<Pending>>> = RefCell::default();
        }
        LANES.with_borrow_mut(|lanes| {
            if let Some(lane) = lanes.get(&self.id).filter(|l| !l.is_closed()) {
                return Ok(lane.clone());
            }
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|_| "no runtime to run the Redis lane on".to_string())?;
            let connection =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                    .map_err(|e| format!("cannot set up a Redis connection: {e}"))?;
            let (lane, queue) = mpsc::channel(MAX_WAITING);
            runtime.spawn(drive(connection, queue, self.timeout));
            lanes.insert(self.id, lane.clone());
            Ok(lane)
        })
    }
}

/// Sends what is waiting as one pipeline, one pipeline at a time, until the lane is dropped.
async fn drive(
    mut connection: ConnectionManager,
    mut queue: mpsc::Receiver<Pending>,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        // Let the other requests this thread is ready to run queue their commands first: they
        // go in the same pipeline.
        tokio::task::yield_now().await;
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        let mut replies = Vec::with_capacity(batch.len());
        for pending in batch.drain(..) {
            pipeline.add_command(pending.command);
            replies.push(pending.reply);
        }
        let sent = tokio::time::timeout(
            timeout,
            pipeline.query_async::<Vec<redis::RedisResult<Value>>>(&mut connection),
        )
        .await;
        match sent {
            Ok(Ok(values)) => {
                for (reply, value) in replies.into_iter().zip(values) {
                    let _ = reply.send(value.map_err(|e| e.to_string()));
                }
            }
            Ok(Err(e)) => {
                let why = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(why.clone()));
                }
            }
            Err(_) => {
                let why = format!(
                    "redis did not answer within dedupe.redis.timeout ({} ms)",
                    timeout.as_millis()
                );
                for reply in replies {
                    let _ = reply.send(Err(why.clone()));
                }
            }
        }
    }
}
