//! The configuration changed while `serve` runs: on SIGHUP, and with `--watch-config` when the
//! file changes, the providers (added, removed, their secrets) and `log.level` are taken from
//! the file; a file that does not validate is refused in one line naming the key while the
//! configuration in use goes on serving; a key only a restart applies is named and keeps its
//! value; a request under way finishes with the secret it started with; and
//! `hookstream_config_reloads_total` counts what was applied and refused. Every server here is the
//! binary, reading a configuration directory of its own.

use crate::support::process::Hookstream;
use crate::support::raw;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A server reading `reload.toml` (`HOOKSTREAM_ENV=reload`) from a directory of its own, where
/// the file decides the providers, the topic prefix and the log level.
struct Reloadable {
    server: Hookstream,
    dir: PathBuf,
}

impl Reloadable {
    /// Started with `reload.toml` holding `prefix`'s `[kafka]` and `file`.
    async fn start(file: &str, args: &[&str]) -> Self {
        let dir = temp_dir("reload");
        std::fs::copy("config/default.toml", dir.join("default.toml")).expect("copied");
        let prefix = unique_prefix();
        write_config(&dir, &with_prefix(&prefix, file));
        let config_dir = dir.display().to_string();
        let server = Hookstream::start_serving(
            &test_brokers(),
            &prefix,
            &[
                ("HOOKSTREAM_CONFIG_DIR", config_dir.as_str()),
                ("HOOKSTREAM_ENV", "reload"),
            ],
            args,
            &[
                "HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS",
                "HOOKSTREAM__KAFKA__TOPIC_PREFIX",
                "HOOKSTREAM__LOG__LEVEL",
            ],
        )
        .await;
        Self { server, dir }
    }

    /// Replaces `reload.toml` at once (written beside it, then renamed over it).
    fn write(&self, file: &str) {
        write_config(&self.dir, &with_prefix(&self.server.prefix, file));
    }

    fn hang_up(&self) {
        self.server.signal("HUP");
    }

    async fn reloads(&self, result: &str) -> f64 {
        self.server
            .metric(
                "hookstream_config_reloads_total",
                &format!("result=\"{result}\""),
            )
            .await
    }

    /// Waits until `n` reloads ended with `result` (at most 15 s).
    async fn wait_for_reloads(&self, result: &str, n: f64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let counted = self.reloads(result).await;
            if counted == n {
                return;
            }
            assert!(
                counted < n && Instant::now() < deadline,
                "{counted} reloads {result}, {n} expected; its log:\n{}",
                self.server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A LiveSession webhook signed with `secret`: the status and the answer's JSON.
    async fn deliver(&self, secret: &str, id: &str) -> (u16, serde_json::Value) {
        let body = livesession_body(id);
        let (header, value) = sign("livesession", &body, secret);
        let response = reqwest::Client::new()
            .post(self.server.url())
            .header(header, value)
            .body(body)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// `hookstream send` of GitHub's `issues_opened` to `provider`, signed with `secret`, with
    /// this server's configuration: (exit code, output).
    async fn send(&self, provider: &str, secret: &str) -> (Option<i32>, String) {
        let mut command = Command::new(BIN);
        command
            .args([
                "send",
                "--url",
                &self.server.webhook_url(provider),
                "--secret",
                secret,
                "--fresh-id",
                "tests/fixtures/github/issues_opened.json",
            ])
            .env("HOOKSTREAM_CONFIG_DIR", &self.dir)
            .env("HOOKSTREAM_ENV", "reload")
            .env_remove("HOOKSTREAM_SIGN_SECRET");
        let (code, out, err) = run_off_runtime(command).await;
        (code, format!("{out}{err}"))
    }

    /// The lines of its log that contain `text`.
    fn lines_with(&self, text: &str) -> Vec<String> {
        self.server
            .log()
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Reloadable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn with_prefix(prefix: &str, file: &str) -> String {
    format!("[kafka]\ntopic_prefix = \"{prefix}\"\n\n{file}")
}

fn write_config(dir: &Path, text: &str) {
    let next = dir.join("reload.toml.next");
    std::fs::write(&next, text).expect("written");
    std::fs::rename(&next, dir.join("reload.toml")).expect("renamed");
}

fn livesession_body(id: &str) -> Vec<u8> {
    with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = id.into()
    })
}

fn livesession(secret: &str) -> String {
    format!("[providers.livesession]\nsecrets = \"{secret}\"\n\n[log]\nlevel = \"warn\"\n")
}

fn github_preset(name: &str, secret: &str) -> String {
    format!("\n[providers.{name}]\npreset = \"github\"\nsecrets = \"{secret}\"\n")
}

/// Polls `check` every 50 ms until it holds (at most 15 s).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_sighup_a_provider_added_to_the_file_answers_a_changed_secret_replaces_the_old_and_a_removed_provider_is_gone(
) {
    let app = Reloadable::start(&livesession("live-old"), &[]).await;
    let metrics = app.server.metrics_text().await.expect("metrics");
    for result in ["applied", "refused"] {
        assert!(
            metrics.contains(&format!(
                "hookstream_config_reloads_total{{result=\"{result}\"}} 0"
            )),
            "{result} starts at 0"
        );
    }
    assert_eq!(app.deliver("live-old", "reload-1").await.0, 200);
    let (code, out) = app.send("later", "later-secret").await;
    assert_ne!(code, Some(0), "not defined yet: {out}");

    app.write(&(livesession("live-new") + &github_preset("later", "later-secret")));
    app.hang_up();
    app.wait_for_reloads("applied", 1.0).await;
    let (status, answer) = app.deliver("live-old", "reload-2").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_signature")),
        "the old secret is refused"
    );
    assert_eq!(app.deliver("live-new", "reload-3").await.0, 200);
    let (code, out) = app.send("later", "later-secret").await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("200 ") && out.contains("\"accepted\""),
        "{out}"
    );
    let topic = format!("{}.later.issues_opened", app.server.prefix);
    let brokers = test_brokers();
    let written = tokio::task::spawn_blocking(move || read_blocking(&brokers, &topic, 1))
        .await
        .expect("read back");
    assert_eq!(
        string(&decode(&written[0])["provider_name"]),
        "later",
        "the provider added by the reload wrote its event"
    );

    app.write(&livesession("live-new"));
    app.hang_up();
    app.wait_for_reloads("applied", 2.0).await;
    let answer = reqwest::Client::new()
        .post(app.server.webhook_url("later"))
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status().as_u16(), 404);
    let answer: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(answer["error"], "unknown_provider", "{answer}");
    assert_eq!(app.reloads("refused").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_watch_config_a_changed_file_is_applied_without_a_signal() {
    let app = Reloadable::start(&livesession("live-old"), &["--watch-config"]).await;
    assert_eq!(app.deliver("live-old", "watch-1").await.0, 200);
    app.write(&(livesession("live-new") + &github_preset("later", "later-secret")));
    eventually("the new secret is accepted", || async {
        app.deliver("live-new", "watch-2").await.0 == 200
    })
    .await;
    assert_eq!(app.deliver("live-old", "watch-3").await.0, 401);
    let (code, out) = app.send("later", "later-secret").await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(app.reloads("applied").await, 1.0, "one change, one reload");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_does_not_validate_is_refused_in_one_line_naming_the_key_and_the_configuration_in_use_goes_on(
) {
    let app = Reloadable::start(&livesession("live-old"), &[]).await;
    app.write(
        &(livesession("live-new-hunter2")
            + "\n[providers.later]\npreset = \"githbu\"\nsecrets = \"later-hunter2\"\n"),
    );
    app.hang_up();
    app.wait_for_reloads("refused", 1.0).await;
    let refused = app.lines_with("configuration not reloaded");
    assert_eq!(refused.len(), 1, "one line: {refused:?}");
    assert!(
        refused[0].contains("providers.later.preset") && refused[0].contains("githbu"),
        "it names the key: {}",
        refused[0]
    );
    let log = app.server.log();
    assert!(
        !log.contains("hunter2"),
        "no secret of the new file is shown:\n{log}"
    );
    assert_eq!(app.reloads("applied").await, 0.0);
    assert_eq!(
        app.deliver("live-old", "refused-1").await.0,
        200,
        "the configuration in use still serves"
    );
    assert_eq!(app.deliver("live-new-hunter2", "refused-2").await.0, 401);

    // Mended, it is applied.
    app.write(&livesession("live-new-hunter2"));
    app.hang_up();
    app.wait_for_reloads("applied", 1.0).await;
    assert_eq!(app.deliver("live-new-hunter2", "refused-3").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_only_a_restart_applies_are_named_in_a_warning_and_keep_their_values_while_the_providers_change(
) {
    let app = Reloadable::start(&livesession("live-old"), &[]).await;
    let prefix = app.server.prefix.clone();
    // Written as the file would be edited: another prefix, a smaller body limit, a new secret.
    let edited = format!(
        "[kafka]\ntopic_prefix = \"{prefix}-renamed\"\n\n[server]\nmax_body_bytes = 64\n\n{}",
        livesession("live-new")
    );
    write_config(&app.dir, &edited);
    app.hang_up();
    app.wait_for_reloads("applied", 1.0).await;
    let warned = app.lines_with("only a restart applies");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("kafka.topic_prefix") && warned[0].contains("server.max_body_bytes"),
        "{}",
        warned[0]
    );
    assert!(
        !warned[0].contains("providers"),
        "the providers were applied: {}",
        warned[0]
    );
    assert!(livesession_body("restart-1").len() > 64);
    let (status, answer) = app.deliver("live-new", "restart-1").await;
    assert_eq!(status, 200, "the body limit in use stays: {answer}");
    assert_eq!(
        answer["topic"],
        format!("{prefix}.livesession.js_error"),
        "the topic prefix in use stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_level_is_taken_from_the_reloaded_file() {
    let app = Reloadable::start(&livesession("live"), &[]).await;
    let at = |level: &str| livesession("live").replace("\"warn\"", &format!("\"{level}\""));
    app.write(&at("info"));
    app.hang_up();
    app.wait_for_reloads("applied", 1.0).await;
    eventually("an info line is logged", || async {
        !app.lines_with("configuration reloaded").is_empty()
    })
    .await;
    app.write(&at("warn"));
    app.hang_up();
    app.wait_for_reloads("applied", 2.0).await;
    // A request's line is logged at `warn` too: written once it is, the reload's would be too.
    assert_eq!(app.deliver("wrong", "level-1").await.0, 401);
    eventually("the rejection is logged", || async {
        !app.lines_with("invalid_signature").is_empty()
    })
    .await;
    assert_eq!(
        app.lines_with("configuration reloaded").len(),
        1,
        "back at warn, the second reload's info line is not logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_under_way_during_a_reload_finishes_with_the_secret_it_started_with() {
    let app = Reloadable::start(&livesession("live-old"), &[]).await;
    let body = livesession_body("under-way-1");
    let (header, value) = sign("livesession", &body, "live-old");
    let mut stream = raw::connect(app.server.port).await;
    raw::send(
        &mut stream,
        &raw::post_head("/webhooks/livesession", &[(&header, &value)], body.len()),
    )
    .await;
    let (first, rest) = body.split_at(body.len() / 2);
    raw::send(&mut stream, first).await;

    app.write(&livesession("live-new"));
    app.hang_up();
    app.wait_for_reloads("applied", 1.0).await;
    assert_eq!(
        app.deliver("live-old", "under-way-2").await.0,
        401,
        "a request started after the reload gets the new secret"
    );
    raw::send(&mut stream, rest).await;
    let answer = raw::read_response(&mut stream, Duration::from_secs(15)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
