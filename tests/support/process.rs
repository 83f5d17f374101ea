//! hookstream as a child process: the real binary, restartable on the same ports, with its log
//! kept in a directory of its own. Used by the fault suite and the replica tests.

use super::app::{TestApp, SECRET};
use super::tools::{free_port, temp_dir, wait_for_port};
use super::BIN;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// hookstream as a child process, restartable on the same ports.
pub struct Hookstream {
    pub port: u16,
    /// `/metrics`, `/readyz`.
    pub admin_port: u16,
    brokers: String,
    pub prefix: String,
    /// Variables set on top of the defaults below (`HOOKSTREAM__…`).
    env: Vec<(String, String)>,
    /// Defaults below left unset (so that a configuration file decides).
    unset: Vec<String>,
    /// Arguments after `serve`.
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Hookstream {
    pub async fn start(brokers: &str, prefix: &str) -> Self {
        Self::start_with(brokers, prefix, &[]).await
    }

    /// Started with these variables on top of the defaults.
    pub async fn start_with(brokers: &str, prefix: &str, env: &[(&str, &str)]) -> Self {
        Self::start_serving(brokers, prefix, env, &[], &[]).await
    }

    /// Started as `serve ARGS…`, with `env` on top of the defaults and the defaults named in
    /// `unset` left out.
    pub async fn start_serving(
        brokers: &str,
        prefix: &str,
        env: &[(&str, &str)],
        args: &[&str],
        unset: &[&str],
    ) -> Self {
        let mut h = Hookstream {
            port: free_port(),
            admin_port: free_port(),
            brokers: brokers.to_string(),
            prefix: prefix.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            unset: unset.iter().map(|k| k.to_string()).collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: temp_dir(prefix),
            child: None,
            starts: 0,
        };
        h.launch().await;
        h
    }

    async fn launch(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("hookstream-{}.log", self.starts)))
            .expect("log file");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("HOOKSTREAM__SERVER__HOST", "127.0.0.1")
            .env("HOOKSTREAM__SERVER__PORT", self.port.to_string())
            .env(
                "HOOKSTREAM__SERVER__ADMIN_PORT",
                self.admin_port.to_string(),
            )
            .env("HOOKSTREAM__SERVER__READINESS_INTERVAL", "1s")
            .env("HOOKSTREAM__KAFKA__BROKERS", &self.brokers)
            .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &self.prefix)
            .env("HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS", SECRET)
            .env("HOOKSTREAM__LOG__LEVEL", "warn")
            .args(&self.args);
        for name in &self.unset {
            command.env_remove(name);
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("hookstream starts"));
        wait_for_port(self.port).await;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// A [`TestApp`] that posts to this process and reads back from its broker.
    pub fn app(&self) -> TestApp {
        TestApp {
            address: format!("http://127.0.0.1:{}", self.port),
            port: self.port,
            admin_address: format!("http://127.0.0.1:{}", self.admin_port),
            ..TestApp::reading(&self.brokers, &self.prefix)
        }
    }

    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status();
    }

    /// Waits for the process to end; its exit code (None when killed by a signal).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        self.try_wait_exit(within)
            .await
            .expect("hookstream did not exit")
    }

    /// Waits up to `within` for the process to end: `Some(exit code)` once it has (the code is
    /// None when killed by a signal), `None` while it still runs.
    pub async fn try_wait_exit(&mut self, within: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return Some(status.code());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets a variable (replacing its value) for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.launch().await;
    }

    /// Resident memory in KiB (VmRSS).
    #[allow(dead_code, reason = "read by the fault suite only")]
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn url(&self) -> String {
        self.webhook_url("livesession")
    }

    /// The webhook URL of `provider`.
    pub fn webhook_url(&self, provider: &str) -> String {
        format!("http://127.0.0.1:{}/webhooks/{provider}", self.port)
    }

    /// The admin port's URL of `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// The sum of a metric's series whose labels contain `labels` (0 when it cannot be read).
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        self.try_metric(name, labels).await.unwrap_or(0.0)
    }

    /// The sum of a metric's series whose labels contain `labels`; `None` when `/metrics` does
    /// not answer within 5 s (the process is gone, or stuck).
    pub async fn try_metric(&self, name: &str, labels: &str) -> Option<f64> {
        Some(metric_sum(&self.metrics_text().await?, name, labels))
    }

    /// Everything `/metrics` says; `None` when it does not answer within 5 s.
    pub async fn metrics_text(&self) -> Option<String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let response = client.get(self.admin_url("/metrics")).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    pub fn topic(&self) -> String {
        format!("{}.livesession.js_error", self.prefix)
    }

    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("hookstream-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `hookstream [ARGS] serve` run to its end with `env` (none of [`Hookstream`]'s defaults), for
/// a configuration that must stop it at startup: (exit code, stderr).
pub fn serve_refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("serve")
        .envs(env.iter().copied())
        .output()
        .expect("serve runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The sum of the series of metric `name` in a `/metrics` text whose labels contain `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    metric_series(text, name)
        .filter(|(l, _)| l.contains(labels))
        .map(|(_, v)| v)
        .sum()
}

/// The series of metric `name` in a `/metrics` text: (labels, as written between the braces,
/// value).
pub fn metric_series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.trim().parse().ok()?))
    })
}

impl Drop for Hookstream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
