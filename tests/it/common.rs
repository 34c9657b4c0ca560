//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn at(rel: &str) -> PathBuf {
    repo().join(rel)
}

/// The seeded contract model the goldens were made with.
pub fn seeded_model() -> PathBuf {
    at("models/tinyusfm-seeded.onnx")
}

pub fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(at("tests/golden/golden.json")).expect("tests/golden/golden.json");
    serde_json::from_str(&text).expect("golden.json parses")
}

/// `../shared/data` beside the repo (or `$USQ_SHARED_DATA`), if present.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("USQ_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data"));
    dir.is_dir().then_some(dir)
}

/// Resolves a golden's path: repo-relative, or `../shared/data/...` through [`shared_data`].
pub fn resolve(rel: &str) -> Option<PathBuf> {
    match rel.strip_prefix("../shared/data/") {
        Some(rest) => shared_data().map(|d| d.join(rest)).filter(|p| p.exists()),
        None => Some(at(rel)),
    }
}

/// Prints a visible skip note. Written to the stderr handle directly, which the test
/// harness does not capture (it captures only the print macros), so CI logs show it.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

pub fn usq_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_usq"))
}

/// A [`std::process::Command`] for the `usq` binary. When `$USQ_TEST_RUNNER` is set (for example
/// `qemu-aarch64-static -L /usr/aarch64-linux-gnu` for a cross-built binary, see `cross/test.sh`),
/// the command runs that runner, split on whitespace, with the binary as its first argument.
pub fn usq_command() -> std::process::Command {
    let runner = std::env::var("USQ_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(words).arg(usq_bin());
            cmd
        }
        None => std::process::Command::new(usq_bin()),
    }
}
