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
    if_abandoned: IfAbandoned,
}

/// What becomes of a command whose caller stopped waiting (its timeout passed) before the reply.
pub(super) enum IfAbandoned {
    /// Sent all the same: writing it late is still right (a commit, a release).
    Send,
    /// Not sent if it has not gone out yet; if it had, `undo` is sent once its reply arrives,
    /// so that nothing it took is left behind with nobody to use it (a claim's key).
    Skip { undo: Option<redis::Cmd> },
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
    pub(super) async fn send(&self, command: redis::Cmd, if_abandoned: IfAbandoned) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.lane()?
            .try_send(Pending {
                command,
                reply,
                if_abandoned,
            })
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
            if pending.reply.is_closed() {
                if let IfAbandoned::Skip { .. } = pending.if_abandoned {
                    // Its caller timed out while it waited: sending it now would take what
                    // nobody will use (a claim held for its whole lifetime).
                    continue;
                }
            }
            pipeline.add_command(pending.command);
            replies.push((pending.reply, pending.if_abandoned));
        }
        if replies.is_empty() {
            continue;
        }
        let sent = tokio::time::timeout(
            timeout,
            pipeline.query_async::<Vec<redis::RedisResult<Value>>>(&mut connection),
        )
        .await;
        let mut undo = redis::pipe();
        let mut undos = 0;
        match sent {
            Ok(Ok(values)) => {
                for ((reply, if_abandoned), value) in replies.into_iter().zip(values) {
                    let delivered = reply.send(value.map_err(|e| e.to_string())).is_ok();
                    if let (
                        false,
                        IfAbandoned::Skip {
                            undo: Some(command),
                        },
                    ) = (delivered, if_abandoned)
                    {
                        undo.add_command(command);
                        undos += 1;
                    }
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!(
                        "redis did not answer within dedupe.redis.timeout ({} ms)",
                        timeout.as_millis()
                    ),
                };
                for (reply, if_abandoned) in replies {
                    let _ = reply.send(Err(why.clone()));
                    // The commands may have gone out, and Redis may carry them out after their
                    // callers were told they failed: undo what they would take.
                    if let IfAbandoned::Skip {
                        undo: Some(command),
                    } = if_abandoned
                    {
                        undo.add_command(command);
                        undos += 1;
                    }
                }
            }
        }
        if undos > 0 {
            undo.ignore_errors();
            // Best effort: a claim not undone expires by itself.
            let _ = tokio::time::timeout(
                timeout,
                undo.query_async::<Vec<redis::RedisResult<Value>>>(&mut connection),
            )
            .await;
        }
    }
}
