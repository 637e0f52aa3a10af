//! Fuzz target `config`: see `fuzz/harness.rs`. Run: `cargo fuzz run --sanitizer none config`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An `Err` only means the input ran out of bytes; failures are panics.
    let _ = harness::config(data);
});
