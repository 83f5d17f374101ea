//! Readiness: each dependency checked.

use crate::metrics::Metrics;

/// A readiness check of one dependency answered (or not).
pub struct DependencyChecked {
    pub dependency: &'static str,
    pub up: bool,
}

impl DependencyChecked {
    pub fn emit(self, m: &Metrics) {
        m.ready
            .with_label_values(&[self.dependency])
            .set(i64::from(self.up));
    }
}
