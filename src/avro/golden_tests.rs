//! Golden fixtures: `tests/fixtures/<provider>/<name>.json` → `<name>.expected.json`.
//!
//! They live beside the encoder because they run the whole in-process path, from the signature to
//! the Avro datum; this is the lowest layer that sees all of it.
//!
//! Each body is signed with a test secret, verified through the provider's real signature
//! scheme, normalized (or recognized as a handshake), encoded to Avro and decoded again, and the
//! record compared with the expected file (minus `raw_payload`, which must equal the body byte
//! for byte). `UPDATE_GOLDEN=1 cargo test` rewrites expected files; review the diff before
//! committing it.

use crate::providers::{self, find, Handshake, VerifiedPayload, REGISTRY};
use crate::signature::{HeaderSource, Secret};
use std::path::{Path, PathBuf};

const RECEIVED_AT: i64 = 1_700_000_000_000;
const SECRET: &str = "golden-fixture-secret";

struct OneHeader(&'static str, String);
impl HeaderSource for OneHeader {
    fn header(&self, name: &str) -> Option<&[u8]> {
        (name.eq_ignore_ascii_case(self.0)).then_some(self.1.as_bytes())
    }
}

fn fixture_dir(provider: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
}

fn run_fixture(provider_name: &str, path: &Path) -> serde_json::Value {
    let provider = find(provider_name).expect("registered provider");
    let body = std::fs::read(path).expect("fixture readable");
    let secret = Secret::new(SECRET);
    let scheme = provider.signature();
    let headers = OneHeader(scheme.primary_header(), scheme.sign(&body, &secret));
    let verified = scheme
        .verify(&headers, &body, &[secret])
        .expect("a correctly signed fixture verifies");
    let payload = VerifiedPayload::parse(verified).expect("fixture is valid JSON");
    if let Some(handshake) = provider
        .handshake(payload.object().expect("object"))
        .expect("well-formed handshake")
    {
        return match handshake {
            Handshake::PlainText(c) => {
                serde_json::json!({"handshake": "plain_text", "challenge": c})
            }
            Handshake::JsonChallenge(c) => serde_json::json!({"handshake": "json", "challenge": c}),
        };
    }
    let event = providers::normalize(provider, &payload, RECEIVED_AT)
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

    let mut json = serde_json::to_value(&event).expect("serializable");
    if let Some(obj) = json.as_object_mut() {
        obj.remove("raw_payload");
    }
    json
}

#[test]
fn every_fixture_normalizes_to_its_expected_record() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    let mut failures = Vec::new();
    for provider in REGISTRY {
        let dir = fixture_dir(provider.name());
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && !p.to_string_lossy().ends_with(".expected.json")
            })
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no fixtures for {}", provider.name());
        for input in inputs {
            let actual = run_fixture(provider.name(), &input);
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
