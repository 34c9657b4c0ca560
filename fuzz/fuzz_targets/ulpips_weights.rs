//! libFuzzer's entry for fuzz/harness/ulpips_weights.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/ulpips_weights/.
#![no_main]

#[path = "../harness/ulpips_weights.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
