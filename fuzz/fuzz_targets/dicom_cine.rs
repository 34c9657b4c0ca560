//! libFuzzer's entry for fuzz/harness/dicom_cine.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/dicom_cine/.
#![no_main]

#[path = "../harness/dicom_cine.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
