//! libFuzzer's entry for fuzz/harness/npz_manifold.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/npz_manifold/.
#![no_main]

#[path = "../harness/npz_manifold.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
