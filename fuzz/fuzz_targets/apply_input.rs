//! A few arbitrary messages through the whole retail topology over an in-memory store, then
//! ticks that finalize and prune: nothing may panic or fail, and output headers stay one line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::check_apply_input(data));
