//! Micro-benchmarks of the in-process path, one step at a time and whole:
//! `cargo bench` (or `cargo bench -- whole` for one group).
//!
//! - `signature/{provider}`: HMAC verification of the provider's main fixture;
//! - `normalize/{provider}/{fixture}`: parse and normalize, every golden fixture;
//! - `encode/{provider}`: Avro encoding and single-object framing of the normalized record;
//! - `whole/{provider}`: bytes to framed value — verify, parse, normalize, name the topic, encode
//!   and frame — the work a webhook costs before it is handed to Kafka (target for LiveSession
//!   `js_error`: at most 10 µs).
//!
//! The steps are the library's own functions, called as the server calls them.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::FutureExt;
use hookstream::avro::{self, Framing};
use hookstream::event::WebhookEvent;
use hookstream::naming;
use hookstream::providers::{self, Provider, VerifiedPayload};
use hookstream::signature::{HeaderSource, Secret};
use std::hint::black_box;
use std::path::Path;

/// The server's allocator, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECEIVED_AT: i64 = 1_700_000_000_000;

/// The main fixture of each provider (the load generator's too).
const MAIN: &[(&str, &str)] = &[
    ("livesession", "js_error"),
    ("lasoexperience", "user_login"),
    ("seismic", "livesend_session_summary_v3"),
];

struct OneHeader(&'static str, String);

impl HeaderSource for OneHeader {
    fn header(&self, name: &str) -> Option<&[u8]> {
        name.eq_ignore_ascii_case(self.0)
            .then_some(self.1.as_bytes())
    }
}

fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
        .join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every golden fixture of `provider` that is an event (not a handshake).
fn event_fixtures(provider: &dyn Provider) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider.name());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && !n.ends_with(".expected.json"))
        .map(|n| n.trim_end_matches(".json").to_string())
        .filter(|n| !n.starts_with("challenge"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let body = fixture(provider.name(), &n);
            (n, body)
        })
        .collect()
}

fn signed(provider: &dyn Provider, body: &[u8], secret: &Secret) -> OneHeader {
    let scheme = provider.signature();
    OneHeader(scheme.primary_header(), scheme.sign(body, secret))
}

/// Verify, parse and normalize, as the server does for a signed event.
fn normalize(
    provider: &dyn Provider,
    headers: &OneHeader,
    body: &[u8],
    secret: &Secret,
) -> WebhookEvent {
    let verified = provider
        .signature()
        .verify(headers, body, std::slice::from_ref(secret))
        .expect("verifies");
    let payload = VerifiedPayload::parse(verified).expect("JSON");
    assert!(payload
        .object()
        .map(|o| provider
            .handshake(o)
            .expect("not a bad handshake")
            .is_none())
        .unwrap_or(true));
    providers::normalize(provider, &payload, RECEIVED_AT).expect("normalizes")
}

/// Encode and frame for `topic` (single-object framing completes without waiting).
fn framed(framing: &Framing, topic: &str, event: &WebhookEvent) -> Vec<u8> {
    avro::encode_framed(framing, topic, event)
        .now_or_never()
        .expect("single-object framing does not wait")
        .expect("encodes")
}

/// Each provider's main fixture, signed with `secret`.
fn main_fixtures(secret: &Secret) -> Vec<(&'static dyn Provider, Vec<u8>, OneHeader)> {
    MAIN.iter()
        .map(|(name, fixture_name)| {
            let provider = providers::find(name).expect("provider");
            let body = fixture(name, fixture_name);
            let headers = signed(provider, &body, secret);
            (provider, body, headers)
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let secret = Secret::new("bench-secret");
    let framing = Framing::single_object();

    let mut group = c.benchmark_group("signature");
    for (provider, body, headers) in main_fixtures(&secret) {
        group.bench_function(provider.name(), |b| {
            b.iter(|| {
                provider
                    .signature()
                    .verify(
                        black_box(&headers),
                        black_box(&body),
                        std::slice::from_ref(&secret),
                    )
                    .is_ok()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("normalize");
    for provider in providers::REGISTRY {
        for (name, body) in event_fixtures(*provider) {
            let headers = signed(*provider, &body, &secret);
            let verified = provider
                .signature()
                .verify(&headers, &body, std::slice::from_ref(&secret))
                .expect("verifies");
            group.bench_with_input(
                BenchmarkId::new(provider.name(), &name),
                &verified,
                |b, verified| {
                    b.iter(|| {
                        let payload = VerifiedPayload::parse(*black_box(verified)).expect("JSON");
                        providers::normalize(*provider, &payload, RECEIVED_AT).expect("normalizes")
                    })
                },
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    for (name, fixture_name) in MAIN {
        let provider = providers::find(name).expect("provider");
        let body = fixture(name, fixture_name);
        let event = normalize(provider, &signed(provider, &body, &secret), &body, &secret);
        let topic = naming::topic_name("webhooks", name, &event.event_name);
        group.bench_function(*name, |b| {
            b.iter(|| framed(&framing, &topic, black_box(&event)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("whole");
    for (provider, body, headers) in main_fixtures(&secret) {
        group.bench_function(provider.name(), |b| {
            b.iter(|| {
                let event = normalize(provider, black_box(&headers), black_box(&body), &secret);
                let topic = naming::topic_name("webhooks", provider.name(), &event.event_name);
                framed(&framing, &topic, &event)
            })
        });
    }
    group.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
