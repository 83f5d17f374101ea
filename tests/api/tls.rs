//! TLS on the public listener: webhooks over HTTPS with a self-signed certificate made here; the
//! certificate replaced and reloaded on SIGHUP while a connection stays open (it is not dropped,
//! and new connections get the new certificate; the configuration is reloaded by the same
//! signal); `hookstream load --ca-file` against it.

use crate::support::process::{serve_refused, Hookstream};
use crate::support::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for 127.0.0.1 and localhost, written to `dir` as
/// `{name}.crt` and `{name}.key`; returns the certificate's PEM.
fn certificate(dir: &Path, name: &str) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a certificate");
    let pem = cert.cert.pem();
    std::fs::write(dir.join(format!("{name}.crt")), &pem).expect("written");
    std::fs::write(
        dir.join(format!("{name}.key")),
        cert.signing_key.serialize_pem(),
    )
    .expect("written");
    pem
}

/// `hookstream serve` over TLS with the certificate `dir/tls.crt` and its key `dir/tls.key`.
async fn serving_tls(dir: &Path) -> Hookstream {
    let file = |name: &str| dir.join(name).display().to_string();
    Hookstream::start_with(
        &test_brokers(),
        &format!("tls-{}", unique_prefix()),
        &[
            ("HOOKSTREAM__SERVER__TLS__CERT_FILE", &file("tls.crt")),
            ("HOOKSTREAM__SERVER__TLS__KEY_FILE", &file("tls.key")),
        ],
    )
    .await
}

/// A TLS client trusting only `pem`.
fn trusting(pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
}

/// One signed webhook on an open connection; the status.
async fn deliver(stream: &mut Tls, id: &str) -> u16 {
    let body = with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = id.into()
    });
    let (header, value) = sign("livesession", &body, SECRET);
    let head = format!(
        "POST /webhooks/livesession HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{header}: {value}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("written");
    stream.write_all(&body).await.expect("written");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the connection was closed");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return text[9..12].parse().expect("status");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_arrive_over_tls_and_a_new_certificate_is_taken_without_dropping_connections() {
    let dir = temp_dir("tls");
    let first = certificate(&dir, "first");
    let second = certificate(&dir, "second");
    std::fs::copy(dir.join("first.crt"), dir.join("tls.crt")).expect("copied");
    std::fs::copy(dir.join("first.key"), dir.join("tls.key")).expect("copied");
    let hookstream = serving_tls(&dir).await;
    let (port, admin_port) = (hookstream.port, hookstream.admin_port);
    let mut kept = connect(port, trusting(&first))
        .await
        .expect("TLS with the first certificate");
    assert_eq!(deliver(&mut kept, "over-tls-1").await, 200);

    // The certificate is replaced, and hookstream told.
    std::fs::copy(dir.join("second.crt"), dir.join("tls.crt")).expect("copied");
    std::fs::copy(dir.join("second.key"), dir.join("tls.key")).expect("copied");
    hookstream.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut fresh = loop {
        if let Ok(stream) = connect(port, trusting(&second)).await {
            break stream;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(deliver(&mut fresh, "over-tls-2").await, 200);
    // The same SIGHUP reloaded the configuration too.
    loop {
        let metrics = reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("hookstream_config_reloads_total{result=\"applied\"} 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the configuration was not reloaded:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        connect(port, trusting(&first)).await.is_err(),
        "new connections get the new certificate"
    );
    assert_eq!(
        deliver(&mut kept, "over-tls-3").await,
        200,
        "the connection opened before the reload is still served"
    );

    // The load generator, trusting the certificate in use.
    let url = format!("https://127.0.0.1:{port}/webhooks/livesession");
    let ca = dir.join("second.crt");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "load",
                "--url",
                &url,
                "--requests",
                "50",
                "--connections",
                "2",
                "--ca-file",
            ])
            .arg(ca)
            .env("HOOKSTREAM_LOAD_SECRET", SECRET)
            .output()
    })
    .await
    .expect("task")
    .expect("load runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("200: 50"), "{out}");

    // `send` trusting the same certificate, or any with --tls-insecure; not the system's.
    let url = format!("https://127.0.0.1:{port}/webhooks/livesession");
    let ca = dir.join("second.crt").display().to_string();
    for (trust, expect_ok) in [
        (vec!["--ca-file", ca.as_str()], true),
        (vec!["--tls-insecure"], true),
        (vec![], false),
    ] {
        let mut command = Command::new(BIN);
        command
            .args(["send", "--url", &url, "--fresh-id"])
            .args(&trust)
            .arg("tests/fixtures/livesession/js_error.json")
            .env("HOOKSTREAM_SIGN_SECRET", SECRET);
        let (code, out, err) = run_off_runtime(command).await;
        assert_eq!(code == Some(0), expect_ok, "{trust:?}: {out}{err}");
    }

    let app = hookstream.app();
    app.read_messages(&app.topic("livesession", "js_error"), 55)
        .await;
}

#[test]
fn a_certificate_that_does_not_load_stops_startup_naming_the_file() {
    let dir = temp_dir("tls-bad");
    std::fs::write(dir.join("bad.crt"), "not a certificate").expect("written");
    std::fs::write(dir.join("bad.key"), "not a key").expect("written");
    let file = |name: &str| dir.join(name).display().to_string();
    let (code, err) = serve_refused(
        &[],
        &[
            ("HOOKSTREAM__SERVER__PORT", "0"),
            ("HOOKSTREAM__SERVER__ADMIN_PORT", "0"),
            ("HOOKSTREAM__SERVER__TLS__CERT_FILE", &file("bad.crt")),
            ("HOOKSTREAM__SERVER__TLS__KEY_FILE", &file("bad.key")),
        ],
    );
    assert!(code != Some(0));
    assert!(err.contains("server.tls.cert_file"), "{err}");
    let output = Command::new(BIN)
        .args(["config", "check"])
        .env("HOOKSTREAM__SERVER__TLS__CERT_FILE", dir.join("bad.crt"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("needs both cert_file and key_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_completed_within_the_same_mtime_tick_as_its_failed_reload_is_still_taken() {
    let dir = temp_dir("tls-same-mtime");
    let first = certificate(&dir, "first");
    let second = certificate(&dir, "second");
    std::fs::copy(dir.join("first.crt"), dir.join("tls.crt")).expect("copied");
    std::fs::copy(dir.join("first.key"), dir.join("tls.key")).expect("copied");
    let hookstream = serving_tls(&dir).await;
    let port = hookstream.port;
    assert!(connect(port, trusting(&first)).await.is_ok());

    // The new key lands, and half of the new certificate: the reload this change triggers fails.
    std::fs::copy(dir.join("second.key"), dir.join("tls.key")).expect("copied");
    let half = &second[..second.len() / 2];
    std::fs::write(dir.join("tls.crt"), half).expect("written");
    let mtime = std::fs::metadata(dir.join("tls.crt"))
        .and_then(|m| m.modified())
        .expect("mtime");
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert!(
        connect(port, trusting(&second)).await.is_err(),
        "a half-written certificate is not used"
    );

    // The rest of it lands within the same mtime tick.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("tls.crt"))
        .expect("opened");
    std::io::Write::write_all(&mut &file, second.as_bytes()).expect("written");
    file.set_modified(mtime).expect("mtime kept");
    drop(file);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while connect(port, trusting(&second)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the completed certificate was never taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
