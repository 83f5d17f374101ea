//! Readiness: each dependency checked.

use super::InternalEvent;
use crate::metrics::Metrics;

/// A readiness check of one dependency answered (or not).
pub struct DependencyChecked {
    pub dependency: &'static str,
    pub up: bool,
}

impl InternalEvent for DependencyChecked {
    fn emit(self, m: &Metrics) {
        m.health
            .dependency_up
            .with_label_values(&[self.dependency])
            .set(i64::from(self.up));
    }
}
