//! libFuzzer's entry for fuzz/harness/dicom_cine.rs with compressed frames (JPEG baseline, RLE);
//! `cargo test` runs the same harness over every input of fuzz/corpus/dicom_encapsulated/.
#![no_main]

#[path = "../harness/dicom_cine.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run_encapsulated(data));
