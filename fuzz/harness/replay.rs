//! Replays a committed corpus through a harness, for the `cargo test` suites (tests/it and
//! ffi/tests include this file): a regression on any input fails there without the nightly,
//! instrumented build that fuzz/run.sh needs.

use std::path::Path;

/// Runs every input of fuzz/corpus/`target`/ (under `repo`) through `harness`; fails naming
/// each input that panicked (a harness asserts what a good result must satisfy, so a wrong
/// result panics too).
pub fn replay(repo: &Path, target: &str, harness: fn(&[u8])) {
    let dir = repo.join("fuzz/corpus").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{}: no inputs", dir.display());
    let failed: Vec<_> = inputs
        .iter()
        .filter(|p| {
            let data = std::fs::read(p).unwrap();
            std::panic::catch_unwind(|| harness(&data)).is_err()
        })
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(failed.is_empty(), "{target}: {} of {} inputs panicked: {failed:?}", failed.len(), inputs.len());
    eprintln!("fuzz corpus {target}: {} inputs", inputs.len());
}
