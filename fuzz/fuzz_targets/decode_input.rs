//! Arbitrary subject, content type and payload through the input decoder: it must never panic,
//! and what it accepts must be safe for the aggregates (see `tally_fuzz::check_decode_input`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::check_decode_input(data));
