//! libFuzzer's entry for fuzz/harness/y4m_clip.rs; `cargo test` runs the same harness
//! over every input of fuzz/corpus/y4m_clip/.
#![no_main]

#[path = "../harness/y4m_clip.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
