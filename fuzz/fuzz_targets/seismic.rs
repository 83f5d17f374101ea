//! The seismic provider on arbitrary bodies: handshake and normalization never panic, and every
//! record they make is bounded and encodes with the schema.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| hookstream_fuzz::check_provider("seismic", body));
