//! The latest rejected deliveries, per provider: what "why did my webhook fail?" needs — when,
//! from which address, the answer's error code, which of the headers the provider's signature
//! and mapping read came, the body's length and SHA-256, and for a signature that did not match
//! whether it parsed and how many secrets were tried — and never a body, a header's value, a
//! signature or a secret: only names, numbers, a digest and a code are recorded.
//!
//! Bounded: the last [`PER_PROVIDER`] per provider, and as many for requests to paths that name
//! no provider (under [`UNKNOWN`]); never more than [`TOTAL`] in all (with more providers, each
//! keeps fewer). At most [`PER_PROVIDER`] a second are recorded per provider: a flood of bad
//! requests costs a lock each, not a digest each (the metrics count every one). In memory, per
//! process: served on the admin port (`GET /rejections`), printed by `hookstream rejections`,
//! gone with a restart.
//!
//! Length: a third of it is the tests of its bounds.

use crate::codes::ErrorCode;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Rejections kept per provider (fewer when there are more than 99 providers: see [`TOTAL`]).
pub const PER_PROVIDER: usize = 100;
/// Rejections kept in all.
pub const TOTAL: usize = 10_000;
/// The bucket of requests to a path that names no provider.
pub const UNKNOWN: &str = "unknown";

/// Whether a request carried a header (by name, case-insensitively): all the record asks of one.
pub trait HeaderNames {
    fn present(&self, name: &str) -> bool;
}

/// What became of the signature check, when it decided the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// A header the signature needs was not sent.
    Missing { header: &'static str },
    /// A header the signature needs is not in the scheme's form: nothing was compared.
    Malformed { header: &'static str },
    /// Well-formed, and compared under each of `secrets_tried` secrets, none matching.
    Mismatch { secrets_tried: usize },
    /// The signed timestamp is too far from now: nothing was compared.
    Expired { skew_secs: u64, tolerance_secs: u64 },
}

/// One rejected request, as the HTTP layer sees it.
pub struct Delivery<'a> {
    /// The peer's address (hookstream honours no forwarding header).
    pub remote: Option<SocketAddr>,
    pub status: u16,
    pub headers: &'a dyn HeaderNames,
    /// The length the request declared (`Content-Length`), as a number.
    pub content_length: Option<u64>,
    /// The whole body, when it was read: only its length and SHA-256 are kept.
    pub body: Option<&'a [u8]>,
    pub signature: Option<SignatureCheck>,
}

/// A body's length and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BodyDigest {
    length: u64,
    sha256: [u8; 32],
}

/// A recorded rejection: names, numbers, a digest and a code.
#[derive(Debug, Clone)]
struct Recorded {
    /// Orders rejections across providers, newest last.
    sequence: u64,
    at: SystemTime,
    provider: &'static str,
    code: ErrorCode,
    status: u16,
    remote: Option<SocketAddr>,
    /// Each header the provider reads, and whether it came.
    headers: Vec<(&'static str, bool)>,
    content_length: Option<u64>,
    body: Option<BodyDigest>,
    signature: Option<SignatureCheck>,
}

/// One provider's rejections, and how many were recorded in the current second.
struct Bucket {
    /// The headers the provider's signature and mapping read.
    expected: Vec<&'static str>,
    state: Mutex<BucketState>,
}

struct BucketState {
    entries: VecDeque<Recorded>,
    second: Instant,
    admitted: usize,
}

/// The latest rejected deliveries of every provider (see the module's documentation).
pub struct Rejections {
    /// Replaced when a reload changes the providers ([`Rejections::follow`]).
    buckets: parking_lot::RwLock<HashMap<&'static str, std::sync::Arc<Bucket>>>,
    per_provider: std::sync::atomic::AtomicUsize,
    sequence: AtomicU64,
}

impl Rejections {
    /// A record for these providers (name, and the headers it reads), plus [`UNKNOWN`].
    pub fn new(providers: Vec<(&'static str, Vec<&'static str>)>) -> Self {
        let rejections = Self {
            buckets: parking_lot::RwLock::new(HashMap::new()),
            per_provider: std::sync::atomic::AtomicUsize::new(PER_PROVIDER),
            sequence: AtomicU64::new(0),
        };
        rejections.follow(providers);
        rejections
    }

    /// Follows the providers served now (a reload added, removed or changed some): a provider
    /// whose expected headers are unchanged keeps its bucket; a changed one keeps its entries
    /// under its new headers; a removed one's go.
    pub fn follow(&self, providers: Vec<(&'static str, Vec<&'static str>)>) {
        let mut buckets = self.buckets.write();
        let mut next: HashMap<&'static str, std::sync::Arc<Bucket>> = providers
            .into_iter()
            .map(|(name, expected)| {
                let bucket = match buckets.get(name) {
                    Some(old) if old.expected == expected => old.clone(),
                    Some(old) => std::sync::Arc::new(Bucket::with_entries(
                        expected,
                        old.state.lock().entries.clone(),
                    )),
                    None => std::sync::Arc::new(Bucket::new(expected)),
                };
                (name, bucket)
            })
            .collect();
        let unknown = buckets
            .remove(UNKNOWN)
            .unwrap_or_else(|| std::sync::Arc::new(Bucket::new(Vec::new())));
        next.insert(UNKNOWN, unknown);
        self.per_provider.store(
            (TOTAL / next.len()).clamp(1, PER_PROVIDER),
            Ordering::Relaxed,
        );
        *buckets = next;
    }

    /// How many rejections are kept per provider.
    pub fn per_provider(&self) -> usize {
        self.per_provider.load(Ordering::Relaxed)
    }

    /// Records a rejection of `provider` (a name with no bucket goes to [`UNKNOWN`]), unless
    /// [`PER_PROVIDER`] were recorded for it in the current second already.
    pub fn record(&self, provider: &'static str, code: ErrorCode, delivery: Delivery<'_>) {
        let found = {
            let buckets = self.buckets.read();
            buckets
                .get_key_value(provider)
                .or_else(|| buckets.get_key_value(UNKNOWN))
                .map(|(name, bucket)| (*name, bucket.clone()))
        };
        let Some((provider, bucket)) = found else {
            return;
        };
        if !bucket.admit(Instant::now()) {
            return;
        }
        let recorded = Recorded {
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed),
            at: SystemTime::now(),
            provider,
            code,
            status: delivery.status,
            remote: delivery.remote,
            headers: bucket
                .expected
                .iter()
                .map(|name| (*name, delivery.headers.present(name)))
                .collect(),
            content_length: delivery.content_length,
            body: delivery.body.map(|body| BodyDigest {
                length: body.len() as u64,
                sha256: Sha256::digest(body).into(),
            }),
            signature: delivery.signature,
        };
        let per_provider = self.per_provider();
        let mut state = bucket.state.lock();
        while state.entries.len() >= per_provider {
            state.entries.pop_front();
        }
        state.entries.push_back(recorded);
    }

    /// Newest first: `provider`'s (or [`UNKNOWN`]'s), or every provider's for `None`; `None`
    /// when no provider has that name.
    pub fn newest_first(&self, provider: Option<&str>) -> Option<Vec<Entry>> {
        let buckets = self.buckets.read();
        let mut recorded: Vec<Recorded> = match provider {
            Some(name) => buckets.get(name)?.state.lock().entries.clone().into(),
            None => buckets
                .values()
                .flat_map(|bucket| bucket.state.lock().entries.clone())
                .collect(),
        };
        recorded.sort_unstable_by_key(|r| std::cmp::Reverse(r.sequence));
        Some(recorded.iter().map(Entry::of).collect())
    }
}

impl Bucket {
    fn new(expected: Vec<&'static str>) -> Self {
        Self::with_entries(expected, VecDeque::new())
    }

    fn with_entries(expected: Vec<&'static str>, entries: VecDeque<Recorded>) -> Self {
        Self {
            expected,
            state: Mutex::new(BucketState {
                entries,
                second: Instant::now(),
                admitted: 0,
            }),
        }
    }

    /// Whether one more may be recorded in the current second.
    fn admit(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        if now.duration_since(state.second) >= Duration::from_secs(1) {
            state.second = now;
            state.admitted = 0;
        }
        if state.admitted >= PER_PROVIDER {
            return false;
        }
        state.admitted += 1;
        true
    }
}

/// `GET /rejections`: how many are kept per provider, and the rejections, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub kept_per_provider: usize,
    pub rejections: Vec<Entry>,
}

/// A rejection as served and printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC, in milliseconds.
    pub time: String,
    /// The provider's name, or `unknown` for a path that names none.
    pub provider: String,
    /// The peer's address, `ip:port`.
    pub remote_addr: Option<String>,
    /// The answer's error code.
    pub reason: String,
    pub status: u16,
    /// Of the headers the provider's signature and mapping read, those that came…
    pub headers_present: Vec<String>,
    /// …and those that did not.
    pub headers_missing: Vec<String>,
    /// The length the request declared.
    pub content_length: Option<u64>,
    /// The whole body's length, when it was read (a request refused before its body was read,
    /// or whose body did not arrive whole, has none).
    pub body_bytes: Option<u64>,
    /// The whole body's SHA-256, hexadecimal, when it was read.
    pub body_sha256: Option<String>,
    /// For `invalid_signature`: whether the signature header was well-formed…
    pub signature_parsed: Option<bool>,
    /// …and under how many secrets it was compared.
    pub secrets_tried: Option<usize>,
    /// What the reason most likely means, in a sentence.
    pub hint: String,
}

impl Entry {
    fn of(r: &Recorded) -> Self {
        let names = |present: bool| {
            r.headers
                .iter()
                .filter(|(_, p)| *p == present)
                .map(|(name, _)| (*name).to_string())
                .collect()
        };
        let (signature_parsed, secrets_tried) = match (r.code, r.signature) {
            (ErrorCode::InvalidSignature, Some(SignatureCheck::Mismatch { secrets_tried })) => {
                (Some(true), Some(secrets_tried))
            }
            (ErrorCode::InvalidSignature, Some(_)) => (Some(false), Some(0)),
            _ => (None, None),
        };
        Entry {
            time: humantime::format_rfc3339_millis(r.at).to_string(),
            provider: r.provider.to_string(),
            remote_addr: r.remote.map(|a| a.to_string()),
            reason: r.code.as_str().to_string(),
            status: r.status,
            headers_present: names(true),
            headers_missing: names(false),
            content_length: r.content_length,
            body_bytes: r.body.map(|b| b.length),
            body_sha256: r.body.map(|b| hex::encode(b.sha256)),
            signature_parsed,
            secrets_tried,
            hint: hint(r),
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What the rejection most likely means: from its code and what the signature check found.
fn hint(r: &Recorded) -> String {
    let provider = r.provider;
    match (r.code, r.signature) {
        (ErrorCode::InvalidSignature, Some(SignatureCheck::Mismatch { secrets_tried })) => format!(
            "the signature header parsed and {} tried, {} matching: the sender signs with a secret that is not in providers.{provider}.secrets, or the body was changed on the way (a proxy that re-serialized the JSON): compare the body's SHA-256 here with that of the body the sender sent",
            plural(secrets_tried, "secret was", "secrets were"),
            if secrets_tried == 1 { "not" } else { "none" }
        ),
        (ErrorCode::InvalidSignature, Some(SignatureCheck::Malformed { header })) => format!(
            "the {header} header is not in the form {provider} signs with, so no secret was tried: a sender that signs another way (another provider's URL?), or a proxy that rewrote the header"
        ),
        (_, Some(SignatureCheck::Missing { header })) => format!(
            "no {header} header: the sender did not sign the request (is this the provider's URL, and is signing turned on there?), or a proxy on the way strips the header{}",
            if r.body.is_none() { "; the body was not read" } else { "" }
        ),
        (_, Some(SignatureCheck::Expired { skew_secs, tolerance_secs })) => format!(
            "the signed timestamp is {skew_secs} s away from this server's clock, more than the tolerance of {tolerance_secs} s: a request replayed later, or a clock far off on either side"
        ),
        (ErrorCode::InvalidJson, _) => "the signature matched, but the body is not UTF-8 JSON (dead_letter.enabled = false, so it was not kept)".into(),
        (ErrorCode::InvalidPayload, _) => format!(
            "the signature matched, but the JSON is not what {provider} is read as: the log line of this rejection names the field"
        ),
        (ErrorCode::PayloadTooLarge, _) => "the body is larger than server.max_body_bytes (or the record than the broker takes): raise the limit if the sender's events are this large".into(),
        (ErrorCode::UnknownProvider, _) => "the path names no configured provider: check the URL's last segment against the providers' names".into(),
        (ErrorCode::ProviderDisabled, _) => format!(
            "{provider} has no secret configured: set providers.{provider}.secrets"
        ),
        (ErrorCode::RequestTimeout, _) => "the body did not arrive within server.body_timeout: a slow or stalled sender or network".into(),
        (ErrorCode::InvalidBody, _) => "the body could not be read: the connection broke while it was being sent".into(),
        (ErrorCode::Overloaded, _) => "hookstream had too many connections, bodies or requests at once: the sender's retry gets through".into(),
        (
            ErrorCode::BrokerUnavailable
            | ErrorCode::SchemaRegistryUnavailable
            | ErrorCode::DedupeUnavailable
            | ErrorCode::ShuttingDown,
            _,
        ) => "hookstream could not write it now (503 with Retry-After): /readyz names the dependency; the sender's retry delivers it once it is back".into(),
        (ErrorCode::ProduceFailed, _) => "the broker refused the write for good (an authorization or topic configuration): the log line names it".into(),
        (ErrorCode::InternalError, _) => "a fault in hookstream: the log line says more".into(),
        (
            ErrorCode::InvalidSignature
            | ErrorCode::MissingSignature
            | ErrorCode::SignatureExpired
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::InvalidQuery,
            _,
        ) => format!("answered {}", r.code.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sent(&'static [&'static str]);
    impl HeaderNames for Sent {
        fn present(&self, name: &str) -> bool {
            self.0.iter().any(|n| n.eq_ignore_ascii_case(name))
        }
    }

    fn delivery<'a>(
        headers: &'a Sent,
        body: Option<&'a [u8]>,
        signature: Option<SignatureCheck>,
    ) -> Delivery<'a> {
        Delivery {
            remote: Some("192.0.2.7:40000".parse().expect("address")),
            status: 401,
            headers,
            content_length: body.map(|b| b.len() as u64),
            body,
            signature,
        }
    }

    fn record() -> Rejections {
        Rejections::new(vec![
            ("livesession", vec!["LiveSession-Signature"]),
            (
                "seismic",
                vec!["x-seismic-signature", "x-seismic-signature-old"],
            ),
        ])
    }

    #[test]
    fn a_mismatch_keeps_names_lengths_a_digest_and_counts() {
        let rejections = record();
        let sent = Sent(&["liveSession-signature"]);
        rejections.record(
            "livesession",
            ErrorCode::InvalidSignature,
            delivery(
                &sent,
                Some(b"abc"),
                Some(SignatureCheck::Mismatch { secrets_tried: 2 }),
            ),
        );
        let entries = rejections
            .newest_first(Some("livesession"))
            .expect("a provider");
        let entry = &entries[0];
        assert_eq!(entry.reason, "invalid_signature");
        assert_eq!(entry.headers_present, ["LiveSession-Signature"]);
        assert!(entry.headers_missing.is_empty());
        assert_eq!(entry.body_bytes, Some(3));
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            entry.body_sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            (entry.signature_parsed, entry.secrets_tried),
            (Some(true), Some(2))
        );
        assert!(
            entry.hint.contains("2 secrets were tried"),
            "{}",
            entry.hint
        );
        assert_eq!(entry.remote_addr.as_deref(), Some("192.0.2.7:40000"));
        assert!(
            entry.time.ends_with('Z') && entry.time.len() == 24,
            "{}",
            entry.time
        );
    }

    #[test]
    fn each_provider_keeps_its_last_hundred_newest_first_and_unknown_names_share_one_bucket() {
        let rejections = record();
        let sent = Sent(&[]);
        let missing = Some(SignatureCheck::Missing {
            header: "x-seismic-signature",
        });
        for length in 0..(PER_PROVIDER as u64 + 5) {
            rejections.record(
                "seismic",
                ErrorCode::MissingSignature,
                Delivery {
                    content_length: Some(length),
                    ..delivery(&sent, None, missing)
                },
            );
            // At most a hundred are recorded a second: the second is restarted by hand here
            // rather than waited for.
            rejections.buckets.read()["seismic"].state.lock().admitted = 0;
        }
        rejections.record(
            "nope",
            ErrorCode::UnknownProvider,
            delivery(&sent, None, None),
        );
        let seismic = rejections
            .newest_first(Some("seismic"))
            .expect("a provider");
        assert_eq!(seismic.len(), PER_PROVIDER);
        let lengths: Vec<_> = seismic
            .iter()
            .map(|e| e.content_length.unwrap_or(u64::MAX))
            .collect();
        assert_eq!(lengths.first(), Some(&104));
        assert_eq!(lengths.last(), Some(&5));
        assert_eq!(
            seismic[0].headers_missing,
            ["x-seismic-signature", "x-seismic-signature-old"]
        );
        let unknown = rejections
            .newest_first(Some(UNKNOWN))
            .expect("the unknown bucket");
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].provider, UNKNOWN);
        assert!(rejections.newest_first(Some("nope")).is_none());
        let all = rejections.newest_first(None).expect("all");
        assert_eq!(all.len(), PER_PROVIDER + 1);
        assert_eq!(
            all[0].reason, "unknown_provider",
            "newest first across providers"
        );
    }

    #[test]
    fn a_flood_records_a_hundred_a_second_per_provider() {
        let rejections = record();
        let sent = Sent(&[]);
        for _ in 0..1000 {
            rejections.record(
                "livesession",
                ErrorCode::MissingSignature,
                delivery(&sent, None, None),
            );
        }
        assert_eq!(
            rejections
                .newest_first(Some("livesession"))
                .map(|e| e.len()),
            Some(PER_PROVIDER)
        );
        let second = rejections.buckets.read()["livesession"].state.lock().second;
        rejections.buckets.read()["livesession"].state.lock().second =
            second - Duration::from_secs(1);
        rejections.record(
            "livesession",
            ErrorCode::InvalidJson,
            delivery(&sent, None, None),
        );
        let entries = rejections
            .newest_first(Some("livesession"))
            .expect("a provider");
        assert_eq!(
            entries[0].reason, "invalid_json",
            "admitted again the next second"
        );
    }

    #[test]
    fn a_reload_names_a_provider_it_added_and_keeps_the_entries_of_one_it_changed() {
        let rejections = Rejections::new(vec![("livesession", vec!["LiveSession-Signature"])]);
        let sent = Sent(&[]);
        rejections.record(
            "stripe2",
            ErrorCode::InvalidSignature,
            delivery(&sent, None, None),
        );
        rejections.record(
            "livesession",
            ErrorCode::InvalidSignature,
            delivery(&sent, None, None),
        );
        assert!(
            rejections.newest_first(Some("stripe2")).is_none(),
            "not served yet"
        );
        rejections.follow(vec![
            ("livesession", vec!["X-Other-Signature"]),
            ("stripe2", vec!["Stripe-Signature"]),
        ]);
        rejections.record(
            "stripe2",
            ErrorCode::InvalidSignature,
            delivery(&sent, None, None),
        );
        assert_eq!(
            rejections.newest_first(Some("stripe2")).map(|e| e.len()),
            Some(1)
        );
        assert_eq!(
            rejections
                .newest_first(Some("livesession"))
                .map(|e| e.len()),
            Some(1),
            "kept across the change"
        );
        assert_eq!(
            rejections.newest_first(Some(UNKNOWN)).map(|e| e.len()),
            Some(1),
            "what came before stays where it was recorded"
        );
    }

    #[test]
    fn the_total_is_bounded_however_many_providers_there_are() {
        let names: Vec<(&'static str, Vec<&'static str>)> = (0..400)
            .map(|i| (&*Box::leak(format!("p{i}").into_boxed_str()), Vec::new()))
            .collect();
        let rejections = Rejections::new(names);
        assert_eq!(rejections.per_provider(), TOTAL / 401);
        assert!(rejections.per_provider() * 401 <= TOTAL);
    }
}
