//! Fuzzes the reading of a lane: full and short frame headers one after
//! another, each checked, with their payloads skipped.
//! Run with `cargo fuzz run decode_lane` from `framework/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parallel::wire::fuzz_lane(data);
});
