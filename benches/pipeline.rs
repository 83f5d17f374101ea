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
//! Beside the three built-ins (code), the three presets (`github`, `stripe`, `standard-webhooks`)
//! run the generic path: a provider defined in configuration, its fields mapped by JSON pointers
//! and headers.
//!
//! The steps are the library's own functions, called as the server calls them.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::FutureExt;
use hookstream::avro::{self, Framing};
use hookstream::configuration::ProviderSettings;
use hookstream::event::WebhookEvent;
use hookstream::naming;
use hookstream::providers::configured::PRESETS;
use hookstream::providers::{self, Provider, Registry, VerifiedPayload};
use hookstream::signature::{HeaderSource, Secret};
use std::collections::BTreeMap;
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
    ("github", "issues_opened"),
    ("stripe", "payment_intent_succeeded"),
    ("standard-webhooks", "contact_created_full"),
];

/// A Standard Webhooks secret (`whsec_` and base64); the HMAC schemes use its bytes as they are.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A request's headers: the fixture's (`<name>.headers.json`) and the signature's.
struct Headers {
    all: Vec<(String, String)>,
    /// The ones the provider reads besides its signature, as the server captures them.
    captured: Vec<(String, String)>,
}

impl HeaderSource for Headers {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.all
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

/// The built-ins and the presets, each preset under its own name.
fn registry() -> Registry {
    let definitions: Vec<_> = PRESETS
        .iter()
        .map(|p| (*p, ProviderSettings::with_preset(p, SECRET).definition()))
        .collect();
    Registry::with_definitions(definitions.iter().map(|(n, d)| (*n, d))).expect("presets")
}

fn secret_of(provider: &dyn Provider) -> Secret {
    provider
        .signature()
        .parse_secrets(SECRET)
        .expect("secret")
        .remove(0)
}

fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
        .join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_headers(provider: &str, name: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
        .join(format!("{name}.headers.json"));
    std::fs::read_to_string(path)
        .ok()
        .map(|text| {
            serde_json::from_str::<BTreeMap<String, String>>(&text)
                .expect("headers")
                .into_iter()
                .collect()
        })
        .unwrap_or_default()
}

/// Every golden fixture of `provider` that is an event (not a handshake).
fn event_fixtures(provider: &dyn Provider) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider.name());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.ends_with(".json") && !n.ends_with(".expected.json") && !n.ends_with(".headers.json")
        })
        .map(|n| n.trim_end_matches(".json").to_string())
        .filter(|n| !n.starts_with("challenge") && n != "ping")
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

/// The headers of fixture `name` signed now (the signature's timestamp, where there is one, is
/// well within the tolerance for a benchmark's run).
fn signed(provider: &dyn Provider, name: &str, body: &[u8]) -> Headers {
    let scheme = provider.signature();
    let mut all = fixture_headers(provider.name(), name);
    let id = all
        .iter()
        .find(|(n, _)| n == "webhook-id")
        .map_or("msg_bench".to_string(), |(_, v)| v.clone());
    let now = hookstream::signature::now_secs();
    for (header, value) in scheme.sign_at(body, &secret_of(provider), now, &id) {
        all.retain(|(n, _)| !n.eq_ignore_ascii_case(header));
        all.push((header.to_string(), value));
    }
    let captured = provider
        .request_headers()
        .iter()
        .filter_map(|h| {
            all.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| (h.to_string(), v.clone()))
        })
        .collect();
    Headers { all, captured }
}

/// Verify, parse and normalize, as the server does for a signed event.
fn normalize(
    provider: &dyn Provider,
    headers: &Headers,
    body: &[u8],
    secret: &Secret,
) -> WebhookEvent {
    let verified = provider
        .signature()
        .verify(headers, body, std::slice::from_ref(secret))
        .expect("verifies");
    let payload = VerifiedPayload::parse(verified).expect("JSON");
    let request = payload.request(&headers.captured).expect("an object");
    assert!(provider
        .handshake(&request)
        .expect("not a bad handshake")
        .is_none());
    providers::normalize(provider, &payload, &headers.captured, RECEIVED_AT).expect("normalizes")
}

/// Encode and frame for `topic` (single-object framing completes without waiting).
fn framed(framing: &Framing, topic: &str, event: &WebhookEvent) -> Vec<u8> {
    avro::encode_framed(framing, topic, event)
        .now_or_never()
        .expect("single-object framing does not wait")
        .expect("encodes")
}

/// Each provider's main fixture, signed.
fn main_fixtures(registry: &Registry) -> Vec<(&'static dyn Provider, Vec<u8>, Headers, Secret)> {
    MAIN.iter()
        .map(|(name, fixture_name)| {
            let provider = registry.find(name).expect("provider");
            let body = fixture(name, fixture_name);
            let headers = signed(provider, fixture_name, &body);
            (provider, body, headers, secret_of(provider))
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let registry = registry();
    let framing = Framing::single_object();

    let mut group = c.benchmark_group("signature");
    for (provider, body, headers, secret) in main_fixtures(&registry) {
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
    for provider in registry.iter() {
        let secret = secret_of(provider);
        for (name, body) in event_fixtures(provider) {
            let headers = signed(provider, &name, &body);
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
                        providers::normalize(provider, &payload, &headers.captured, RECEIVED_AT)
                            .expect("normalizes")
                    })
                },
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    for (name, fixture_name) in MAIN {
        let provider = registry.find(name).expect("provider");
        let body = fixture(name, fixture_name);
        let secret = secret_of(provider);
        let event = normalize(
            provider,
            &signed(provider, fixture_name, &body),
            &body,
            &secret,
        );
        let topic = naming::topic_name("webhooks", name, &event.event_name);
        group.bench_function(*name, |b| {
            b.iter(|| framed(&framing, &topic, black_box(&event)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("whole");
    for (provider, body, headers, secret) in main_fixtures(&registry) {
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
