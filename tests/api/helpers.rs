use apache_avro::types::Value;
use hookstream::configuration::{get_configuration, ProviderSettings, Settings};
use hookstream::providers;
use hookstream::signature::Secret;
use hookstream::startup::Application;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The secret every test app is configured with for every provider.
pub const SECRET: &str = "test-secret-\u{00e9}-1";

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub brokers: String,
    /// Unique per test, so tests never see each other's topics.
    pub prefix: String,
    pub client: reqwest::Client,
}

/// A parsed webhook response.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text))
    }

    /// Asserts an error reply: status, code, and a non-empty detail.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text);
        let json = self.json();
        assert_eq!(json["error"], code, "body: {}", self.text);
        let detail = json["detail"].as_str().unwrap_or_default().to_string();
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

pub fn test_brokers() -> String {
    std::env::var("HOOKSTREAM_TEST_BROKERS").unwrap_or_else(|_| {
        panic!("HOOKSTREAM_TEST_BROKERS is not set: run the tests with scripts/test, which starts a broker")
    })
}

fn unique_prefix() -> String {
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

/// Starts the server on a random port with every provider enabled; `customize` may change
/// anything before it is built.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = get_configuration(Path::new("config")).expect("configuration loads");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.readiness_interval = Duration::from_millis(200);
    settings.kafka.brokers = test_brokers();
    settings.kafka.topic_prefix = unique_prefix();
    settings.kafka.topic_partitions = 1;
    settings.kafka.ack_timeout = Duration::from_secs(15);
    for p in providers::REGISTRY {
        settings
            .providers
            .insert(p.name().to_string(), ProviderSettings::with_secrets(SECRET));
    }
    customize(&mut settings);
    let brokers = settings.kafka.brokers.clone();
    let prefix = settings.kafka.topic_prefix.clone();
    let app = Application::build(settings).expect("application builds");
    let port = app.port();
    let address = format!("http://127.0.0.1:{port}");
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        port,
        brokers,
        prefix,
        client: reqwest::Client::new(),
    }
}

/// The primary signature header name and value a provider would send for `body`.
pub fn sign(provider: &str, body: &[u8], secret: &str) -> (String, String) {
    let scheme = providers::find(provider).expect("provider").signature();
    (
        scheme.primary_header().to_string(),
        scheme.sign(body, &Secret::new(secret)),
    )
}

pub fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = format!("tests/fixtures/{provider}/{name}.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl TestApp {
    pub async fn post(&self, provider: &str, body: Vec<u8>, headers: &[(String, String)]) -> Reply {
        let mut request = self
            .client
            .post(format!("{}/webhooks/{provider}", self.address))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.expect("request sent");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    pub async fn post_signed(&self, provider: &str, body: Vec<u8>) -> Reply {
        let header = sign(provider, &body, SECRET);
        self.post(provider, body, &[header]).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    pub fn topic(&self, provider: &str, event_name: &str) -> String {
        format!("{}.{provider}.{event_name}", self.prefix)
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

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hookstream-tests")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

fn read_blocking(brokers: &str, topic: &str, expected: usize) -> Vec<OwnedMessage> {
    let consumer = consumer(brokers);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("partition");
    }
    assert!(assignment.count() > 0, "topic {topic} has no partitions");
    consumer.assign(&assignment).expect("assign");
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut extra_deadline = None;
    loop {
        let now = Instant::now();
        if messages.len() >= expected {
            let until = *extra_deadline.get_or_insert(now + Duration::from_millis(1500));
            if now >= until {
                break;
            }
        } else if now >= deadline {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => messages.push(m.detach()),
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    assert_eq!(messages.len(), expected, "messages read back from {topic}");
    messages
}

pub fn headers_of(message: &OwnedMessage) -> HashMap<String, String> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn key_of(message: &OwnedMessage) -> Option<String> {
    message
        .key()
        .map(|k| String::from_utf8(k.to_vec()).expect("UTF-8 key"))
}

/// Decodes a message value the way a consumer holding only the `.avsc` file would: check the
/// single-object marker and fingerprint, then read the datum with a stock Avro reader.
pub fn decode(message: &OwnedMessage) -> HashMap<String, Value> {
    let schema_text = std::fs::read_to_string("avro/webhook_event.avsc").expect("schema file");
    let schema = apache_avro::Schema::parse_str(&schema_text).expect("schema parses");
    let value = message.payload().expect("message has a value");
    assert_eq!(&value[..2], &[0xC3, 0x01], "single-object marker");
    let fingerprint = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    assert_eq!(&value[2..10], fingerprint.as_slice(), "schema fingerprint");
    let mut datum = &value[10..];
    let decoded = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("datum decodes");
    assert!(datum.is_empty(), "trailing bytes after the datum");
    let Value::Record(fields) = decoded else {
        panic!("not a record")
    };
    fields.into_iter().collect()
}

/// The string inside a nullable string field, or `None` for null.
pub fn nullable_string(v: &Value) -> Option<String> {
    match v {
        Value::Union(_, inner) => match inner.as_ref() {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("not a union: {other:?}"),
    }
}

pub fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Enum(_, s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// A body with one JSON field changed.
pub fn with_json(body: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(body).expect("fixture JSON");
    edit(&mut json);
    serde_json::to_vec(&json).expect("serializable")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process that is killed when the test ends, however it ends.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An external program the tests need; `scripts/test` installs them.
pub fn tool(name: &str) -> std::path::PathBuf {
    let env_name = format!("HOOKSTREAM_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&env_name) {
        return path.into();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run the tests with scripts/test, which installs it")
        })
}

/// Runs an external tool (with `stdin`, if given) and asserts it succeeded, showing its output.
pub fn assert_tool_succeeds(name: &str, args: &[&str], stdin: Option<&[u8]>) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(tool(name))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).expect("tool input written");
    }
    let output = child.wait_with_output().expect("tool finishes");
    assert!(
        output.status.success(),
        "{name} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookstream-{label}-{}", unique_prefix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "nothing listening on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Tansu broker of this test's own on `port` (in-memory storage).
pub async fn start_own_broker(port: u16) -> ChildGuard {
    let child = std::process::Command::new(tool("tansu"))
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tansu starts");
    let guard = ChildGuard(child);
    wait_for_port(port).await;
    guard
}

/// Polls `path` until it answers `status` (at most 30 s) and returns the last reply.
pub async fn wait_for_status(app: &TestApp, path: &str, status: u16) -> Reply {
    wait_for(app, path, |r| r.status == status).await
}

/// Polls `path` until it answers `status` with error `code` (at most 30 s); returns the last reply.
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
        let reply = app.get(path).await;
        if done(&reply) || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
