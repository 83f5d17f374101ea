//! What a load run measured: per-connection tallies, merged into one report; progress display.

use super::Shared;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One request's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub seq: u64,
    /// When it was due, from the start of the run.
    pub sent_at: Duration,
    /// From when it was due until its response (or error).
    pub latency: Duration,
    /// `None`: no HTTP response (connection refused or reset, timeout).
    pub status: Option<u16>,
}

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 600_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

pub(super) struct ConnectionStats {
    statuses: BTreeMap<u16, u64>,
    io_errors: u64,
    /// The first failure of each kind, warm-up included.
    first_failures: BTreeMap<&'static str, String>,
    latency: Histogram<u64>,
    /// Latest completion, from the start of the run.
    last_done: Duration,
    outcomes: Option<Vec<Outcome>>,
}

impl ConnectionStats {
    pub(super) fn new(record_outcomes: bool) -> Self {
        Self {
            statuses: BTreeMap::new(),
            io_errors: 0,
            first_failures: BTreeMap::new(),
            latency: histogram(),
            last_done: Duration::ZERO,
            outcomes: record_outcomes.then(Vec::new),
        }
    }

    /// Remembers the first failure of its kind.
    pub(super) fn failed(&mut self, kind: &'static str, detail: String) {
        self.first_failures.entry(kind).or_insert(detail);
    }

    pub(super) fn record(&mut self, outcome: Outcome) {
        match outcome.status {
            Some(status) => {
                *self.statuses.entry(status).or_default() += 1;
                let micros = u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(micros.max(1));
            }
            None => self.io_errors += 1,
        }
        self.last_done = self.last_done.max(outcome.sent_at + outcome.latency);
        if let Some(outcomes) = &mut self.outcomes {
            outcomes.push(outcome);
        }
    }
}

/// The result of a run (warm-up excluded).
pub struct Report {
    /// Requests answered or failed.
    pub requests: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an HTTP response.
    pub io_errors: u64,
    /// The first request failure of each kind (connection refused, timeout, connection reset,
    /// I/O error), warm-up included.
    pub first_failures: BTreeMap<&'static str, String>,
    /// From the end of the warm-up to the last completion.
    pub elapsed: Duration,
    /// Response latency in microseconds (I/O errors excluded).
    pub latency: Histogram<u64>,
    /// Every request's outcome, by sequence number (when asked for).
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub(super) fn merge(stats: Vec<ConnectionStats>, warmup: Duration) -> Self {
        let mut report = Report {
            requests: 0,
            statuses: BTreeMap::new(),
            io_errors: 0,
            first_failures: BTreeMap::new(),
            elapsed: Duration::ZERO,
            latency: histogram(),
            outcomes: Vec::new(),
        };
        let mut last_done = warmup;
        for s in stats {
            for (status, n) in s.statuses {
                *report.statuses.entry(status).or_default() += n;
                report.requests += n;
            }
            report.io_errors += s.io_errors;
            report.requests += s.io_errors;
            for (kind, detail) in s.first_failures {
                report.first_failures.entry(kind).or_insert(detail);
            }
            // Same bounds on both sides: adding cannot fail.
            let _ = report.latency.add(&s.latency);
            last_done = last_done.max(s.last_done);
            report.outcomes.extend(s.outcomes.unwrap_or_default());
        }
        report.outcomes.sort_by_key(|o| o.seq);
        report.elapsed = last_done.saturating_sub(warmup);
        report
    }

    /// Requests per second over the measured window.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// Responses with this status.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Latency at `quantile` (0–1), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn max_latency_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// Requests answered with a status outside `expected`, or not answered at all.
    pub fn unexpected(&self, expected: impl Fn(u16) -> bool) -> u64 {
        let answered: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| !expected(**status))
            .map(|(_, n)| n)
            .sum();
        answered + self.io_errors
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let statuses: serde_json::Map<String, serde_json::Value> = self
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), (*n).into()))
            .collect();
        serde_json::json!({
            "requests": self.requests,
            "statuses": statuses,
            "io_errors": self.io_errors,
            "first_failures": self.first_failures,
            "duration_s": round3(self.elapsed.as_secs_f64()),
            "throughput_per_s": round3(self.throughput()),
            "latency_ms": {
                "p50": self.latency_ms(0.5),
                "p90": self.latency_ms(0.9),
                "p99": self.latency_ms(0.99),
                "p99_9": self.latency_ms(0.999),
                "max": self.max_latency_ms(),
            },
        })
    }

    /// The report as a few lines of text.
    pub fn to_text(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let latency = if self.latency.is_empty() {
            "none: no request was answered".to_string()
        } else {
            format!(
                "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
                self.latency_ms(0.5),
                self.latency_ms(0.9),
                self.latency_ms(0.99),
                self.latency_ms(0.999),
                self.max_latency_ms(),
            )
        };
        let mut text = format!(
            "requests    {} in {:.2} s ({:.0}/s)\nstatuses    {}\nio errors   {}\nlatency     {latency}",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            if statuses.is_empty() { "none".to_string() } else { statuses.join(", ") },
            self.io_errors,
        );
        for (kind, detail) in &self.first_failures {
            text.push_str(&format!("\nfirst {kind}: {detail}"));
        }
        text
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// How long the run is, for the progress bar.
pub(super) enum Total {
    Requests(u64),
    Seconds(f64),
}

/// A progress bar on a terminal, a line every few seconds otherwise, until the run finishes.
pub(super) async fn show_progress(shared: Arc<Shared>, total: Total) {
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let length = match total {
            Total::Requests(n) => n,
            Total::Seconds(s) => s.ceil() as u64,
        };
        let bar = indicatif::ProgressBar::new(length);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let started = tokio::time::Instant::now();
    let mut last = (0, started);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !shared.finished.load(Ordering::Relaxed) {
        tick.tick().await;
        let answered = shared.answered.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let done = answered + failed;
        let rate = (done - last.0) as f64 / now.duration_since(last.1).as_secs_f64().max(1e-3);
        last = (done, now);
        let message = format!("{rate:.0} req/s, {failed} not 2xx");
        match &bar {
            Some(bar) => {
                bar.set_position(match total {
                    Total::Requests(_) => done,
                    Total::Seconds(_) => now.duration_since(started).as_secs(),
                });
                bar.set_message(message);
            }
            None if now.duration_since(started).as_secs().is_multiple_of(5) => {
                eprintln!("load: {done} requests, {message}");
            }
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
