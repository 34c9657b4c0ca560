//! libFuzzer's entry for fuzz/harness/pixel_convert.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/pixel_convert/.
#![no_main]

#[path = "../harness/pixel_convert.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
