//! Deployment checks with the real tools: a Prometheus server scraping hookstream evaluates every
//! query of the shipped Grafana dashboard; promtool checks the Prometheus configuration and the
//! metrics exposition; the compose file is validated against the Compose specification; the
//! Kubernetes manifests are validated, rendered and checked against the program; the Python
//! consumer example decodes what hookstream wrote.
//! `scripts/test` installs the tools.

// The API target compiles all of support with dead code linted; this one uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod consumer_example;
mod kubernetes;
mod observability;
