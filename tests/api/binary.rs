//! The `hookstream` binary itself: `sign`, startup failures, and shutdown on SIGTERM.

use crate::support::process::{serve_refused, Hookstream};
use crate::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sign_uses_a_provider_the_configuration_defines() {
    // GitHub's documented example, signed as the `github` preset defined in a config file.
    let dir = temp_dir("sign-configured");
    std::fs::write(
        dir.join("default.toml"),
        "[providers.github]\npreset = \"github\"\nsecrets = \"unused-here\"\n",
    )
    .expect("config written");
    let file = dir.join("body");
    std::fs::write(&file, "Hello, World!").expect("body written");
    let output = Command::new(BIN)
        .args(["sign", "--provider", "github"])
        .args(["--secret", "It's a Secret to Everybody"])
        .arg(&file)
        .env("HOOKSTREAM_CONFIG_DIR", &dir)
        .output()
        .expect("hookstream sign runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim_end(),
        "x-hub-signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[test]
fn sign_prints_the_header_line_a_provider_would_send() {
    // RFC 4231 test case 2 as the body and secret.
    let dir = temp_dir("sign");
    let file = dir.join("body");
    std::fs::write(&file, "what do ya want for nothing?").expect("body written");
    let cases = [
        (
            "livesession",
            "LiveSession-Signature: W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
        ),
        (
            "lasoexperience",
            "x-signature: 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            "seismic",
            "x-seismic-signature: 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
    ];
    for (provider, expected) in cases {
        let output = Command::new(BIN)
            .args(["sign", "--provider", provider, "--secret", "Jefe"])
            .arg(&file)
            .output()
            .expect("hookstream sign runs");
        assert!(output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), expected);
    }
    let unknown = Command::new(BIN)
        .args(["sign", "--provider", "nope", "--secret", "x"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown provider"));
}

#[test]
fn bad_configuration_stops_startup_with_a_message_naming_the_key() {
    for (var, value, key) in [
        (
            "HOOKSTREAM__KAFKA__ACK_TIMEOUT",
            "five",
            "kafka.ack_timeout",
        ),
        ("HOOKSTREAM__SERVER__PORT", "http", "server.port"),
        (
            "HOOKSTREAM__KAFKA__TOPIC_PREFIX",
            "bad prefix",
            "kafka.topic_prefix",
        ),
        (
            "HOOKSTREAM__PROVIDERS__SHOPIFY__SECRETS",
            "x",
            "providers.shopify",
        ),
        // A misspelled key is not ignored: it names itself and the key that was meant.
        (
            "HOOKSTREAM__KAFKA__ACK_TIMOUT",
            "2s",
            "HOOKSTREAM__KAFKA__ACK_TIMOUT): did you mean `kafka.ack_timeout`?",
        ),
    ] {
        let (code, stderr) = serve_refused(&[], &[(var, value)]);
        assert!(code != Some(0), "{var}={value} must fail");
        assert!(stderr.contains(key), "{var}: {stderr}");
    }
}

/// Runs `hookstream [ARGS] config check` with `env`; (success, stderr).
fn check_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(BIN)
        .args(args)
        .args(["config", "check"])
        .envs(env.iter().copied())
        .output()
        .expect("hookstream runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_layer_that_was_asked_for_but_is_missing_stops_startup() {
    // One underscore where two belong: read by nobody, so it is an error naming the right one.
    let (ok, err) = check_with(&[], &[("HOOKSTREAM_KAFKA_BROKERS", "broker:9092")]);
    assert!(!ok);
    assert!(
        err.contains("did you mean HOOKSTREAM__KAFKA__BROKERS?"),
        "{err}"
    );
    let (ok, err) = check_with(&[], &[("HOOKSTREAM_ENV", "producton")]);
    assert!(!ok);
    assert!(err.contains("producton.toml does not exist"), "{err}");
    let (ok, err) = check_with(&["--config-dir", "/nonexistent"], &[]);
    assert!(!ok);
    assert!(err.contains("/nonexistent does not exist"), "{err}");
    let empty = temp_dir("no-default-toml");
    let (ok, err) = check_with(&["--config-dir", &empty.to_string_lossy()], &[]);
    assert!(!ok);
    assert!(err.contains("has no default.toml"), "{err}");
    let (ok, err) = check_with(&[], &[("HOOKSTREAM_CONFIG_DIR", "/nonexistent")]);
    assert!(!ok, "{err}");
}

#[test]
fn variables_hookstream_does_not_own_leave_it_alone() {
    // What Kubernetes injects into every pod of a namespace with a Service named hookstream, and
    // the test suite's own variables.
    let (ok, err) = check_with(
        &[],
        &[
            ("HOOKSTREAM_SERVICE_HOST", "10.0.0.7"),
            ("HOOKSTREAM_SERVICE_PORT", "80"),
            ("HOOKSTREAM_SERVICE_PORT_HTTP", "80"),
            ("HOOKSTREAM_PORT", "tcp://10.0.0.7:80"),
            ("HOOKSTREAM_PORT_80_TCP", "tcp://10.0.0.7:80"),
            ("HOOKSTREAM_PORT_80_TCP_ADDR", "10.0.0.7"),
            ("HOOKSTREAM_PORT_80_TCP_PORT", "80"),
            ("HOOKSTREAM_PORT_80_TCP_PROTO", "tcp"),
            ("HOOKSTREAM_TEST_BROKERS", "127.0.0.1:1"),
        ],
    );
    assert!(ok, "{err}");
}

#[tokio::test]
async fn sigterm_stops_the_server_and_flushes_the_producer() {
    let prefix = format!("sigterm-{}", unique_prefix());
    let mut hookstream = Hookstream::start_with(
        &test_brokers(),
        &prefix,
        &[("HOOKSTREAM__LOG__LEVEL", "info")],
    )
    .await;
    let port = hookstream.port;
    let app = hookstream.app();
    let reply = app
        .post_signed("livesession", fixture("livesession", "js_error"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let status = terminate(&mut hookstream, Duration::from_secs(20)).await;
    assert!(status == Some(0), "exit status {status:?}");
    let log = hookstream.log();
    assert!(log.contains("producer flushed"), "{log}");
    assert!(
        log.contains("configuration loaded") && log.contains("compiled-in defaults"),
        "startup names the configuration sources: {log}"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "stopped accepting"
    );
    app.read_messages(&app.topic("livesession", "js_error"), 1)
        .await;
}

#[tokio::test]
async fn sigterm_closes_idle_connections_at_once_instead_of_waiting_out_their_keep_alive() {
    use crate::support::raw;
    let prefix = format!("sigterm-idle-{}", unique_prefix());
    let mut hookstream = Hookstream::start_with(
        &test_brokers(),
        &prefix,
        &[
            ("HOOKSTREAM__LOG__LEVEL", "info"),
            ("HOOKSTREAM__SERVER__KEEP_ALIVE", "75s"),
            ("HOOKSTREAM__SERVER__SHUTDOWN_TIMEOUT", "10s"),
        ],
    )
    .await;
    // Idle connections, as a load balancer keeps them: one that served a request, one that
    // never sent a byte.
    let mut served = raw::connect(hookstream.port).await;
    assert_eq!(raw::get_healthz(&mut served).await.status, 200);
    let _silent = raw::connect(hookstream.port).await;

    let started = Instant::now();
    let status = terminate(&mut hookstream, Duration::from_secs(30)).await;
    assert!(status == Some(0), "exit status {status:?}");
    let log = hookstream.log();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} (keep-alive 75 s, shutdown_timeout 10 s): {log}",
        started.elapsed()
    );
    assert!(log.contains("in-flight requests finished"), "{log}");
    assert!(raw::is_closed_within(&mut served, Duration::from_secs(1)).await);
}

/// Sends SIGTERM to `hookstream` and waits for it to exit; its exit code.
async fn terminate(hookstream: &mut Hookstream, within: Duration) -> Option<i32> {
    hookstream.signal("TERM");
    hookstream
        .try_wait_exit(within)
        .await
        .expect("hookstream did not stop after SIGTERM")
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_requests_for_the_whole_shutdown_timeout_milliseconds_included(
) {
    use crate::support::proxy::{Fault, ProxiedBroker};
    let proxied = ProxiedBroker::start().await;
    let prefix = format!("drain-{}", unique_prefix());
    let mut hookstream = Hookstream::start_with(
        &proxied.brokers(),
        &prefix,
        &[
            ("HOOKSTREAM__SERVER__SHUTDOWN_TIMEOUT", "2500ms"),
            ("HOOKSTREAM__KAFKA__ACK_TIMEOUT", "10s"),
        ],
    )
    .await;
    let app = hookstream.app();
    let body = |id: &str| {
        with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = id.into()
        })
    };
    // The topic and the producer are ready before the write that is held back.
    assert_eq!(
        app.post_signed("livesession", body("warm")).await.status,
        200
    );
    proxied.set(Fault::DelayProduce(Duration::from_millis(2200)));
    let in_flight = {
        let request = app
            .client
            .post(format!("{}/webhooks/livesession", app.address))
            .header("content-type", "application/json");
        let body = body("in-flight");
        let header = sign("livesession", &body, SECRET);
        tokio::spawn(request.header(header.0, header.1).body(body).send())
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 2.2 s of the 2.5 s: a shutdown_timeout cut to whole seconds would end the request.
    let status = terminate(&mut hookstream, Duration::from_secs(20)).await;
    let reply = in_flight.await.expect("request task");
    let reply = reply.expect("the in-flight request is answered");
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
    assert!(status == Some(0), "exit status {status:?}");
}

/// Runs `hookstream config check ARGS` with `env`; (exit code, stdout, stderr).
fn config_check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = Command::new(BIN)
        .args(["config", "check"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("hookstream runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_prints_the_effective_configuration_with_every_secret_redacted() {
    let (code, out, err) = config_check(
        &[],
        &[
            (
                "HOOKSTREAM__PROVIDERS__SEISMIC__SECRETS",
                "seismic-secret-1,seismic-secret-2",
            ),
            (
                "HOOKSTREAM__DEDUPE__REDIS__URL",
                "redis://:redis-pw@redis:6379",
            ),
            ("HOOKSTREAM__SCHEMA_REGISTRY__PASSWORD", "registry-pw"),
            ("HOOKSTREAM__KAFKA__BROKERS", "broker-1:9092,broker-2:9092"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    for secret in ["seismic-secret", "redis-pw", "registry-pw"] {
        assert!(!out.contains(secret), "{secret} shown:\n{out}");
    }
    let effective: toml::Value = toml::from_str(&out).expect("the output is TOML");
    assert_eq!(
        effective["kafka"]["brokers"].as_str(),
        Some("broker-1:9092,broker-2:9092"),
        "the environment layer is applied"
    );
    assert_eq!(
        effective["providers"]["seismic"]["secrets"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(
        effective["dedupe"]["redis"]["url"].as_str(),
        Some("redis://<redacted>@redis:6379"),
        "a URL is shown without its userinfo"
    );
    assert_eq!(
        effective["schema_registry"]["password"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(effective["server"]["admin_port"].as_integer(), Some(9090));
}

#[test]
fn config_check_redacts_every_librdkafka_option_not_known_to_be_harmless_and_urls_userinfo() {
    // librdkafka options are set in a file (their names hold dots).
    let dir = temp_dir("config-secrets");
    std::fs::copy("config/default.toml", dir.join("default.toml")).expect("copied");
    std::fs::write(
        dir.join("secrets.toml"),
        r#"
[kafka.options]
"sasl.oauthbearer.config" = "principal=hookstream extension_token=assertion-passphrase"
"ssl.keystore.password" = "keystore-pw"
"compression.type" = "lz4"
"#,
    )
    .expect("written");
    let output = Command::new(BIN)
        .arg("--config-dir")
        .arg(&dir)
        .args(["config", "check"])
        .env("HOOKSTREAM_ENV", "secrets")
        .env(
            "HOOKSTREAM__SCHEMA_REGISTRY__URL",
            "http://registry-user:registry-url-pw@registry:8081",
        )
        .output()
        .expect("hookstream runs");
    let (code, out, err) = (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert_eq!(code, Some(0), "{err}");
    for secret in [
        "assertion-passphrase",
        "keystore-pw",
        "registry-url-pw",
        "registry-user",
    ] {
        assert!(!out.contains(secret), "{secret} shown:\n{out}");
        assert!(!err.contains(secret), "{secret} in stderr:\n{err}");
    }
    let effective: toml::Value = toml::from_str(&out).expect("the output is TOML");
    let options = &effective["kafka"]["options"];
    assert_eq!(
        options["sasl.oauthbearer.config"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(options["compression.type"].as_str(), Some("lz4"));
    assert_eq!(
        effective["schema_registry"]["url"].as_str(),
        Some("http://<redacted>@registry:8081")
    );

    // Nor does the connection check's line, or its error, show them.
    let (_, out, err) = config_check(
        &["--connect"],
        &[
            ("HOOKSTREAM__KAFKA__BROKERS", "127.0.0.1:1"),
            ("HOOKSTREAM__KAFKA__ACK_TIMEOUT", "1s"),
            (
                "HOOKSTREAM__SCHEMA_REGISTRY__URL",
                "http://registry-user:registry-url-pw@127.0.0.1:1",
            ),
        ],
    );
    assert!(
        out.contains("# FAILED  schema registry at http://<redacted>@127.0.0.1:1"),
        "{out}"
    );
    for secret in ["registry-url-pw", "registry-user"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret}:\n{out}{err}"
        );
    }
}

#[test]
fn config_check_fails_with_the_error_serve_would_give() {
    for env in [
        ("HOOKSTREAM__KAFKA__ACK_TIMOUT", "2s"),
        ("HOOKSTREAM__DEDUPE__BACKEND", "redis"),
        ("HOOKSTREAM__SERVER__MAX_IN_FLIGHT", "0"),
    ] {
        let (code, out, err) = config_check(&[], &[env]);
        assert_eq!(code, Some(1), "{env:?}: {out}");
        assert!(
            out.is_empty(),
            "nothing printed for an invalid configuration: {out}"
        );
        let (code, serve_err) = serve_refused(&[], &[env]);
        assert!(code != Some(0));
        let message = err
            .strip_prefix("hookstream config check: ")
            .unwrap_or_else(|| panic!("{err}"));
        assert_eq!(
            serve_err.strip_prefix("hookstream: "),
            Some(message),
            "{env:?}"
        );
    }
}

#[tokio::test]
async fn config_check_connect_tries_the_broker_a_write_and_redis() {
    let prefix = format!("check-{}", unique_prefix());
    let (code, out, err) = config_check(
        &["--connect"],
        &[
            ("HOOKSTREAM__KAFKA__BROKERS", &test_brokers()),
            ("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &prefix),
            ("HOOKSTREAM__DEDUPE__BACKEND", "redis"),
            ("HOOKSTREAM__DEDUPE__REDIS__URL", &test_redis()),
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    for line in [
        "# ok      kafka metadata from",
        &format!("# ok      kafka write to {prefix}.canary"),
        "# ok      redis (dedupe): claim, release and commit of a probe key answered",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("schema registry"), "not configured: {out}");

    let started = std::time::Instant::now();
    let (code, out, err) = config_check(
        &["--connect"],
        &[
            ("HOOKSTREAM__KAFKA__BROKERS", "127.0.0.1:1"),
            ("HOOKSTREAM__KAFKA__ACK_TIMEOUT", "2s"),
            ("HOOKSTREAM__DEDUPE__BACKEND", "redis"),
            ("HOOKSTREAM__DEDUPE__REDIS__URL", "redis://127.0.0.1:1"),
            ("HOOKSTREAM__SCHEMA_REGISTRY__URL", "http://127.0.0.1:1"),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("4 of 4 connection checks failed"), "{err}");
    // A closed port is said to be one, at once — not a timeout after kafka.ack_timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for line in [
        "# FAILED  kafka metadata from 127.0.0.1:1: 127.0.0.1:1: connection refused",
        "# FAILED  kafka write to webhooks.canary: not tried",
        "# FAILED  redis (dedupe)",
        "# FAILED  schema registry at http://127.0.0.1:1",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn config_check_warns_as_serve_does_when_no_provider_has_a_secret_and_prints_durations_as_documented(
) {
    let (code, out, err) = config_check(&[], &[]);
    assert_eq!(code, Some(0), "valid, if useless: {err}");
    assert!(
        err.contains("warning: no provider has a signing secret"),
        "{err}"
    );
    assert!(out.contains("window = \"24h\""), "{out}");
    assert!(out.contains("ack_timeout = \"5s\""), "{out}");
    assert!(out.contains("timeout = \"500ms\""), "{out}");
    let (code, _, err) = config_check(&[], &[("HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS", "s")]);
    assert_eq!(code, Some(0));
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn a_secret_set_on_its_tables_variable_is_never_shown_by_config_check_or_serve() {
    for (variable, secret, says) in [
        (
            "HOOKSTREAM__DEDUPE__REDIS",
            "redis://:hunter2-pw@redis:6379",
            "configuration key `dedupe.redis` is a table, but a string was set (from HOOKSTREAM__DEDUPE__REDIS; the value is not shown: it may hold a secret): set its keys one by one (key_prefix, on_unavailable, password, timeout, url), each with a variable of its own: HOOKSTREAM__DEDUPE__REDIS__<KEY>",
        ),
        (
            "HOOKSTREAM__PROVIDERS__LIVESESSION",
            "hunter2-secret",
            "configuration key `providers.livesession` is a table, but a string was set (from HOOKSTREAM__PROVIDERS__LIVESESSION; the value is not shown: it may hold a secret): set its keys one by one (secrets), each with a variable of its own: HOOKSTREAM__PROVIDERS__LIVESESSION__<KEY>",
        ),
    ] {
        for command in [&["config", "check"][..], &["serve"]] {
            let output = Command::new(BIN)
                .args(command)
                .env(variable, secret)
                .env("HOOKSTREAM__SERVER__PORT", "0")
                .env("HOOKSTREAM__SERVER__ADMIN_PORT", "0")
                .output()
                .expect("hookstream runs");
            let (out, err) = (
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
            assert_eq!(output.status.code(), Some(1), "{command:?} {variable}: {err}");
            assert!(
                !out.contains("hunter2") && !err.contains("hunter2"),
                "{command:?} {variable} shown:\n{out}{err}"
            );
            assert!(err.contains(says), "{command:?} {variable}: {err}");
        }
    }
}

#[test]
fn misspelt_values_are_refused_naming_the_key_and_what_it_takes() {
    for (var, value, says) in [
        (
            "HOOKSTREAM__DEDUPE__BACKEND",
            "reddis",
            "configuration key `dedupe.backend` \"reddis\" is not one of \"memory\", \"redis\": did you mean \"redis\"? (from HOOKSTREAM__DEDUPE__BACKEND)",
        ),
        (
            "HOOKSTREAM__KAFKA__ACK_TIMEOUT",
            "5",
            "`kafka.ack_timeout` \"5\" has no unit: write a duration with one, e.g. \"5s\"",
        ),
        (
            "HOOKSTREAM__LOG__LEVEL",
            "verbose",
            "`log.level` \"verbose\": \"verbose\" is not a level (trace, debug, info, warn, error, off)",
        ),
        (
            "HOOKSTREAM__PROVIDERS__LIVESESION__SECRETS",
            "x",
            "`providers.livesesion` is not a provider: did you mean `livesession`?",
        ),
    ] {
        let (code, _, err) = config_check(&[], &[(var, value)]);
        assert_eq!(code, Some(1), "{var}={value}");
        assert!(err.contains(says), "{var}={value}: {err}");
    }
}

#[test]
fn a_boolean_other_than_true_or_false_is_refused_naming_the_key_in_a_variable_or_a_file() {
    for (variable, value) in [
        ("HOOKSTREAM__SPOOL__ENABLED", "yes"),
        ("HOOKSTREAM__SPOOL__ENABLED", "1"),
        ("HOOKSTREAM__DEAD_LETTER__ENABLED", "off"),
    ] {
        let key = variable
            .trim_start_matches("HOOKSTREAM__")
            .replace("__", ".")
            .to_lowercase();
        let says = format!(
            "configuration key `{key}` \"{value}\" is not a boolean: write true or false (from {variable})"
        );
        let (code, _, err) = config_check(&[], &[(variable, value)]);
        assert_eq!(code, Some(1), "{variable}={value}");
        assert!(err.contains(&says), "{variable}={value}: {err}");
        let dir = config_dir_with("strict-boolean", "staging", "");
        let err = serve_fails_with(&dir, &[("HOOKSTREAM_ENV", "staging"), (variable, value)]);
        assert!(err.contains(&says), "serve, {variable}={value}: {err}");
    }
    let (code, _, err) = config_check(&[], &[("HOOKSTREAM__SPOOL__ENABLED", "true")]);
    assert_eq!(code, Some(0), "{err}");

    let dir = config_dir_with(
        "strict-boolean-file",
        "staging",
        "[dead_letter]\nenabled = \"no\"\n",
    );
    let (code, _, err) = config_check(&["--config-dir", &dir], &[("HOOKSTREAM_ENV", "staging")]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("`dead_letter.enabled` \"no\" is not a boolean: write true or false")
            && err.contains("staging.toml"),
        "{err}"
    );
}

/// A configuration directory holding the shipped `default.toml` and `NAME.toml` with `text`.
fn config_dir_with(label: &str, name: &str, text: &str) -> String {
    let dir = temp_dir(label);
    std::fs::copy("config/default.toml", dir.join("default.toml")).expect("copied");
    std::fs::write(dir.join(format!("{name}.toml")), text).expect("written");
    dir.display().to_string()
}

/// `hookstream --config-dir DIR serve` with `env`, which must fail: its error, without the
/// command's name.
fn serve_fails_with(dir: &str, env: &[(&str, &str)]) -> String {
    let (code, stderr) = serve_refused(&["--config-dir", dir], env);
    assert!(code != Some(0), "serve started");
    stderr
        .strip_prefix("hookstream: ")
        .unwrap_or_else(|| panic!("{stderr}"))
        .to_string()
}

#[test]
fn configuration_values_take_environment_variables_and_an_unset_one_stops_config_check_and_serve() {
    let dir = config_dir_with(
        "config-interpolation",
        "production",
        r#"
[kafka.options]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "hookstream"
"sasl.password" = "${KAFKA_SASL_PASSWORD}"

[providers.github]
preset = "github"
secrets = "${GITHUB_WEBHOOK_SECRET}"

[dead_letter]
replay_group = "replay-$${not-a-reference}"
"#,
    );
    let args = ["--config-dir", dir.as_str()];

    // Unset: refused, naming the key and the variable, by config check and serve alike.
    let unset = [
        ("HOOKSTREAM_ENV", "production"),
        ("GITHUB_WEBHOOK_SECRET", "github-hunter2"),
    ];
    let (code, out, err) = config_check(&args, &unset);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.is_empty(), "{out}");
    let message = err
        .strip_prefix("hookstream config check: ")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        message.starts_with("configuration key `kafka.options.\"sasl.password\"` refers to ${KAFKA_SASL_PASSWORD}, but the environment variable KAFKA_SASL_PASSWORD is not set (in ")
            && message.trim_end().ends_with("production.toml)"),
        "{err}"
    );
    assert!(!err.contains("github-hunter2"), "{err}");
    assert_eq!(serve_fails_with(&dir, &unset), message);

    // Set: resolved, and printed as every secret is, with where it came from.
    let set = [
        ("HOOKSTREAM_ENV", "production"),
        ("GITHUB_WEBHOOK_SECRET", "github-hunter2"),
        ("KAFKA_SASL_PASSWORD", "kafka-hunter2"),
    ];
    let (code, out, err) = config_check(&args, &set);
    assert_eq!(code, Some(0), "{err}");
    for secret in ["github-hunter2", "kafka-hunter2"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} shown:\n{out}\n{err}"
        );
    }
    assert!(
        out.contains("\n# kafka.options.\"sasl.password\" from ${KAFKA_SASL_PASSWORD}\n")
            && out.contains("\n# providers.github.secrets from ${GITHUB_WEBHOOK_SECRET}\n"),
        "{out}"
    );
    let effective: toml::Value = toml::from_str(&out).expect("the output is TOML");
    assert_eq!(
        effective["kafka"]["options"]["sasl.password"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(
        effective["providers"]["github"]["secrets"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(
        effective["dead_letter"]["replay_group"].as_str(),
        Some("replay-${not-a-reference}"),
        "$${{ is a literal ${{"
    );
}

#[test]
fn a_property_librdkafka_refuses_stops_config_check_and_serve_alike_naming_it() {
    for (option, says) in [
        (
            r#""security_protocol" = "SASL_SSL""#,
            "configuration key `kafka.options.\"security_protocol\"` is refused by librdkafka: No such configuration property: \"security_protocol\"",
        ),
        (
            r#""security.protocol" = "SASL_SSLX""#,
            "configuration key `kafka.options.\"security.protocol\"` is refused by librdkafka: Invalid value \"SASL_SSLX\" for configuration property \"security.protocol\"",
        ),
        // A value not known to be harmless is not shown, even in librdkafka's words.
        (
            r#""client.dns.lookup" = "hunter2""#,
            "configuration key `kafka.options.\"client.dns.lookup\"` is refused by librdkafka: Invalid value \"<redacted>\"",
        ),
        (
            r#""security.protocol" = "SSL"
"ssl.ca.location" = "/nonexistent/ca.crt""#,
            "configuration key `kafka.options.\"ssl.ca.location\"` is refused by librdkafka: ssl.ca.location failed",
        ),
    ] {
        let dir = config_dir_with("config-librdkafka", "production", &format!("[kafka.options]\n{option}\n"));
        // A broker nothing answers on: the check connects to nothing.
        let env = [
            ("HOOKSTREAM_ENV", "production"),
            ("HOOKSTREAM__KAFKA__BROKERS", "127.0.0.1:1"),
        ];
        let started = Instant::now();
        let (code, out, err) = config_check(&["--config-dir", &dir], &env);
        assert_eq!(code, Some(1), "{option}: {out}");
        assert!(out.is_empty(), "{out}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let message = err
            .strip_prefix("hookstream config check: ")
            .unwrap_or_else(|| panic!("{err}"));
        assert!(message.starts_with(says), "{option}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(serve_fails_with(&dir, &env), message, "{option}");
    }
}

#[test]
fn librdkafka_properties_in_variables_are_refused_by_config_check_and_serve_alike_with_the_file_form_as_the_hint(
) {
    for (variable, value, hint) in [
        (
            "HOOKSTREAM__KAFKA__OPTIONS__SECURITY_PROTOCOL",
            "SASL_SSL",
            "\"security.protocol\" = \"${KAFKA_SECURITY_PROTOCOL}\"",
        ),
        (
            "HOOKSTREAM__KAFKA__OPTIONS__SASL_PASSWORD",
            "hunter2",
            "\"sasl.password\" = \"${KAFKA_SASL_PASSWORD}\"",
        ),
    ] {
        let (code, out, err) = config_check(&[], &[(variable, value)]);
        assert_eq!(code, Some(1), "{variable}: {out}");
        let message = err
            .strip_prefix("hookstream config check: ")
            .unwrap_or_else(|| panic!("{err}"));
        assert!(
            message.contains(&format!(
                "the environment variable {variable} cannot set a librdkafka property"
            )) && message.contains("[kafka.options]")
                && message.contains(hint),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(
            serve_fails_with("config", &[(variable, value)]),
            message,
            "{variable}"
        );
    }
}

#[test]
fn an_error_in_a_file_names_the_file() {
    let dir = temp_dir("config-file-error");
    std::fs::copy("config/default.toml", dir.join("default.toml")).expect("copied");
    std::fs::write(dir.join("staging.toml"), "[dedupe]\nbackend = \"reddis\"\n").expect("written");
    let (code, _, err) = config_check(
        &["--config-dir", &dir.display().to_string()],
        &[("HOOKSTREAM_ENV", "staging")],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("`dedupe.backend`") && err.contains("staging.toml"),
        "{err}"
    );
}

#[test]
fn list_valued_keys_take_a_json_array_in_an_environment_variable_and_a_comma_in_one_pointer_is_refused(
) {
    let github = [
        ("HOOKSTREAM__PROVIDERS__GH__PRESET", "github"),
        ("HOOKSTREAM__PROVIDERS__GH__SECRETS", "s"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let env: Vec<(&str, &str)> = github.iter().chain(extra).copied().collect();
        config_check(&[], &env)
    };
    let (code, out, err) = with(&[
        (
            "HOOKSTREAM__PROVIDERS__GH__FIELDS__ATTRIBUTES",
            r#"["/issue", "/pull_request"]"#,
        ),
        (
            "HOOKSTREAM__PROVIDERS__GH__FIELDS__SUBJECT",
            r#"["/sender/login", "/sender/id"]"#,
        ),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let shown: toml::Value = toml::from_str(&out).expect("config check prints TOML");
    let fields = &shown["providers"]["gh"]["fields"];
    assert_eq!(
        fields["attributes"],
        toml::Value::from(vec!["/issue", "/pull_request"]),
        "{out}"
    );
    assert_eq!(
        fields["subject"],
        toml::Value::from(vec!["/sender/login", "/sender/id"]),
        "{out}"
    );
    let (code, _, err) = with(&[(
        "HOOKSTREAM__PROVIDERS__GH__FIELDS__SUBJECT",
        "/sender/login,/sender/id",
    )]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("providers.gh.fields.subject")
            && err.contains(r#"write an array: ["/sender/login","/sender/id"]"#),
        "{err}"
    );
}

/// Runs `hookstream load ARGS` against `url` with the test secret, off the test's runtime (which
/// may be serving `url`); (exit code, stdout, stderr).
async fn load(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(["load", "--url", url, "--connections", "2"])
        .args(args)
        .env("HOOKSTREAM_LOAD_SECRET", SECRET);
    run_off_runtime(command).await
}

#[tokio::test(flavor = "multi_thread")]
async fn load_exits_non_zero_naming_the_first_failure_of_each_kind() {
    let closed = format!("http://127.0.0.1:{}/webhooks/livesession", free_port());
    let (code, out, err) = load(&closed, &["--requests", "10"]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("first connection refused:"), "{out}");
    assert!(
        out.contains("latency     none"),
        "no made-up latency: {out}"
    );
    assert!(
        err.contains("10 of 10 requests were not answered 2xx"),
        "{err}"
    );
    assert!(err.contains("connection refused"), "{err}");
    let (code, ..) = load(&closed, &["--requests", "4", "--allow-errors"]).await;
    assert_eq!(code, Some(0), "--allow-errors says failures are expected");

    let app = spawn_app().await;
    let url = format!("{}/webhooks/livesession", app.address);
    let (code, out, err) = load(&url, &["--requests", "20"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("200: 20"), "{out}");
    let (code, out, err) = load(&url, &["--requests", "20", "--wrong-signature"]).await;
    assert_eq!(
        code,
        Some(0),
        "401 is what --wrong-signature expects: {out}{err}"
    );
    let nobody = format!("{}/webhooks/nobody", app.address);
    let (code, out, err) = load(
        &nobody,
        &[
            "--requests",
            "5",
            "--wrong-signature",
            "--provider",
            "livesession",
        ],
    )
    .await;
    assert_eq!(
        code,
        Some(1),
        "with --wrong-signature a 401 is expected, a 404 is not: {out}{err}"
    );
}

/// Runs `hookstream send ARGS` off the test's runtime; (exit code, stdout, stderr).
async fn send_command(args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("send")
        .args(args)
        .env("HOOKSTREAM_SIGN_SECRET", SECRET);
    run_off_runtime(command).await
}

#[tokio::test(flavor = "multi_thread")]
async fn send_with_fresh_ids_lands_every_sample_and_without_them_the_second_is_a_duplicate() {
    let app = spawn_app().await;
    for (provider, fixture) in [
        ("livesession", "js_error"),
        ("livesession", "rage_click"),
        ("lasoexperience", "user_login"),
        ("seismic", "email_v3"),
    ] {
        let url = format!("{}/webhooks/{provider}", app.address);
        let file = format!("tests/fixtures/{provider}/{fixture}.json");
        for _ in 0..2 {
            let (code, out, err) = send_command(&["--url", &url, "--fresh-id", &file]).await;
            assert_eq!(code, Some(0), "{provider}/{fixture}: {out}{err}");
            assert!(out.starts_with("200 "), "{out}");
            assert!(out.contains("\"accepted\""), "{provider}/{fixture}: {out}");
            assert!(err.contains("event id send-"), "{err}");
        }
    }
    let url = format!("{}/webhooks/livesession", app.address);
    let file = "tests/fixtures/livesession/net_error.json";
    let (_, first, _) = send_command(&["--url", &url, file]).await;
    assert!(first.contains("\"accepted\""), "{first}");
    let (code, again, _) = send_command(&["--url", &url, file]).await;
    assert_eq!(code, Some(0));
    assert!(again.contains("\"duplicate\""), "{again}");
    let (code, out, err) = send_command(&["--url", &url, "--secret", "wrong", file]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("401 "), "{out}");
    assert!(err.contains("answered 401"), "{err}");
    // A 200 that is not the event written is no success either: a dead letter has an exit
    // status of its own (see dead_letters.rs).
    let dir = temp_dir("send-dead-letter");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, br#"{"message_id":"x","payload":{}}"#).expect("written");
    let (code, out, err) = send_command(&["--url", &url, &broken.display().to_string()]).await;
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.starts_with("200 ") && out.contains("dead_lettered"),
        "{out}"
    );
    assert!(
        err.contains("kept as a dead letter (invalid_payload: "),
        "{err}"
    );
}
