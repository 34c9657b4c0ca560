//! Command-line front end: argument parsing and output formatting only; the work is the
//! library's.

mod bench;
mod compare;
mod fit;
mod live;
mod progress;
mod score;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "usq", version, about = "Ultrasound image quality from the TinyUSFM foundation model")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// No-reference quality (TinyUSFM-NRQ) of each image, or of every image in folders; higher is better.
    Score(score::Args),
    /// Full-reference distance (TinyUSFM-uLPIPS) of IMG from REF, or of each image of a folder from its reference in another; lower is closer.
    Compare(compare::Args),
    /// Fit an NRQ manifold set from folders of clean images, one folder per organ.
    FitNrq(fit::Args),
    /// Live NRQ of a stream of frames, with a terminal gauge.
    Live(live::Args),
    /// Time the encoder, whole-frame NRQ and the live engine on this machine.
    Bench(bench::Args),
}

/// The model flag shared by every command.
#[derive(clap::Args)]
struct ModelArg {
    /// Contract model (ONNX); default: the shipped fp32 model in models/.
    #[arg(long, value_name = "M")]
    model: Option<PathBuf>,
}

impl ModelArg {
    fn source(&self) -> usq::ModelSource {
        usq::ModelSource::path_or(self.model.clone(), usq::ModelSource::Reference)
    }
}

/// The model flag of `usq live`, whose default is the library's live model for this CPU.
#[derive(clap::Args)]
struct LiveModelArg {
    /// Contract model (ONNX); default: the faster shipped model on this CPU: the int8 one
    /// (tinyusfm-int8.onnx) where the CPU has integer dot products (x86 VNNI, ARM), else
    /// the fp32 one (tinyusfm.onnx). The summary line names the one used.
    #[arg(long, value_name = "M")]
    model: Option<PathBuf>,
}

impl LiveModelArg {
    fn source(&self) -> usq::ModelSource {
        usq::ModelSource::path_or(self.model.clone(), usq::ModelSource::Live)
    }
}

/// Prints an error with its context chain, as `usq: error: a: b: c`.
fn report(e: &usq::Error) {
    eprintln!("usq: error: {e}");
}

pub fn main() -> ExitCode {
    // Output piped into a reader that stops early (`usq score ... | head`) ends usq quietly, as
    // it does other Unix tools, instead of a panic in `println!` on the broken pipe.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(a) => score::run(a),
        Command::Compare(a) => compare::run(a),
        Command::FitNrq(a) => fit::run(a),
        Command::Live(a) => live::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
