//! Golden fixtures: `tests/fixtures/<provider>/<name>.json` → `<name>.expected.json`, for every
//! built-in provider and every preset (enabled under its own name).
//!
//! They live beside the encoder because they run the whole in-process path, from the signature to
//! the Avro datum; this is the lowest layer that sees all of it.
//!
//! Each body is signed with a test secret (with the request headers of `<name>.headers.json`,
//! when a provider reads headers), verified through the provider's real signature scheme, normalized (or recognized as a handshake), encoded to Avro and decoded again, and the
//! record compared with the expected file (minus `raw_payload`, which must equal the body byte
//! for byte). `UPDATE_GOLDEN=1 cargo test` rewrites expected files; review the diff before
//! committing it.

use crate::configuration::ProviderSettings;
use crate::providers::configured::PRESETS;
use crate::providers::{self, Handshake, Registry, VerifiedPayload};
use crate::signature::{HeaderSource, Secret};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const RECEIVED_AT: i64 = 1_700_000_000_000;
const SECRET: &str = "golden-fixture-secret";

/// The built-ins, and each preset enabled under its own name.
fn registry() -> Registry {
    let definitions: Vec<(&str, _)> = PRESETS
        .iter()
        .map(|p| (*p, ProviderSettings::with_preset(p, SECRET).definition()))
        .collect();
    Registry::with_definitions(definitions.iter().map(|(n, d)| (*n, d))).expect("presets compile")
}

fn fixture_dir(provider: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
}

/// The request headers of a fixture: `<name>.headers.json`, when there is one.
fn fixture_headers(path: &Path) -> Vec<(String, String)> {
    let sidecar = path.with_extension("headers.json");
    let Ok(text) = std::fs::read_to_string(&sidecar) else {
        return Vec::new();
    };
    let map: BTreeMap<String, String> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", sidecar.display()));
    map.into_iter().collect()
}

fn run_fixture(registry: &Registry, provider_name: &str, path: &Path) -> serde_json::Value {
    let provider = registry.find(provider_name).expect("registered provider");
    let body = std::fs::read(path).expect("fixture readable");
    let scheme = provider.signature();
    let secret = scheme
        .parse_secrets(SECRET)
        .ok()
        .and_then(|s| s.into_iter().next())
        .unwrap_or_else(|| Secret::new(SECRET));
    let mut headers = fixture_headers(path);
    let id = headers
        .header("webhook-id")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    for (name, value) in scheme.sign_at(&body, &secret, crate::signature::now_secs(), &id) {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.to_string(), value));
    }
    let captured: Vec<(String, String)> = provider
        .request_headers()
        .iter()
        .filter_map(|name| {
            headers
                .header(name)
                .map(|v| ((*name).to_string(), String::from_utf8_lossy(v).into_owned()))
        })
        .collect();
    let verified = scheme
        .verify(&headers, &body, &[secret])
        .expect("a correctly signed fixture verifies");
    let payload = VerifiedPayload::parse(verified).expect("fixture is valid JSON");
    if let Some(handshake) = provider
        .handshake(&payload.request(&captured).expect("object"))
        .expect("well-formed handshake")
    {
        return match handshake {
            Handshake::PlainText(c) => {
                serde_json::json!({"handshake": "plain_text", "challenge": c})
            }
            Handshake::JsonChallenge(c) => serde_json::json!({"handshake": "json", "challenge": c}),
            Handshake::Ping => serde_json::json!({"handshake": "ping"}),
        };
    }
    let event = providers::normalize(provider, &payload, &captured, RECEIVED_AT)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        event.raw_payload.as_bytes(),
        body.as_slice(),
        "raw_payload is the exact body"
    );

    let datum = crate::avro::encode_datum(&event).expect("record matches the schema");
    let decoded = apache_avro::from_avro_datum(crate::avro::schema(), &mut datum.as_slice(), None)
        .expect("datum decodes");
    assert_eq!(decoded, crate::avro::to_value(&event), "Avro round trip");

    // As the record has it: the enum symbol, and every provider's name.
    let mut json = serde_json::to_value(&event).expect("serializable");
    if let Some(obj) = json.as_object_mut() {
        obj.remove("raw_payload");
        let symbol = if provider.is_built_in() {
            provider.name()
        } else {
            crate::avro::OTHER
        };
        obj.insert("provider".into(), symbol.into());
        obj.insert("provider_name".into(), provider.name().into());
    }
    json
}

#[test]
fn every_fixture_normalizes_to_its_expected_record() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    let mut failures = Vec::new();
    let registry = registry();
    for provider in registry.iter() {
        let dir = fixture_dir(provider.name());
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.to_string_lossy();
                p.extension().is_some_and(|e| e == "json")
                    && !name.ends_with(".expected.json")
                    && !name.ends_with(".headers.json")
            })
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no fixtures for {}", provider.name());
        for input in inputs {
            let actual = run_fixture(&registry, provider.name(), &input);
            let expected_path = input.with_extension("expected.json");
            if update {
                let text = serde_json::to_string_pretty(&actual).expect("json") + "\n";
                std::fs::write(&expected_path, text).expect("write expected");
            }
            let expected: serde_json::Value = std::fs::read_to_string(&expected_path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_else(|| panic!("missing or invalid {}", expected_path.display()));
            if actual != expected {
                failures.push(format!(
                    "{}\n  expected: {expected}\n  actual:   {actual}",
                    input.display()
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
    assert!(checked >= 20, "only {checked} fixtures checked");
}
