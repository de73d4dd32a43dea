//! Arbitrary bytes as every stored value type (StoreDay, SkuDay, Seen, OutboxEntry, LatestPrice,
//! StoreClock): decoding must never panic, and what decodes must round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::check_decode_state(data));
