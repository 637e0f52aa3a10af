//! Fuzz target `export`: see `fuzz/harness.rs`. Run: `cargo fuzz run --sanitizer none export`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // An `Err` only means the input ran out of bytes; failures are panics.
    let _ = harness::export(data);
});
