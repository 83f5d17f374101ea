//! Bounds on open connections, on bodies being received, and on requests being processed.
//!
//! - Every accepted connection takes a [`ConnectionSlot`] (actix's `on_connect` hook stores it in
//!   the connection's extensions, so it is released when the connection closes). A connection
//!   opened beyond `server.max_connections` is served one answer, `503 overloaded`, and closed.
//! - A body being received takes a [`BodySlot`]. A body's signature can only be checked once
//!   all of it has arrived, so a client sending a forged signature header and a slow body holds
//!   memory until `server.body_timeout`. At most [`MAX_BODIES_RECEIVING`] bodies are received at
//!   once. When all slots are taken, the body making the least progress — the fewest bytes per
//!   second since its slot began, counting at least one second, the oldest first among equals —
//!   is cut off with `503 overloaded` to make room, unless even that body arrives at
//!   [`MIN_PROGRESS_BYTES_PER_SEC`] or more: then the newcomer is refused instead. So opening
//!   connections buys no slot at the expense of a body that is arriving: an attacker who holds
//!   slots with slow forged bodies loses them to any body arriving faster, and can only keep the
//!   newcomers out by sending every slot's body at that rate. A webhook's body usually arrives
//!   with its headers and is read in microseconds; one that takes seconds keeps its slot as long
//!   as some slot holder is slower. The policy looks at progress only, not at client addresses:
//!   behind a load balancer every client has the same one.
//! - A request then takes an [`InFlight`] permit while it is processed; beyond
//!   `server.max_in_flight` it is answered `503 overloaded` at once instead of queueing.

use crate::internal_events::{ConnectionCounted, InternalEvent, RequestInFlight};
use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Bodies received at once (each costs roughly 30 KiB while it arrives).
pub const MAX_BODIES_RECEIVING: usize = 128;

/// A body arriving at least this fast is never cut off to make room; when every slot holder does,
/// a newcomer is refused instead.
pub const MIN_PROGRESS_BYTES_PER_SEC: u64 = 16 * 1024;

/// BodyProgress is measured over at least this long, so a body that just began is not judged on its
/// first chunk alone, and one that has sent nothing yet counts as making none.
const PROGRESS_MIN_ELAPSED: Duration = Duration::from_secs(1);

pub struct Limits {
    connections: AtomicUsize,
    max_connections: usize,
    receiving: Mutex<HashMap<u64, Receiving>>,
    next_body: AtomicU64,
    max_bodies: usize,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    metrics: Arc<Metrics>,
}

/// A body being received.
struct Receiving {
    started: Instant,
    /// Bytes received so far (written by the reader, without the lock).
    received: Arc<AtomicU64>,
    /// Fired to cut the body off.
    cut_off: oneshot::Sender<()>,
}

impl Receiving {
    /// Bytes per second since the slot began, over at least [`PROGRESS_MIN_ELAPSED`].
    fn progress(&self, now: Instant) -> u64 {
        let elapsed = now
            .saturating_duration_since(self.started)
            .max(PROGRESS_MIN_ELAPSED);
        let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.received.load(Ordering::Relaxed).saturating_mul(1000) / millis
    }
}

/// Held while a body is received.
pub struct BodySlot {
    limits: Arc<Limits>,
    id: u64,
    received: Arc<AtomicU64>,
    cut_off: oneshot::Receiver<()>,
}

/// No body slot for a newcomer: every slot holds a body arriving at
/// [`MIN_PROGRESS_BYTES_PER_SEC`] or more.
#[derive(Debug)]
pub struct AllSlotsProgressing;

/// Held by a connection for its lifetime.
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    /// Opened while `max_connections` were already open.
    pub over_limit: bool,
}

/// Held by a request while it is processed.
pub struct InFlight {
    limits: Arc<Limits>,
}

impl Limits {
    pub fn new(max_connections: usize, max_in_flight: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_body_slots(
            max_connections,
            MAX_BODIES_RECEIVING,
            max_in_flight,
            metrics,
        )
    }

    fn with_body_slots(
        max_connections: usize,
        max_bodies: usize,
        max_in_flight: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            connections: AtomicUsize::new(0),
            max_connections,
            receiving: Mutex::new(HashMap::new()),
            next_body: AtomicU64::new(0),
            max_bodies,
            in_flight: AtomicUsize::new(0),
            max_in_flight,
            metrics,
        })
    }

    pub fn connection_opened(self: &Arc<Self>) -> ConnectionSlot {
        let open = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        ConnectionCounted { opened: true }.emit(&self.metrics);
        ConnectionSlot {
            limits: self.clone(),
            over_limit: open > self.max_connections,
        }
    }

    /// A slot to receive one more body. If all are taken, the body making the least progress is
    /// cut off to make room, unless it arrives at [`MIN_PROGRESS_BYTES_PER_SEC`] or more: then
    /// there is no slot for the newcomer.
    pub fn begin_body(self: &Arc<Self>) -> Result<BodySlot, AllSlotsProgressing> {
        let now = Instant::now();
        let mut receiving = self.receiving.lock();
        if receiving.len() >= self.max_bodies {
            let slowest = receiving
                .iter()
                .map(|(id, r)| (r.progress(now), r.started, *id))
                .min();
            match slowest {
                Some((progress, _, _)) if progress >= MIN_PROGRESS_BYTES_PER_SEC => {
                    return Err(AllSlotsProgressing);
                }
                Some((_, _, id)) => {
                    if let Some(cut) = receiving.remove(&id) {
                        let _ = cut.cut_off.send(());
                    }
                }
                None => {}
            }
        }
        let id = self.next_body.fetch_add(1, Ordering::Relaxed);
        let (cut_off, receiver) = oneshot::channel();
        let received = Arc::new(AtomicU64::new(0));
        receiving.insert(
            id,
            Receiving {
                started: now,
                received: received.clone(),
                cut_off,
            },
        );
        Ok(BodySlot {
            limits: self.clone(),
            id,
            received,
            cut_off: receiver,
        })
    }

    /// A permit to process one more request, or `None` when `max_in_flight` are in progress.
    pub fn begin_request(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .ok()?;
        RequestInFlight { started: true }.emit(&self.metrics);
        Some(InFlight {
            limits: self.clone(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.connections.fetch_sub(1, Ordering::Relaxed);
        ConnectionCounted { opened: false }.emit(&self.limits.metrics);
    }
}

/// Where the reader of a body counts the bytes that arrived.
#[derive(Clone)]
pub struct BodyProgress(Arc<AtomicU64>);

impl BodyProgress {
    pub fn received(&self, bytes: usize) {
        self.0
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl BodySlot {
    /// The counter of this body's bytes.
    pub fn progress(&self) -> BodyProgress {
        BodyProgress(self.received.clone())
    }

    /// Resolves when this body is cut off to make room for another (await it once).
    pub async fn cut_off(&mut self) {
        if (&mut self.cut_off).await.is_err() {
            // The sender is only dropped with this slot: never resolves.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for BodySlot {
    fn drop(&mut self) {
        self.limits.receiving.lock().remove(&self.id);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.limits.in_flight.fetch_sub(1, Ordering::Relaxed);
        RequestInFlight { started: false }.emit(&self.limits.metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: usize, in_flight: usize) -> Arc<Limits> {
        Limits::new(
            connections,
            in_flight,
            Arc::new(Metrics::new().expect("metrics")),
        )
    }

    #[test]
    fn connections_beyond_the_limit_are_marked_and_released_on_drop() {
        let l = limits(2, 10);
        let a = l.connection_opened();
        let b = l.connection_opened();
        let c = l.connection_opened();
        assert!(!a.over_limit && !b.over_limit && c.over_limit);
        drop(c);
        drop(a);
        let d = l.connection_opened();
        assert!(!d.over_limit, "a closed connection frees its slot");
        assert_eq!(l.metrics.http.open_connections.get(), 2);
    }

    async fn cut(slot: &mut BodySlot) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), slot.cut_off())
            .await
            .is_ok()
    }

    fn two_slots() -> Arc<Limits> {
        Limits::with_body_slots(10, 2, 10, Arc::new(Metrics::new().expect("metrics")))
    }

    fn slot(l: &Arc<Limits>) -> BodySlot {
        l.begin_body().expect("a body slot")
    }

    #[tokio::test]
    async fn when_every_body_slot_is_taken_the_body_making_the_least_progress_is_cut_off() {
        let l = two_slots();
        let mut arriving = slot(&l);
        arriving.progress().received(2048);
        let mut stalled = slot(&l);
        let mut newcomer = slot(&l);
        assert!(
            cut(&mut stalled).await,
            "the body that sent nothing is cut off"
        );
        assert!(
            !cut(&mut arriving).await,
            "the body that is arriving keeps its slot"
        );
        drop(arriving);
        let _another = slot(&l);
        assert!(!cut(&mut newcomer).await, "a finished body freed its slot");
    }

    #[tokio::test]
    async fn among_bodies_making_equal_progress_the_oldest_is_cut_off() {
        let l = two_slots();
        let mut oldest = slot(&l);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mut younger = slot(&l);
        let _newcomer = slot(&l);
        assert!(cut(&mut oldest).await, "the oldest is cut off");
        assert!(!cut(&mut younger).await, "the younger one keeps its slot");
    }

    #[tokio::test]
    async fn a_newcomer_is_refused_when_every_holder_makes_progress() {
        let l = two_slots();
        let fast = MIN_PROGRESS_BYTES_PER_SEC as usize;
        let mut a = slot(&l);
        let mut b = slot(&l);
        a.progress().received(fast);
        b.progress().received(fast);
        assert!(l.begin_body().is_err(), "no slot for the newcomer");
        assert!(!cut(&mut a).await && !cut(&mut b).await, "nobody cut off");
        drop(a);
        assert!(l.begin_body().is_ok(), "a finished body freed its slot");
    }

    #[test]
    fn requests_beyond_the_limit_get_no_permit_until_one_finishes() {
        let l = limits(10, 2);
        let first = l.begin_request().expect("permit");
        let _second = l.begin_request().expect("permit");
        assert!(l.begin_request().is_none());
        drop(first);
        assert!(l.begin_request().is_some());
    }
}
