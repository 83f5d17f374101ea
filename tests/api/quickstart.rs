//! `scripts/quickstart` run the way a newcomer runs it — and then once more by mistake: the
//! second run says hookstream is already running and leaves the first alone; a run beside it on
//! other ports reuses its broker and, when stopped, stops nothing it did not start. Its banner
//! lists the providers configured and what another terminal needs, whichever log format is set;
//! and an edited configuration
//! does not make the installed binary stale, while an edited source does.

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

/// A run a test left running (it failed half-way) is interrupted as Ctrl-C would, so that it
/// stops what it started; killed only if it does not stop.
impl Drop for Quickstart {
    fn drop(&mut self) {
        if matches!(self.child.0.try_wait(), Ok(None)) {
            let pid = self.child.0.id().to_string();
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            for _ in 0..100 {
                if !matches!(self.child.0.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Quickstart {
    fn start(port: u16, admin_port: u16, broker_port: u16) -> Quickstart {
        let mut command = Command::new("scripts/quickstart");
        command
            .env("QUICKSTART_BROKER_PORT", broker_port.to_string())
            .env("QUICKSTART_BIN", BIN);
        Self::run(command, port, admin_port, &[])
    }

    /// `command` (a quickstart) on these ports with `env`, its standard error read line by line.
    fn run(mut command: Command, port: u16, admin_port: u16, env: &[(&str, &str)]) -> Quickstart {
        let mut child: Child = command
            .env("HOOKSTREAM__SERVER__PORT", port.to_string())
            .env("HOOKSTREAM__SERVER__ADMIN_PORT", admin_port.to_string())
            .env("HOOKSTREAM__LOG__LEVEL", "info")
            .env_remove("HOOKSTREAM__KAFKA__BROKERS")
            .env_remove("HOOKSTREAM_CONFIG_DIR")
            .envs(env.iter().copied())
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
        let mut command = Command::new(BIN);
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
    let broker_line = first
        .seen
        .iter()
        .find(|l| l.contains("broker pid"))
        .cloned()
        .unwrap_or_else(|| panic!("no broker pid in {:?}", first.seen));
    assert!(
        command_line_of_pid_after("broker pid ", &broker_line).contains("tansu"),
        "{broker_line}"
    );
    assert!(
        broker_line.contains("BROKER_STORAGE=sqlite"),
        "it says how to keep the topics: {broker_line}"
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

/// Parses `export A=1 B=2` out of a line: the variables, in order.
fn exports_of(line: &str) -> Vec<(String, String)> {
    line.split("export ")
        .nth(1)
        .unwrap_or_else(|| panic!("no export in {line:?}"))
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const STRIPE_SECRET: &str = "whsec_quickstart_stripe_hunter2";

/// A preset enabled by variables, as the README shows it: the banner lists it among the
/// providers `serve` reports, and tells another terminal its non-secret variables by value and
/// the secret one by name only; with those (and the secret exported by hand), `send` reaches it.
/// The quickstart (running this build) on these ports with `env`, once it says it is listening:
/// it, and that line.
async fn listening(port: u16, admin: u16, env: &[(&str, &str)]) -> (Quickstart, String) {
    let mut command = Command::new("scripts/quickstart");
    command.env("QUICKSTART_BIN", BIN);
    let mut quickstart = Quickstart::run(command, port, admin, env);
    tokio::task::spawn_blocking(move || {
        let banner = quickstart.wait_for("hookstream is listening");
        (quickstart, banner)
    })
    .await
    .expect("task")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_banner_lists_the_providers_configured_and_what_another_terminal_needs() {
    let (port, admin) = (free_port(), free_port());
    let brokers = test_brokers();
    let (quickstart, banner) = listening(
        port,
        admin,
        &[
            ("HOOKSTREAM__KAFKA__BROKERS", brokers.as_str()),
            ("HOOKSTREAM__PROVIDERS__STRIPE__PRESET", "stripe"),
            ("HOOKSTREAM__PROVIDERS__STRIPE__SECRETS", STRIPE_SECRET),
        ],
    )
    .await;
    assert!(
        banner.contains(&format!(
            "http://127.0.0.1:{port}/webhooks/{{livesession,lasoexperience,seismic,github,stripe}}"
        )),
        "the providers it serves: {banner}"
    );
    assert!(
        command_line_of_pid_after("(pid ", &banner).contains("serve"),
        "the pid is hookstream's: {banner}"
    );
    let (mut quickstart, other, secrets) = tokio::task::spawn_blocking(move || {
        let mut quickstart = quickstart;
        let other = quickstart.wait_for("in another terminal");
        let secrets = quickstart.wait_for("not printed");
        (quickstart, other, secrets)
    })
    .await
    .expect("task");
    let env = exports_of(&other);
    for expected in [
        ("HOOKSTREAM_ENV", "quickstart"),
        ("HOOKSTREAM__PROVIDERS__STRIPE__PRESET", "stripe"),
        ("HOOKSTREAM__KAFKA__BROKERS", brokers.as_str()),
    ] {
        assert!(
            env.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} in {other}"
        );
    }
    // The public port is in the URLs; the admin port (not the default here) is what
    // `hookstream rejections` reads from the configuration, so it is exported.
    assert!(
        !env.iter().any(|(k, _)| k == "HOOKSTREAM__SERVER__PORT"),
        "the public port is in the URLs: {other}"
    );
    assert!(
        env.iter()
            .any(|(k, v)| k == "HOOKSTREAM__SERVER__ADMIN_PORT" && v != "9090"),
        "the admin port, for `hookstream rejections`: {other}"
    );
    assert!(
        secrets.contains("HOOKSTREAM__PROVIDERS__STRIPE__SECRETS"),
        "the secret is named: {secrets}"
    );
    for line in quickstart.seen.iter() {
        assert!(
            !line.contains(STRIPE_SECRET),
            "a secret was printed: {line}"
        );
    }

    // Another terminal: the export line, and the secret exported by hand.
    let mut send = Command::new(BIN);
    send.args([
        "send",
        "--url",
        &format!("http://127.0.0.1:{port}/webhooks/stripe"),
        "--fresh-id",
        "tests/fixtures/stripe/payment_intent_succeeded.json",
    ])
    .env_remove("HOOKSTREAM__KAFKA__BROKERS")
    .env_remove("HOOKSTREAM_SIGN_SECRET")
    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .env("HOOKSTREAM__PROVIDERS__STRIPE__SECRETS", STRIPE_SECRET);
    let (code, out, err) = run_off_runtime(send).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("200 ") && out.contains("\"accepted\""),
        "{out}"
    );
    tokio::task::spawn_blocking(move || quickstart.interrupt())
        .await
        .expect("task");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_banner_reads_json_logs_as_well() {
    let (port, admin) = (free_port(), free_port());
    let brokers = test_brokers();
    let (mut quickstart, banner) = listening(
        port,
        admin,
        &[
            ("HOOKSTREAM__KAFKA__BROKERS", brokers.as_str()),
            ("HOOKSTREAM__LOG__FORMAT", "json"),
        ],
    )
    .await;
    assert!(
        banner.contains(&format!(
            "http://127.0.0.1:{port}/webhooks/{{livesession,lasoexperience,seismic,github}}"
        )) && banner.contains(&format!("metrics and probes on http://127.0.0.1:{admin} ")),
        "the providers and ports it serves: {banner}"
    );
    tokio::task::spawn_blocking(move || quickstart.interrupt())
        .await
        .expect("task");
}

/// Sets a file's modification time `ago` before now.
fn aged(path: &std::path::Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - ago))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A checkout of the quickstart made in a directory of its own, whose sources, configuration
/// and installed `hookstream` have the ages a test gives them; `cargo` there only says it was
/// asked to build.
fn checkout() -> std::path::PathBuf {
    let root = temp_dir("quickstart-checkout");
    let day = Duration::from_secs(24 * 3600);
    for dir in ["scripts", "config", "src", "avro", "home/bin"] {
        std::fs::create_dir_all(root.join(dir)).expect("a directory");
    }
    for file in [
        "scripts/quickstart",
        "scripts/broker",
        "config/default.toml",
        "config/quickstart.toml",
        "avro/webhook_event.avsc",
        "src/main.rs",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        std::fs::copy(file, root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        aged(&root.join(file), day * 2);
    }
    let bin = root.join("home/bin/hookstream");
    std::fs::write(&bin, format!("#!/bin/sh\nexec '{}' \"$@\"\n", BIN)).expect("written");
    let cargo = root.join("home/bin/cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\necho \"cargo $* (not run here)\" >&2\nexit 3\n",
    )
    .expect("written");
    for program in [&bin, &cargo] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(program, std::fs::Permissions::from_mode(0o755))
            .expect("executable");
    }
    aged(&bin, day);
    root
}

/// The quickstart of `root`, with its `home/bin` first on PATH and as HOME (so a `hookstream`
/// installed on this machine is not the one found).
fn quickstart_of(root: &std::path::Path, brokers: &str) -> Quickstart {
    let mut command = Command::new(root.join("scripts/quickstart"));
    let path = format!(
        "{}:{}",
        root.join("home/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command
        .env("HOME", root.join("home"))
        .env("PATH", path)
        .env_remove("QUICKSTART_BIN");
    Quickstart::run(
        command,
        free_port(),
        free_port(),
        &[("HOOKSTREAM__KAFKA__BROKERS", brokers)],
    )
}

/// The README invites editing config/quickstart.toml: that must not cost a rebuild. Only the
/// sources decide whether the installed binary is stale.
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_configuration_keeps_the_installed_binary_and_an_edited_source_does_not() {
    let root = checkout();
    let brokers = test_brokers();
    // The configuration edited after the binary was installed: the binary runs.
    let config = root.join("config/quickstart.toml");
    let mut text = std::fs::read_to_string(&config).expect("read");
    text.push_str("\n# edited after the install\n");
    std::fs::write(&config, text).expect("written");
    let mut edited_config = quickstart_of(&root, &brokers);
    let installed = root.join("home/bin/hookstream").display().to_string();
    let (running, edited_config) = tokio::task::spawn_blocking(move || {
        let running = edited_config.wait_for("running ");
        edited_config.wait_for("hookstream is listening");
        (running, edited_config)
    })
    .await
    .expect("task");
    assert!(
        running.contains(&format!("running {installed} (")),
        "the installed binary runs: {running}"
    );
    let mut edited_config = edited_config;
    tokio::task::spawn_blocking(move || edited_config.interrupt())
        .await
        .expect("task");

    // A source edited after it: a build.
    std::fs::write(root.join("src/main.rs"), "// edited\n").expect("written");
    let mut edited_source = quickstart_of(&root, &brokers);
    let (said, code) = tokio::task::spawn_blocking(move || {
        let said = edited_source.wait_for("no hookstream binary as new as the sources");
        edited_source.wait_for("cargo build");
        (said, edited_source.exit_code())
    })
    .await
    .expect("task");
    assert!(said.contains("building"), "{said}");
    assert_ne!(code, Some(0), "the build (not run here) failed");
    let _ = std::fs::remove_dir_all(&root);
}

/// The command line of the process whose id follows `marker` in `line`.
fn command_line_of_pid_after(marker: &str, line: &str) -> String {
    let pid: String = line
        .split(marker)
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_else(|e| panic!("no process {pid:?} ({e}): {line}"));
    String::from_utf8_lossy(&command_line).replace('\0', " ")
}
