//! The committed corpus of the C API sequence fuzz target (fuzz/corpus/c_api_sequence/)
//! through the harness libFuzzer runs (fuzz/harness/c_api_sequence.rs): careless call
//! sequences on the engine, producer and scorer handles; every status one of the header's,
//! never a caught panic, and a good frame still scores after each sequence.

#[path = "../../fuzz/harness/c_api_sequence.rs"]
mod c_api_sequence;
#[path = "../../fuzz/harness/replay.rs"]
mod replay;

#[test]
fn c_api_sequence() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    replay::replay(repo, "c_api_sequence", c_api_sequence::run);
}
