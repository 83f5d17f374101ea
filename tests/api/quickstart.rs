//! `scripts/quickstart` run the way a newcomer runs it — and then once more by mistake: the
//! second run says hookstream is already running and leaves the first alone; a run beside it on
//! other ports reuses its broker and, when stopped, stops nothing it did not start.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Quickstart {
    child: ChildGuard,
    /// Lines of its standard error.
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Quickstart {
    fn start(port: u16, admin_port: u16, broker_port: u16) -> Quickstart {
        let mut child: Child = Command::new("scripts/quickstart")
            .env("HOOKSTREAM__SERVER__PORT", port.to_string())
            .env("HOOKSTREAM__SERVER__ADMIN_PORT", admin_port.to_string())
            .env("QUICKSTART_BROKER_PORT", broker_port.to_string())
            .env("QUICKSTART_BIN", env!("CARGO_BIN_EXE_hookstream"))
            .env("HOOKSTREAM__LOG__LEVEL", "info")
            .env_remove("HOOKSTREAM__KAFKA__BROKERS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the quickstart runs");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Quickstart {
            child: ChildGuard(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text` (at most 90 s: the first run may install Tansu).
    fn wait_for(&mut self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(90)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Its exit code, waiting at most 30 s.
    fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..300 {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the quickstart did not exit");
    }

    fn interrupt(&mut self) -> Option<i32> {
        let pid = self.child.0.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        self.exit_code()
    }
}

/// A signed webhook to `port`; its status (0: no answer).
async fn deliver(port: u16, id: &str) -> u16 {
    let body = with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = id.into()
    });
    let scheme = hookstream::providers::built_in("livesession")
        .expect("provider")
        .signature();
    let signature = scheme.sign_value(
        &body,
        &hookstream::signature::Secret::new("quickstart-livesession-secret"),
    );
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/livesession"))
        .header(scheme.primary_header(), signature)
        .body(body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// What the quickstart prints for another terminal (`export VAR=VALUE …`) is all `send`,
/// `sign`, `topics` and `tail` need: the providers — a configured one too — their secrets and
/// the broker; `send --fresh-id` with GitHub's sidecar headers makes a new event each time.
async fn commands_in_another_terminal_use_its_configuration(port: u16, broker: u16, line: &str) {
    let exports = line
        .split("export ")
        .nth(1)
        .unwrap_or_else(|| panic!("no export in {line:?}"));
    let env: Vec<(String, String)> = exports
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        env.contains(&("HOOKSTREAM_ENV".into(), "quickstart".into())),
        "{line}"
    );
    assert!(
        env.contains(&(
            "HOOKSTREAM__KAFKA__BROKERS".into(),
            format!("127.0.0.1:{broker}")
        )),
        "the broker is named when it is not the default: {line}"
    );
    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookstream"));
        command
            .args(args)
            .env_remove("HOOKSTREAM__KAFKA__BROKERS")
            .env_remove("HOOKSTREAM_SIGN_SECRET")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    };
    let url = |provider: &str| format!("http://127.0.0.1:{port}/webhooks/{provider}");
    for (provider, file) in [
        ("livesession", "tests/fixtures/livesession/js_error.json"),
        ("github", "tests/fixtures/github/issues_opened.json"),
        ("github", "tests/fixtures/github/issues_opened.json"),
    ] {
        let (code, out, err) =
            run_off_runtime(run(&["send", "--url", &url(provider), "--fresh-id", file])).await;
        assert_eq!(code, Some(0), "{provider}: {out}{err}");
        assert!(
            out.starts_with("200 ") && out.contains("\"accepted\""),
            "{out}"
        );
    }
    // Without --fresh-id the same GitHub delivery is a duplicate: still done, exit 0.
    let github = url("github");
    let (code, out, _) = run_off_runtime(run(&[
        "send",
        "--url",
        &github,
        "tests/fixtures/github/issues_opened.json",
    ]))
    .await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out, err) = run_off_runtime(run(&[
        "send",
        "--url",
        &github,
        "tests/fixtures/github/issues_opened.json",
    ]))
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("\"duplicate\""), "{out}");
    let (code, out, _) = run_off_runtime(run(&[
        "sign",
        "--provider",
        "github",
        "tests/fixtures/github/issues_opened.json",
    ]))
    .await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("x-hub-signature-256: sha256="), "{out}");
    let (code, out, err) = run_off_runtime(run(&["topics"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("webhooks.github.issues_opened"), "{out}");
    let (code, out, err) =
        run_off_runtime(run(&["tail", "--regex", r"webhooks\.github\..*"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().count() >= 3, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_quickstart_says_so_and_stops_nothing_it_did_not_start() {
    let (port, admin, broker) = (free_port(), free_port(), free_port());
    let mut first = Quickstart::start(port, admin, broker);
    let banner = tokio::task::spawn_blocking(move || {
        let banner = first.wait_for("hookstream is listening");
        (first, banner)
    })
    .await
    .expect("task");
    let (mut first, banner) = banner;
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}/webhooks/")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("http://127.0.0.1:{admin}")),
        "{banner}"
    );
    assert!(
        !banner.contains('\u{1b}'),
        "no colour when not on a terminal: {banner:?}"
    );
    assert_eq!(deliver(port, "quickstart-1").await, 200);
    let (mut first, other_terminal) = tokio::task::spawn_blocking(move || {
        let line = first.wait_for("in another terminal");
        (first, line)
    })
    .await
    .expect("task");
    commands_in_another_terminal_use_its_configuration(port, broker, &other_terminal).await;

    // The same command again, by mistake.
    let mut second = Quickstart::start(port, admin, broker);
    let (code, said) = tokio::task::spawn_blocking(move || {
        let said = second.wait_for("already running");
        (second.exit_code(), said)
    })
    .await
    .expect("task");
    assert_ne!(code, Some(0));
    assert!(
        said.contains("HOOKSTREAM__SERVER__PORT"),
        "it says how to run another: {said}"
    );
    assert_eq!(
        deliver(port, "quickstart-2").await,
        200,
        "the first still works"
    );

    // Another beside it: reuses the broker, and stopping it leaves the broker running.
    let (port2, admin2) = (free_port(), free_port());
    let mut beside = Quickstart::start(port2, admin2, broker);
    let beside = tokio::task::spawn_blocking(move || {
        beside.wait_for("reusing the broker");
        beside.wait_for("hookstream is listening");
        beside
    })
    .await
    .expect("task");
    assert_eq!(deliver(port2, "quickstart-3").await, 200);
    let mut beside = beside;
    tokio::task::spawn_blocking(move || beside.interrupt())
        .await
        .expect("task");
    assert_eq!(
        deliver(port, "quickstart-4").await,
        200,
        "the first run's broker outlived the run that reused it"
    );

    tokio::task::spawn_blocking(move || first.interrupt())
        .await
        .expect("task");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", broker))
            .await
            .is_err(),
        "the run that started the broker stopped it"
    );
}
