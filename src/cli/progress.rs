//! Progress of folder-scale runs on stderr: a bar with rate and time left when stderr is a
//! terminal, nothing when it is piped or redirected (logs stay clean).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar over `len` items of `what` ("images", "pairs"); hidden unless stderr is a terminal.
pub fn bar(len: usize, what: &str) -> ProgressBar {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    let template =
        format!("{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {what}, {{per_sec}}, {{eta}} left {{msg}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> "));
    bar
}

/// Prints a line on stdout without tearing the bar drawn on the same terminal.
pub fn println(bar: &ProgressBar, line: &str) {
    bar.suspend(|| println!("{line}"));
}
