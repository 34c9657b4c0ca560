//! `usq`: score, compare and fit from the command line.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
