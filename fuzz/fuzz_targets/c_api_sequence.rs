//! libFuzzer's entry for fuzz/harness/c_api_sequence.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/c_api_sequence/.
#![no_main]

#[path = "../harness/c_api_sequence.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
