//! Fuzzes the receive path of a frame: header checks, the size limit, and
//! validated decoding of the payload as every type the wire carries.
//! Run with `cargo fuzz run decode_frame` from `framework/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parallel::wire::fuzz_frame(data);
});
