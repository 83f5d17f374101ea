//! Providers defined in configuration: arbitrary definitions (scheme, algorithm, encoding,
//! prefix, signed-content template, timestamp header, field sources) either compile or are
//! refused naming a key of that provider, never panic; a compiled one verifies what it signs,
//! refuses arbitrary signature headers that are not the tag, and maps arbitrary bodies and
//! headers into bounded, schema-valid records.
//!
//! Input: `definition \0 header-value \0 body`. The definition is lines: selector bytes (scheme,
//! algorithm, encoding, time format, preset), prefix, signed content, timestamp header, then
//! sources for event name, event id, event time, subject, account id and attributes.
#![no_main]

use hookstream::providers::configured::definition::{FieldsDefinition, SignatureDefinition, Sources};
use hookstream::providers::configured::{Configured, Definition};
use hookstream::providers::{Provider, VerifiedPayload};
use hookstream::signature::{Secret, SignatureError};


fn pick<'a>(selector: &[u8], at: usize, from: &[&'a str]) -> &'a str {
    from[selector.get(at).copied().unwrap_or(0) as usize % from.len()]
}

fn optional(line: Option<&str>) -> Option<String> {
    line.filter(|l| !l.is_empty()).map(str::to_string)
}

fn sources(line: Option<&str>) -> Option<Sources> {
    line.filter(|l| !l.is_empty())
        .map(|l| Sources(l.split('|').map(str::to_string).collect()))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(spec), Some(value), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let spec = String::from_utf8_lossy(spec);
    let mut lines = spec.split('\n');
    let selector = lines.next().unwrap_or_default().as_bytes();
    let preset = pick(selector, 4, &["", "", "github", "stripe", "standard-webhooks", "gitlab"]);
    let definition = Definition {
        preset: (!preset.is_empty()).then(|| preset.to_string()),
        signature: SignatureDefinition {
            scheme: Some(pick(selector, 0, &["hmac", "hmac", "standard-webhooks", "stripe", "x"]).into()),
            header: Some(Sources(vec!["x-sig".into(), "x-sig-old".into()])),
            algorithm: Some(pick(selector, 1, &["sha1", "sha256", "sha512", "md5"]).into()),
            encoding: Some(pick(selector, 2, &["hex", "base64", "b32"]).into()),
            prefix: optional(lines.next()),
            signed_content: optional(lines.next()),
            timestamp_header: optional(lines.next()),
            tolerance: None,
        },
        fields: FieldsDefinition {
            event_name: sources(lines.next()),
            event_id: sources(lines.next()),
            event_time: sources(lines.next()),
            event_time_format: Some(pick(selector, 3, &["auto", "s", "ms", "rfc3339", "?"]).into()),
            subject: sources(lines.next()),
            account_id: sources(lines.next()),
            attributes: lines.next().map(|l| l.split('|').map(str::to_string).collect()),
            event_id_from_body_digest: Some(selector.get(5).is_some_and(|b| b % 2 == 1)),
            allow_unsigned_headers: lines
                .next()
                .map(|l| l.split('|').map(str::to_string).collect()),
            ..FieldsDefinition::default()
        },
        ping_events: None,
    };
    let provider = match Configured::compile("fuzzed", &definition) {
        Ok(provider) => provider,
        Err(e) => {
            assert!(e.key.starts_with("providers.fuzzed"), "{e}");
            assert!(!e.problem.is_empty());
            return;
        }
    };
    let scheme = provider.signature();
    let secrets = match scheme.parse_secrets("whsec_Zm96emVkLXNlY3JldA==") {
        Ok(secrets) => secrets,
        Err(_) => vec![Secret::new("whsec_Zm96emVkLXNlY3JldA==")],
    };
    let value = String::from_utf8_lossy(value).into_owned();
    // The headers a sender sets, plus the fuzzed value in every header anything reads.
    let mut headers: Vec<(String, String)> = provider
        .request_headers()
        .iter()
        .map(|h| (h.to_string(), value.clone()))
        .collect();
    let now = hookstream::signature::now_secs();
    let signed = scheme.sign_at(body, &secrets[0], now, "msg_fuzz");
    for (name, v) in &signed {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.to_string(), v.clone()));
    }
    // What was signed verifies — unless the template signs a header the sender did not set
    // (`sign_at` sets the signature and timestamp headers only): then that header is missing.
    let signed_only: Vec<(String, String)> =
        signed.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
    let verdict = scheme.verify(&signed_only, body, &secrets);
    assert!(
        matches!(verdict, Ok(_) | Err(SignatureError::Missing(_))),
        "what was signed does not verify: {verdict:?}"
    );
    // The fuzzed value as the signature: never a panic, and never accepted unless it carries a
    // tag that was signed.
    let primary = scheme.primary_header();
    let mut forged = headers.clone();
    forged.retain(|(n, _)| !n.eq_ignore_ascii_case(primary));
    forged.push((primary.to_string(), value.clone()));
    if scheme.verify(&forged, body, &secrets).is_ok() {
        let given = value.to_ascii_lowercase();
        let tag = signed[0].1.rsplit([',', '=']).find(|t| t.len() > 8).unwrap_or(&signed[0].1);
        assert!(
            given.contains(&tag.to_ascii_lowercase()),
            "an arbitrary signature header verified"
        );
    }
    let Ok(verified) = verdict else {
        return;
    };
    let Ok(payload) = VerifiedPayload::parse(verified) else {
        return;
    };
    let captured: Vec<(String, String)> = provider
        .request_headers()
        .iter()
        .filter_map(|h| headers.iter().find(|(n, _)| n == h).cloned())
        .collect();
    hookstream_fuzz::check_payload(&provider, &payload, &captured, body);
});
