//! Bounds on open connections, on bodies being received, and on requests being processed.
//!
//! - Every accepted connection takes a [`ConnectionSlot`] (actix's `on_connect` hook stores it in
//!   the connection's extensions, so it is released when the connection closes). A connection
//!   opened beyond `server.max_connections` is served one answer, `503 overloaded`, and closed.
//! - A body being received takes a [`BodySlot`]. A body's signature can only be checked once
//!   all of it has arrived, so a client sending a forged signature header and a slow body holds
//!   memory until `server.body_timeout`. At most [`MAX_BODIES_RECEIVING`] bodies are received at
//!   once; when all slots are taken, the body that has been arriving the longest is cut off with
//!   `503 overloaded` to make room. A webhook's body arrives with its headers and is read in
//!   microseconds, so only slow clients lose their slot, and signed webhooks keep flowing.
//! - A request then takes an [`InFlight`] permit while it is processed; beyond
//!   `server.max_in_flight` it is answered `503 overloaded` at once instead of queueing.

use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Bodies received at once (each costs roughly 30 KiB while it arrives).
pub const MAX_BODIES_RECEIVING: usize = 128;

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
    /// Fired to cut the body off.
    cut_off: oneshot::Sender<()>,
}

/// Held while a body is received.
pub struct BodySlot {
    limits: Arc<Limits>,
    id: u64,
    cut_off: oneshot::Receiver<()>,
}

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
        self.metrics.open_connections.inc();
        ConnectionSlot {
            limits: self.clone(),
            over_limit: open > self.max_connections,
        }
    }

    /// A slot to receive one more body; if all are taken, the body that has been arriving the
    /// longest is cut off to make room.
    pub fn begin_body(self: &Arc<Self>) -> BodySlot {
        let mut receiving = self.receiving.lock();
        if receiving.len() >= self.max_bodies {
            let slowest = receiving
                .iter()
                .min_by_key(|(_, r)| r.started)
                .map(|(id, _)| *id);
            if let Some(cut) = slowest.and_then(|id| receiving.remove(&id)) {
                let _ = cut.cut_off.send(());
            }
        }
        let id = self.next_body.fetch_add(1, Ordering::Relaxed);
        let (cut_off, receiver) = oneshot::channel();
        receiving.insert(
            id,
            Receiving {
                started: Instant::now(),
                cut_off,
            },
        );
        BodySlot {
            limits: self.clone(),
            id,
            cut_off: receiver,
        }
    }

    /// A permit to process one more request, or `None` when `max_in_flight` are in progress.
    pub fn begin_request(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .ok()?;
        self.metrics.requests_in_flight.inc();
        Some(InFlight {
            limits: self.clone(),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.connections.fetch_sub(1, Ordering::Relaxed);
        self.limits.metrics.open_connections.dec();
    }
}

impl BodySlot {
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
        self.limits.metrics.requests_in_flight.dec();
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
        assert_eq!(l.metrics.open_connections.get(), 2);
    }

    async fn cut(slot: &mut BodySlot) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), slot.cut_off())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn when_every_body_slot_is_taken_the_longest_arriving_body_is_cut_off() {
        use std::time::Duration;
        let l = Limits::with_body_slots(10, 2, 10, Arc::new(Metrics::new().expect("metrics")));
        let mut oldest = l.begin_body();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut younger = l.begin_body();
        let mut newcomer = l.begin_body();
        assert!(cut(&mut oldest).await, "the oldest is cut off");
        assert!(!cut(&mut younger).await, "the younger one keeps its slot");
        drop(younger);
        let _another = l.begin_body();
        assert!(!cut(&mut newcomer).await, "a finished body freed its slot");
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
