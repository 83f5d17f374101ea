//! Event and topic naming on arbitrary text: names stay within Kafka's topic alphabet and length,
//! and converting twice changes nothing.
#![no_main]

use hookstream::naming::{snake_case, topic_name};
use hookstream::providers::seismic::event_name_from_version;
use hookstream_fuzz::{assert_valid_event_name, assert_valid_topic};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for name in [snake_case(&text), event_name_from_version(&text)] {
        if name.is_empty() {
            // Only blank input (or a bare version suffix) has no name; providers refuse those.
            continue;
        }
        assert_valid_event_name(&name);
        assert_eq!(snake_case(&name), name, "snake_case is idempotent");
        for provider in ["livesession", "lasoexperience", "seismic"] {
            assert_valid_topic(&topic_name("webhooks", provider, &name));
        }
    }
});
