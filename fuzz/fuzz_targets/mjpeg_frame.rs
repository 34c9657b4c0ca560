//! libFuzzer's entry for fuzz/harness/mjpeg_frame.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/mjpeg_frame/.
#![no_main]

#[path = "../harness/mjpeg_frame.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
