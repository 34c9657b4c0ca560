//! libFuzzer's entry for fuzz/harness/image_decode.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/image_decode/.
#![no_main]

#[path = "../harness/image_decode.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
