//! `hookstream send` and `hookstream sign`: a body signed exactly as its provider would sign it,
//! with the configuration `serve` reads — its providers (built-in or defined there) and their
//! secrets — so that a second terminal beside a running server needs nothing else.

use super::{Failure, SendArgs};
use crate::configuration::{self, ConfigDir, Settings};
use crate::providers::{self, Provider};
use crate::signature::{Secret, SignatureScheme};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Answers `send` counts as done: the event is written or on its way (`spooled`), was written
/// before, or the request was a handshake.
const DONE: &[&str] = &["accepted", "spooled", "duplicate", "ping"];

/// The provider called `name` (built-in, or defined in `settings`), and the secret to sign
/// with: `secret` when given, else the provider's first configured secret.
fn provider_and_secret(
    settings: Result<&Settings, &configuration::ConfigError>,
    name: &str,
    secret: Option<&str>,
) -> Result<(&'static dyn Provider, Secret), String> {
    let provider = match (providers::built_in(name), settings) {
        (Some(provider), _) => provider,
        (None, Ok(settings)) => {
            let registry = settings.provider_registry().map_err(|e| e.to_string())?;
            registry.find(name).ok_or_else(|| {
                format!(
                    "unknown provider {name:?}: the configuration defines {} (give another with --provider; is this the server's configuration?)",
                    registry.names().join(", ")
                )
            })?
        }
        (None, Err(e)) => {
            return Err(format!(
                "{name:?} is not a built-in provider, and the configuration that might define it does not load: {e}"
            ))
        }
    };
    let scheme = provider.signature();
    let secret = match secret {
        Some(given) => scheme.parse_secrets(given)?.into_iter().next(),
        None => {
            let settings = settings.map_err(|e| e.to_string())?;
            settings
                .secrets_for(provider)
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
        }
    };
    let secret = secret.ok_or_else(|| {
        format!(
            "no secret for {name}: give --secret (or HOOKSTREAM_SIGN_SECRET), or configure providers.{name}.secrets as the server has it"
        )
    })?;
    Ok((provider, secret))
}

/// FILE's bytes; `-` is standard input.
fn read_body(file: &Path) -> Result<Vec<u8>, String> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
    }
}

/// The signature headers for `body`; `id` is the message id a scheme that signs one (Standard
/// Webhooks) signs, when the request has one already.
fn signature_headers(
    scheme: &SignatureScheme,
    secret: &Secret,
    body: &[u8],
    id: Option<&str>,
) -> Vec<(&'static str, String)> {
    match id {
        Some(id) => scheme.sign_at(body, secret, crate::signature::now_secs(), id),
        None => scheme.sign(body, secret),
    }
}

/// `hookstream sign`: prints the `Header: value` lines.
pub(super) fn sign(
    config_dir: &ConfigDir,
    name: &str,
    secret: Option<&str>,
    file: &Path,
) -> Result<(), Failure> {
    let failed = |e: String| Failure::new(2, e);
    let loaded = configuration::read(config_dir).map(|l| l.settings);
    let (provider, secret) = provider_and_secret(loaded.as_ref(), name, secret).map_err(failed)?;
    let body = read_body(file).map_err(failed)?;
    for (name, value) in signature_headers(&provider.signature(), &secret, &body, None) {
        println!("{name}: {value}");
    }
    Ok(())
}

/// The request headers kept beside a fixture: `NAME.headers.json` for `NAME.json` (a JSON
/// object of strings), when there is one.
fn sidecar_headers(file: &Path) -> Result<BTreeMap<String, String>, String> {
    let sidecar: PathBuf = file.with_extension("headers.json");
    if file.as_os_str() == "-" || !sidecar.is_file() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(&sidecar)
        .map_err(|e| format!("cannot read {}: {e}", sidecar.display()))?;
    let headers: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a JSON object of header names and string values: {e}",
            sidecar.display()
        )
    })?;
    Ok(headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect())
}

/// Gives the delivery a fresh event id: in the id header when the provider reads its id from
/// one, else in the body. A provider deduplicated on the body's digest also gets a unique run of
/// whitespace after the JSON (the same document to any JSON reader, a new body to the digest).
/// Says what it did on standard error; `Err` names the flag that would do it instead.
fn fresh_id(
    provider: &dyn Provider,
    body: &mut Vec<u8>,
    headers: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let fresh = format!("send-{nanos:x}");
    match provider.event_id_header() {
        Some(header) => {
            headers.insert(header.to_string(), fresh.clone());
            eprintln!("hookstream send: event id {fresh} (header {header})");
        }
        None => {
            let text = std::str::from_utf8(body)
                .map_err(|_| "--fresh-id needs a UTF-8 JSON body".to_string())?;
            let span = crate::load::event_id_span(provider, text).map_err(|e| {
                format!("--fresh-id cannot replace the event id: {e}; edit the body instead")
            })?;
            *body = [&text[..span.start], &fresh, &text[span.end..]]
                .concat()
                .into_bytes();
            eprintln!("hookstream send: event id {fresh}");
        }
    }
    if provider.dedupes_on_body() {
        // Two bits per character: space, tab, newline, carriage return — JSON whitespace.
        let mut nonce = nanos;
        body.push(b'\n');
        for _ in 0..64 {
            body.push([b' ', b'\t', b'\n', b'\r'][(nonce & 3) as usize]);
            nonce >>= 2;
        }
        eprintln!(
            "hookstream send: {} is deduplicated on the body's digest, so whitespace was added after the JSON to make it a new delivery",
            provider.name()
        );
    }
    Ok(())
}

/// Whether `answer` (with `status`) says the delivery is done: see [`DONE`]; a challenge
/// handshake is answered with the challenge itself (text, or `{"challenge": …}`).
fn done(status: reqwest::StatusCode, content_type: &str, answer: &str) -> bool {
    if !status.is_success() {
        return false;
    }
    if !content_type.starts_with("application/json") {
        return true;
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(answer) else {
        return false;
    };
    json.get("challenge").is_some()
        || json["status"]
            .as_str()
            .is_some_and(|status| DONE.contains(&status))
}

/// `hookstream send`: signs FILE, POSTs it, prints the status and the answer; exits 0 only when
/// the event is written (or on its way), was written before, or the request was a handshake.
pub(super) fn send(config_dir: &ConfigDir, args: SendArgs) -> Result<(), Failure> {
    let failed = |e: String| Failure::new(2, e);
    let name = match &args.provider {
        Some(name) => name.clone(),
        None => args
            .url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    let loaded = configuration::read(config_dir).map(|l| l.settings);
    let (provider, secret) =
        provider_and_secret(loaded.as_ref(), &name, args.secret.as_deref()).map_err(failed)?;
    let mut body = read_body(&args.file).map_err(failed)?;
    let mut headers = sidecar_headers(&args.file).map_err(failed)?;
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| failed(format!("--header {header:?} is not NAME:VALUE")))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    if args.fresh_id {
        fresh_id(provider, &mut body, &mut headers).map_err(failed)?;
    }
    let scheme = provider.signature();
    let id = headers.get(crate::signature::standard::ID).cloned();
    for (name, value) in signature_headers(&scheme, &secret, &body, id.as_deref()) {
        headers.insert(name.to_string(), value);
    }
    let tls = args
        .url
        .starts_with("https://")
        .then(|| crate::load::client_config(args.ca_file.as_deref(), args.tls_insecure));
    let client = match tls {
        Some(config) => reqwest::Client::builder()
            .use_preconfigured_tls(config.map_err(failed)?.as_ref().clone())
            .build(),
        None => reqwest::Client::builder().build(),
    }
    .map_err(|e| failed(format!("cannot make an HTTP client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    let (status, content_type, answer) = runtime
        .block_on(async {
            let mut request = client
                .post(&args.url)
                .header("content-type", "application/json");
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            let response = request.body(body).send().await?;
            let status = response.status();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Ok::<_, reqwest::Error>((status, content_type, response.text().await?))
        })
        .map_err(|e| Failure::new(1, format!("no answer from {}: {e}", args.url)))?;
    println!("{} {answer}", status.as_u16());
    if done(status, &content_type, &answer) {
        return Ok(());
    }
    if let Some(explained) = dead_lettered(status, &answer, provider.name()) {
        return Err(Failure::new(DEAD_LETTERED, explained));
    }
    Err(Failure::new(
        1,
        format!(
            "answered {status}, which is not accepted, spooled, duplicate, ping or a challenge"
        ),
    ))
}

/// `send`'s exit status when the delivery was kept as a dead letter: verified, but not written
/// to an event topic (as `dead-letters replay` exits 3 when letters stay in the topic).
const DEAD_LETTERED: u8 = 3;

/// When `answer` says the delivery was kept as a dead letter: what that means, why (the error
/// and its detail) and the commands that list and replay it.
fn dead_lettered(status: reqwest::StatusCode, answer: &str, provider: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(answer).ok()?;
    if !status.is_success() || json["status"] != "dead_lettered" {
        return None;
    }
    let error = json["error"].as_str().unwrap_or("unknown");
    let why = match json["detail"].as_str().filter(|d| !d.is_empty()) {
        Some(detail) => format!("{error}: {detail}"),
        None => error.to_string(),
    };
    Some(format!(
        "the webhook was verified but not written to an event topic: it was kept as a dead letter ({why}).\n  \
         list it:   hookstream dead-letters list --pending --provider {provider}\n  \
         replay it: hookstream dead-letters replay --provider {provider}   (once the cause is fixed; --dry-run first shows what would happen)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn a_dead_letter_is_explained_with_its_error_and_the_commands_that_list_and_replay_it() {
        let answer = r#"{"status":"dead_lettered","error":"invalid_json","detail":"not JSON"}"#;
        let said = dead_lettered(StatusCode::OK, answer, "acme").expect("explained");
        for part in [
            "kept as a dead letter (invalid_json: not JSON)",
            "hookstream dead-letters list --pending --provider acme",
            "hookstream dead-letters replay --provider acme",
        ] {
            assert!(said.contains(part), "{part}: {said}");
        }
        let accepted = r#"{"status":"accepted","event_id":"x","topic":"t"}"#;
        assert_eq!(dead_lettered(StatusCode::OK, accepted, "acme"), None);
        assert_eq!(dead_lettered(StatusCode::OK, "not json", "acme"), None);
    }

    #[test]
    fn only_a_written_duplicate_or_handshake_answer_is_done() {
        let json = "application/json";
        for status in DONE {
            let answer = format!(r#"{{"status":"{status}","event_id":"x"}}"#);
            assert!(done(StatusCode::OK, json, &answer), "{status}");
        }
        assert!(done(StatusCode::OK, json, r#"{"challenge":"abc"}"#));
        assert!(done(StatusCode::OK, "text/plain; charset=utf-8", "abc"));
        assert!(!done(
            StatusCode::OK,
            json,
            r#"{"status":"dead_lettered","error":"invalid_payload"}"#
        ));
        assert!(!done(
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            r#"{"error":"broker_unavailable"}"#
        ));
    }
}
