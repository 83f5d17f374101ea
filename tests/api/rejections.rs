//! "Why did my webhook fail?": the latest rejected deliveries on the admin port
//! (`GET /rejections`) and `hookstream rejections`, through the binary.

use crate::support::process::Hookstream;
use crate::support::*;
use sha2::{Digest, Sha256};
use std::process::Command;
use std::time::{Duration, SystemTime};

const LIVESESSION_SECRETS: [&str; 2] = ["rejections-first-secret", "rejections-second-secret"];
const SEISMIC_SECRET: &str = "rejections-seismic-secret";
const WRONG_SECRET: &str = "rejections-wrong-secret";
/// Text of the body that must never show in what is recorded.
const BODY_TEXT: &str = "rejections-body-text-never-recorded";

/// The binary serving LiveSession with two secrets, and Seismic.
async fn server() -> Hookstream {
    let secrets = LIVESESSION_SECRETS.join(",");
    Hookstream::start_with(
        &test_brokers(),
        &unique_prefix(),
        &[
            ("HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS", &secrets),
            ("HOOKSTREAM__PROVIDERS__SEISMIC__SECRETS", SEISMIC_SECRET),
        ],
    )
    .await
}

async fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::read(request).await
}

/// `GET path` on the admin port.
async fn admin(server: &Hookstream, path: &str) -> Reply {
    Reply::read(reqwest::Client::new().get(server.admin_url(path))).await
}

/// The rejections the admin port lists for `query` (`""` for all).
async fn listed(server: &Hookstream, query: &str) -> Vec<serde_json::Value> {
    let reply = admin(server, &format!("/rejections{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["rejections"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no list of rejections: {}", reply.text))
}

/// Runs `hookstream rejections ARGS` with `env`; (exit code, stdout, stderr).
async fn rejections_command(
    args: &[&str],
    env: &[(&str, String)],
) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("rejections")
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    run_off_runtime(command).await
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn strings(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .filter_map(|v| v.as_str())
        .collect()
}

#[tokio::test]
async fn a_wrong_secret_and_a_missing_signature_are_listed_with_headers_lengths_and_digests_and_no_secret_signature_or_body(
) {
    let server = server().await;
    let started = SystemTime::now() - Duration::from_secs(1);
    let body = with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = BODY_TEXT.into()
    });
    let (header, wrong_signature) = sign("livesession", &body, WRONG_SECRET);
    assert_eq!(header, "LiveSession-Signature");
    post(&server.url(), &body, &[(&header, &wrong_signature)])
        .await
        .assert_error(401, "invalid_signature");
    post(&server.url(), &body, &[])
        .await
        .assert_error(401, "missing_signature");
    // Seismic reads an unsigned body (it may be a handshake), so its length and digest are known.
    let seismic_body = with_json(&fixture("seismic", "email_v3"), |j| {
        j["id"] = BODY_TEXT.into()
    });
    post(&server.webhook_url("seismic"), &seismic_body, &[])
        .await
        .assert_error(401, "missing_signature");

    let livesession = listed(&server, "?provider=livesession").await;
    assert_eq!(livesession.len(), 2, "{livesession:#?}");
    let (missing, wrong) = (&livesession[0], &livesession[1]);
    assert_eq!(wrong["provider"], "livesession");
    assert_eq!(wrong["reason"], "invalid_signature");
    assert_eq!(wrong["status"], 401);
    assert_eq!(
        strings(&wrong["headers_present"]),
        ["LiveSession-Signature"]
    );
    assert!(strings(&wrong["headers_missing"]).is_empty(), "{wrong}");
    assert_eq!(wrong["body_bytes"], body.len());
    assert_eq!(wrong["content_length"], body.len());
    assert_eq!(wrong["body_sha256"], sha256_hex(&body));
    assert_eq!(wrong["signature_parsed"], true);
    assert_eq!(wrong["secrets_tried"], 2);
    assert!(
        wrong["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("2 secrets were tried"),
        "{wrong}"
    );
    let remote = wrong["remote_addr"].as_str().unwrap_or_default();
    assert!(remote.starts_with("127.0.0.1:"), "{wrong}");
    let time = humantime::parse_rfc3339(wrong["time"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {wrong}"));
    assert!(
        time >= started && time <= SystemTime::now(),
        "{wrong} is not from this test"
    );
    assert!(
        wrong["time"].as_str().unwrap_or_default().ends_with('Z'),
        "UTC"
    );

    assert_eq!(missing["reason"], "missing_signature");
    assert_eq!(missing["status"], 401);
    assert!(strings(&missing["headers_present"]).is_empty(), "{missing}");
    assert_eq!(
        strings(&missing["headers_missing"]),
        ["LiveSession-Signature"]
    );
    // Refused before its body was read: the declared length only.
    assert_eq!(missing["content_length"], body.len());
    assert!(
        missing["body_bytes"].is_null() && missing["body_sha256"].is_null(),
        "{missing}"
    );
    assert!(missing["signature_parsed"].is_null(), "{missing}");
    assert!(
        missing["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("no LiveSession-Signature header"),
        "{missing}"
    );

    let seismic = listed(&server, "?provider=seismic").await;
    assert_eq!(seismic.len(), 1, "{seismic:#?}");
    assert_eq!(seismic[0]["reason"], "missing_signature");
    assert_eq!(
        strings(&seismic[0]["headers_missing"]),
        ["x-seismic-signature", "x-seismic-signature-old"]
    );
    assert_eq!(seismic[0]["body_bytes"], seismic_body.len());
    assert_eq!(seismic[0]["body_sha256"], sha256_hex(&seismic_body));

    let all = listed(&server, "").await;
    let order: Vec<_> = all
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["provider"].as_str().unwrap_or_default(),
                e["reason"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            "seismic missing_signature",
            "livesession missing_signature",
            "livesession invalid_signature"
        ],
        "newest first"
    );

    // The command finds the admin port in the configuration, as `serve` reads it.
    let (code, printed, stderr) = rejections_command(
        &[],
        &[(
            "HOOKSTREAM__SERVER__ADMIN_PORT",
            server.admin_port.to_string(),
        )],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    for expected in [
        "3 rejected deliveries, newest first",
        "livesession  401 invalid_signature  from 127.0.0.1:",
        "livesession  401 missing_signature  from 127.0.0.1:",
        "present: LiveSession-Signature; missing: none",
        "present: none; missing: LiveSession-Signature",
        &format!("{} bytes, sha256 {}", body.len(), sha256_hex(&body)),
        &format!("not read in full ({} bytes declared)", body.len()),
        "signature  parsed, 2 secrets tried",
        &format!(
            "{} bytes, sha256 {}",
            seismic_body.len(),
            sha256_hex(&seismic_body)
        ),
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} not in:\n{printed}"
        );
    }
    let (code, seismic_only, stderr) = rejections_command(
        &[
            "--provider",
            "seismic",
            "--admin-url",
            &server.admin_url(""),
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        seismic_only.starts_with("1 rejected delivery of seismic"),
        "{seismic_only}"
    );
    assert!(!seismic_only.contains("livesession"), "{seismic_only}");

    let json = admin(&server, "/rejections").await.text;
    let never = [
        LIVESESSION_SECRETS[0],
        LIVESESSION_SECRETS[1],
        SEISMIC_SECRET,
        WRONG_SECRET,
        wrong_signature.as_str(),
        BODY_TEXT,
    ];
    for (what, text) in [
        ("the JSON", &json),
        ("the command", &printed),
        ("the command", &seismic_only),
    ] {
        for secret in never {
            assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
        }
    }
}

#[tokio::test]
async fn the_record_keeps_the_last_hundred_per_provider_on_the_admin_port_only() {
    let server = server().await;
    // Two batches a second apart: at most 100 a second are recorded per provider.
    let mut sent = 0usize;
    for batch in 0..2 {
        if batch > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        for _ in 0..60 {
            sent += 1;
            let body = vec![b' '; sent];
            post(&server.url(), &body, &[])
                .await
                .assert_error(401, "missing_signature");
        }
    }
    for name in ["not-a-provider", "nor-this-one"] {
        post(&server.webhook_url(name), b"{}", &[])
            .await
            .assert_error(404, "unknown_provider");
    }
    let reply = admin(&server, "/rejections?provider=livesession").await;
    assert_eq!(reply.json()["kept_per_provider"], 100, "{}", reply.text);
    let kept = listed(&server, "?provider=livesession").await;
    let lengths: Vec<u64> = kept
        .iter()
        .map(|e| e["content_length"].as_u64().unwrap_or_default())
        .collect();
    let expected: Vec<u64> = (21..=120).rev().collect();
    assert_eq!(lengths, expected, "the last 100 of 120, newest first");
    let unknown = listed(&server, "?provider=unknown").await;
    assert_eq!(unknown.len(), 2, "{unknown:#?}");
    assert!(unknown.iter().all(|e| e["reason"] == "unknown_provider"));
    assert_eq!(listed(&server, "").await.len(), 102);

    // Never on the public port.
    let public = format!("http://127.0.0.1:{}", server.port);
    for path in ["/rejections", "/rejections?provider=livesession"] {
        Reply::read(reqwest::Client::new().get(format!("{public}{path}")))
            .await
            .assert_error(404, "not_found");
    }
    let (code, _, stderr) = rejections_command(&["--admin-url", &public], &[]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is this the admin port"), "{stderr}");

    // A query it does not take, and a provider that is not configured, are named.
    let typo = admin(&server, "/rejections?provder=livesession").await;
    assert!(
        typo.assert_error(400, "invalid_query")
            .contains("\"provder\""),
        "{}",
        typo.text
    );
    admin(&server, "/rejections?provider=livesesion")
        .await
        .assert_error(404, "unknown_provider");
    let (code, _, stderr) = rejections_command(
        &[
            "--provider",
            "livesesion",
            "--admin-url",
            &server.admin_url(""),
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("unknown_provider") && stderr.contains("livesesion"),
        "{stderr}"
    );
}

#[tokio::test]
async fn rejections_says_clearly_that_the_server_cannot_be_reached() {
    let port = free_port();
    let (code, stdout, stderr) =
        rejections_command(&[], &[("HOOKSTREAM__SERVER__ADMIN_PORT", port.to_string())]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "cannot reach hookstream's admin port at http://127.0.0.1:{port}"
        )) && stderr.contains("with this configuration"),
        "{stderr}"
    );
    let (code, _, stderr) = rejections_command(&["--admin-url", "localhost:9090"], &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--admin-url"), "{stderr}");
}
