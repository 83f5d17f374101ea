//! The application harness: hookstream on port 0 against the test broker, and its HTTP client.

use super::kafka::{consumer, read_blocking};
use super::tools::{free_port, start_own_broker};
use hookstream::configuration::{get_configuration, ProviderSettings, Settings};
use hookstream::kafka::KafkaSink;
use hookstream::providers;
use hookstream::signature::Secret;
use hookstream::startup::Application;
use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The secret every test app is configured with for every provider, and every hookstream
/// process of the tests for LiveSession.
pub const SECRET: &str = "test-secret-\u{00e9}-1";

pub struct TestApp {
    /// The public port's base URL: `/webhooks/*`, `/healthz`.
    pub address: String,
    pub port: u16,
    /// The admin port's base URL: `/metrics`, `/healthz`, `/readyz`.
    pub admin_address: String,
    pub brokers: String,
    /// Unique per test, so tests never see each other's topics.
    pub prefix: String,
    pub client: reqwest::Client,
    /// The app's Kafka sink, for injecting producer faults (in-process apps only).
    pub sink: Option<Arc<KafkaSink>>,
}

/// The tests' HTTP client. It lets an idle connection go after 2 s, before the server's
/// keep-alive (5 s) closes it: a request sent on a connection the server is closing at that moment
/// fails without an answer, and a test that waits between webhooks would see that, not hookstream.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client")
}

/// A parsed webhook response.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    /// Sends `request` and reads the whole answer.
    pub async fn read(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text))
    }

    /// The `detail` of a JSON answer (an error or a dead letter); empty when it has none.
    pub fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Asserts an error reply: status, code, and a non-empty detail.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text);
        let json = self.json();
        assert_eq!(json["error"], code, "body: {}", self.text);
        let detail = self.detail();
        assert!(!detail.is_empty(), "error detail missing: {}", self.text);
        assert_eq!(
            json.as_object().map(|o| o.len()),
            Some(2),
            "only error and detail: {}",
            self.text
        );
        detail
    }
}

/// The broker every test app writes to: `HOOKSTREAM_TEST_BROKERS` (set by `scripts/test`), or
/// else a throwaway Tansu this test process starts once (and which dies with it).
pub fn test_brokers() -> String {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS
        .get_or_init(|| match std::env::var("HOOKSTREAM_TEST_BROKERS") {
            Ok(brokers) => brokers,
            Err(_) => own_test_broker(),
        })
        .clone()
}

fn own_test_broker() -> String {
    let port = free_port();
    for_the_whole_process(
        move || start_own_broker(port),
        move |_| format!("127.0.0.1:{port}"),
    )
}

/// Starts what `start` makes on a thread of its own that never ends, and returns `address` of it:
/// it is started with a parent-death signal, which follows the thread that started it.
fn for_the_whole_process<T, F>(
    start: impl FnOnce() -> F + Send + 'static,
    address: impl FnOnce(&T) -> String + Send + 'static,
) -> String
where
    F: std::future::Future<Output = T>,
    T: 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let guard = runtime.block_on(start());
        let _ = tx.send(address(&guard));
        loop {
            std::thread::park();
            let _ = &guard;
        }
    });
    rx.recv().expect("started for the whole test process")
}

/// The Redis every test that needs one shares: `HOOKSTREAM_TEST_REDIS` (a `redis://` URL set by
/// `scripts/test`), or else a throwaway `redis-server` this test process starts once. Tests keep
/// apart through key prefixes of their own.
pub fn test_redis() -> String {
    static REDIS: OnceLock<String> = OnceLock::new();
    REDIS
        .get_or_init(|| match std::env::var("HOOKSTREAM_TEST_REDIS") {
            Ok(url) => url,
            Err(_) => own_test_redis(),
        })
        .clone()
}

fn own_test_redis() -> String {
    for_the_whole_process(
        super::tools::RedisServer::start,
        super::tools::RedisServer::url,
    )
}

pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "test-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// An app that answers deliveries it cannot normalize with 400 instead of dead-lettering them.
pub async fn spawn_app_without_dead_letters() -> TestApp {
    spawn_app_with(|s| s.dead_letter.enabled = false).await
}

/// Starts the server on a random port with every provider enabled; `customize` may change
/// anything before it is built.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = get_configuration(Path::new("config")).expect("configuration loads");
    // HOOKSTREAM_TEST_LOG=debug (any tracing filter) shows the apps' logs.
    if let Ok(level) = std::env::var("HOOKSTREAM_TEST_LOG") {
        settings.log.level = level;
        settings.log.format = "pretty".into();
        hookstream::telemetry::init(&settings.log);
    }
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.admin_port = 0;
    settings.server.readiness_interval = Duration::from_millis(200);
    settings.kafka.brokers = test_brokers();
    settings.kafka.topic_prefix = unique_prefix();
    settings.kafka.topic_partitions = 1;
    settings.kafka.ack_timeout = Duration::from_secs(15);
    for p in providers::BUILT_IN {
        settings
            .providers
            .insert(p.name().to_string(), ProviderSettings::with_secrets(SECRET));
    }
    customize(&mut settings);
    let brokers = settings.kafka.brokers.clone();
    let prefix = settings.kafka.topic_prefix.clone();
    let app = Application::build(settings).expect("application builds");
    let port = app.port();
    let admin_address = format!("http://127.0.0.1:{}", app.admin_port());
    let sink = Some(app.kafka());
    let address = format!("http://127.0.0.1:{port}");
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        port,
        admin_address,
        brokers,
        prefix,
        client: client(),
        sink,
    }
}

/// The primary signature header name and value a provider would send for `body`.
pub fn sign(provider: &str, body: &[u8], secret: &str) -> (String, String) {
    let scheme = providers::built_in(provider).expect("provider").signature();
    (
        scheme.primary_header().to_string(),
        scheme.sign_value(body, &Secret::new(secret)),
    )
}

pub fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = format!("tests/fixtures/{provider}/{name}.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl TestApp {
    /// A view of the topics under `prefix` on `brokers`, with no server behind it: for reading
    /// back what a test or another process wrote.
    pub fn reading(brokers: &str, prefix: &str) -> TestApp {
        TestApp {
            address: String::new(),
            port: 0,
            admin_address: String::new(),
            brokers: brokers.to_string(),
            prefix: prefix.to_string(),
            client: client(),
            sink: None,
        }
    }

    pub fn kafka(&self) -> &KafkaSink {
        self.sink.as_deref().expect("an in-process app")
    }

    /// The sum of the metric's series whose labels contain `labels` (all of them for "").
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.admin("/metrics").await.text;
        text.lines()
            .filter(|l| {
                l.starts_with(name) && l[name.len()..].starts_with([' ', '{']) && l.contains(labels)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn post(&self, provider: &str, body: Vec<u8>, headers: &[(String, String)]) -> Reply {
        let mut request = self
            .client
            .post(format!("{}/webhooks/{provider}", self.address))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        Reply::read(request).await
    }

    pub async fn post_signed(&self, provider: &str, body: Vec<u8>) -> Reply {
        let header = sign(provider, &body, SECRET);
        self.post(provider, body, &[header]).await
    }

    /// GET on the public port.
    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.client.get(format!("{}{path}", self.address))).await
    }

    /// GET on the admin port.
    pub async fn admin(&self, path: &str) -> Reply {
        Reply::read(self.client.get(format!("{}{path}", self.admin_address))).await
    }

    pub fn topic(&self, provider: &str, event_name: &str) -> String {
        format!("{}.{provider}.{event_name}", self.prefix)
    }

    pub fn dead_letter_topic(&self) -> String {
        format!("{}.dead_letter", self.prefix)
    }

    /// Reads `expected` messages from every partition of `topic` (waiting up to 20 s), then
    /// checks for one more for a short while so that extra messages are noticed.
    pub async fn read_messages(&self, topic: &str, expected: usize) -> Vec<OwnedMessage> {
        let brokers = self.brokers.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || read_blocking(&brokers, &topic, expected))
            .await
            .expect("consumer task")
    }

    /// Topics whose name starts with this app's prefix: none means nothing reached Kafka.
    pub async fn own_topics(&self) -> Vec<String> {
        let brokers = self.brokers.clone();
        let prefix = format!("{}.", self.prefix);
        tokio::task::spawn_blocking(move || {
            let consumer = consumer(&brokers);
            let metadata = consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .expect("metadata");
            metadata
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .await
        .expect("metadata task")
    }

    pub async fn assert_nothing_produced(&self) {
        let topics = self.own_topics().await;
        assert!(topics.is_empty(), "expected no topics, found {topics:?}");
    }
}

/// A body with one JSON field changed.
pub fn with_json(body: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(body).expect("fixture JSON");
    edit(&mut json);
    serde_json::to_vec(&json).expect("serializable")
}

/// Polls `path` of the admin port until it answers `status` (at most 30 s) and returns the last
/// reply.
pub async fn wait_for_status(app: &TestApp, path: &str, status: u16) -> Reply {
    wait_for(app, path, |r| r.status == status).await
}

/// Polls `path` of the admin port until it answers `status` with error `code` (at most 30 s);
/// returns the last reply.
pub async fn wait_for_error(app: &TestApp, path: &str, status: u16, code: &str) -> Reply {
    wait_for(app, path, |r| {
        r.status == status
            && serde_json::from_str::<serde_json::Value>(&r.text).is_ok_and(|j| j["error"] == code)
    })
    .await
}

pub async fn wait_for(app: &TestApp, path: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = app.admin(path).await;
        if done(&reply) || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
