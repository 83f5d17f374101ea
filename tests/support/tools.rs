//! External programs the tests run (Tansu, Prometheus, promtool, check-jsonschema), ports and
//! child processes.

use std::time::{Duration, Instant};

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

/// Runs `command` to its end off the test's runtime (which may be serving what it talks to);
/// (exit code, stdout, stderr).
pub async fn run_off_runtime(mut command: std::process::Command) -> (Option<i32>, String, String) {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .unwrap_or_else(|e| panic!("the command does not run: {e}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An external program the tests need; `scripts/test` installs them.
/// Without it, the test process ends with one line saying what to do, rather than every test
/// failing on its own.
pub fn tool(name: &str) -> std::path::PathBuf {
    let env_name = format!("HOOKSTREAM_TEST_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&env_name) {
        return path.into();
    }
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        use std::io::Write;
        // Straight to the file descriptor: the test harness would swallow `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "{name} is not installed: run the tests with scripts/test, which installs what they need"
        );
        std::process::exit(2)
    })
}

/// Runs an external tool (with `stdin`, if given) and asserts it succeeded, showing its output.
#[allow(dead_code, reason = "the deployment checks'")]
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
    let dir = std::env::temp_dir().join(format!(
        "hookstream-{label}-{}",
        super::app::unique_prefix()
    ));
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

/// How a test broker keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Fast; lost when the broker stops.
    Memory,
    /// Survives a restart (`tansu.db` in the broker's own directory: Tansu resolves the
    /// `sqlite://` path against its working directory).
    Sqlite,
}

/// A server process of a test's own: a directory of its own, a log per run, signals, kill and
/// restart. Killed when dropped, and when the thread that started it ends.
pub struct OwnProcess {
    pub dir: std::path::PathBuf,
    /// Names its log files (`{name}-{run}.log`) and its panics.
    name: &'static str,
    child: Option<ChildGuard>,
    starts: u32,
}

impl OwnProcess {
    pub fn new(name: &'static str, port: u16) -> Self {
        OwnProcess {
            dir: temp_dir(&format!("{name}-{port}")),
            name,
            child: None,
            starts: 0,
        }
    }

    /// Runs `command` in the directory, logging to a file of this run, and waits for `port`.
    pub async fn launch(&mut self, mut command: std::process::Command, port: u16) {
        use std::os::unix::process::CommandExt;
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("{}-{}.log", self.name, self.starts)))
                .expect("log file");
        command
            .current_dir(&self.dir)
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks for SIGKILL when the parent goes.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", self.name));
        self.child = Some(ChildGuard(child));
        wait_for_port(port).await;
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.0.id())
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    /// Sends a signal by name (`STOP`, `CONT`, …).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// Everything it printed, every run.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("{}-{n}.log", self.name)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for OwnProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Tansu broker of a test's own.
pub struct Broker {
    pub port: u16,
    /// The port clients are told to connect to (a proxy's, or `port`).
    advertised_port: u16,
    storage: Storage,
    /// `--authentication`: clients must authenticate with SASL (SCRAM users of its sqlite file).
    authentication: bool,
    process: OwnProcess,
}

impl Broker {
    pub async fn start(storage: Storage) -> Broker {
        let port = free_port();
        Self::start_on(port, port, storage).await
    }

    /// Listens on `port` but tells clients to connect to `advertised_port`.
    pub async fn start_on(port: u16, advertised_port: u16, storage: Storage) -> Broker {
        let mut broker = Broker {
            port,
            advertised_port,
            storage,
            authentication: false,
            process: OwnProcess::new("tansu", port),
        };
        broker.launch().await;
        broker
    }

    async fn launch(&mut self) {
        let storage = match self.storage {
            Storage::Memory => "memory://tansu/",
            Storage::Sqlite => "sqlite://tansu.db",
        };
        let mut command = std::process::Command::new(tool("tansu"));
        command.args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{}", self.port),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{}", self.advertised_port),
            "--storage-engine",
            storage,
        ]);
        if self.authentication {
            command.arg("--authentication");
        }
        self.process.launch(command, self.port).await;
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// Sends a signal by name (`STOP`, `CONT`, …).
    pub fn signal(&self, name: &str) {
        self.process.signal(name)
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        self.process.kill()
    }

    /// Starts it again on the same port and storage.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Everything the broker printed, every run.
    #[allow(dead_code, reason = "read by the fault suite only")]
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Creates SCRAM-SHA-512 users (`tansu user create`, which needs the broker running without
    /// `--authentication` on the same sqlite file), then restarts it requiring authentication.
    /// Tansu 0.6.0 keeps users in sqlite storage only.
    pub async fn require_authentication(&mut self, users: &[(&str, &str)]) {
        assert_eq!(
            self.storage,
            Storage::Sqlite,
            "memory storage keeps no users"
        );
        for (name, password) in users {
            let mut command = std::process::Command::new(tool("tansu"));
            command.args([
                "user",
                "create",
                name,
                password,
                "--mechanism",
                "scram512",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ]);
            let (status, out, err) = run_off_runtime(command).await;
            assert_eq!(status, Some(0), "tansu user create {name}: {out}{err}");
        }
        self.authentication = true;
        self.restart().await;
    }
}

/// A Tansu broker of this test's own on `port` (in-memory storage).
pub async fn start_own_broker(port: u16) -> Broker {
    Broker::start_on(port, port, Storage::Memory).await
}

/// A Redis server of a test's own, on a free port with a throwaway directory and no
/// persistence (a restart starts it empty).
pub struct RedisServer {
    pub port: u16,
    process: OwnProcess,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> RedisServer {
        let mut redis = RedisServer {
            port,
            process: OwnProcess::new("redis", port),
        };
        redis.launch().await;
        redis
    }

    async fn launch(&mut self) {
        let mut command = std::process::Command::new(tool("redis-server"));
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.process.dir.to_string_lossy(),
        ]);
        self.process.launch(command, self.port).await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// What the fault suite does to Redis: signal, kill, restart it, and read its memory and keys.
#[allow(dead_code, reason = "the fault suite's")]
impl RedisServer {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends a signal by name (`STOP`, `CONT`, …).
    pub fn signal(&self, name: &str) {
        self.process.signal(name)
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        self.process.kill()
    }

    /// Starts it again on the same port (empty).
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Runs one command and returns its reply as text (simple RESP, enough for tests).
    pub async fn command(&self, args: &[&str]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("redis connects");
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream
            .write_all(request.as_bytes())
            .await
            .expect("command sent");
        let mut reply = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("redis answers")
                .expect("read");
            reply.extend_from_slice(&buf[..n]);
            if n == 0 || complete_resp(&reply) {
                break;
            }
        }
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// A field of `INFO memory` (e.g. `used_memory`).
    pub async fn memory(&self, field: &str) -> u64 {
        let info = self.command(&["INFO", "memory"]).await;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in INFO memory: {info}"))
    }

    /// Keys whose name starts with `prefix`.
    pub async fn keys(&self, prefix: &str) -> u64 {
        let reply = self
            .command(&[
                "EVAL",
                "return #redis.call('KEYS', ARGV[1])",
                "0",
                &format!("{prefix}*"),
            ])
            .await;
        reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("not a count: {reply}"))
    }
}

/// A real Confluent-compatible Schema Registry of a test's own (`rivven-schema`, in memory: a
/// restart starts it empty), on a free port.
pub struct SchemaRegistryServer {
    pub port: u16,
    process: OwnProcess,
}

impl SchemaRegistryServer {
    pub async fn start() -> SchemaRegistryServer {
        let port = free_port();
        let mut registry = SchemaRegistryServer {
            port,
            process: OwnProcess::new("rivven-schema", port),
        };
        registry.launch().await;
        registry
    }

    async fn launch(&mut self) {
        let mut command = std::process::Command::new(tool("rivven-schema"));
        command.args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
        ]);
        self.process.launch(command, self.port).await;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.process.kill();
        self.launch().await;
    }

    /// `GET path` (from the root), as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.url()))
            .await
            .expect("the registry answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Registers `schema` (Avro, as JSON text) under `subject`; its id.
    pub async fn register(&self, subject: &str, schema: &str) -> u64 {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/subjects/{subject}/versions", self.url()))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema }))
            .send()
            .await
            .expect("the registry answers")
            .json()
            .await
            .expect("JSON");
        answer["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("not registered: {answer}"))
    }

    /// Sets `subject`'s compatibility level (`BACKWARD`, …).
    pub async fn set_compatibility(&self, subject: &str, level: &str) {
        let status = reqwest::Client::new()
            .put(format!("{}/config/{subject}", self.url()))
            .json(&serde_json::json!({ "compatibility": level }))
            .send()
            .await
            .expect("the registry answers")
            .status();
        assert!(status.is_success(), "PUT /config/{subject}: {status}");
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Whether `reply` holds one whole RESP value (of the kinds the tests read).
#[allow(dead_code, reason = "the fault suite's")]
fn complete_resp(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    match reply.first() {
        Some(b'$') => {
            let len: i64 = std::str::from_utf8(&reply[1..end])
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            len < 0 || reply.len() >= end + 2 + len as usize + 2
        }
        _ => true,
    }
}

/// The lines `child` prints on its standard output (taken from it), as they come, read on a
/// thread of their own.
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends `child` SIGINT (Ctrl-C) and waits for it to end, at most `within`.
pub async fn interrupt(
    child: &mut std::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill")
        .success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(started.elapsed() < within, "still running after Ctrl-C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
