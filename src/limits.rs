//! Bounds on open connections and on requests being processed.
//!
//! Every accepted connection takes a [`ConnectionSlot`] (actix's `on_connect` hook stores it in
//! the connection's extensions, so it is released when the connection closes). A connection
//! opened beyond `server.max_connections` is served one answer, `503 overloaded`, and closed.
//! A webhook request takes an [`InFlight`] permit for as long as it is processed; beyond
//! `server.max_in_flight` it is answered `503 overloaded` at once instead of queueing.

use crate::metrics::Metrics;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Limits {
    connections: AtomicUsize,
    max_connections: usize,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    metrics: Arc<Metrics>,
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
        Arc::new(Self {
            connections: AtomicUsize::new(0),
            max_connections,
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
