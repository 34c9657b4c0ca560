//! libFuzzer's entry for fuzz/harness/onnx_model.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/onnx_model/.
#![no_main]

#[path = "../harness/onnx_model.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
