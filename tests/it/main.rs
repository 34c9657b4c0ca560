//! The library's integration tests, in one binary (one link of tract instead of one per file).
//! The zero-allocation test is its own binary: it installs a counting global allocator.
//! Filter by module, e.g. `cargo test --release --test it -- golden::`.

mod common;

mod browser;
mod cli;
mod engine;
mod folders;
mod frame_threads;
mod fuzz_corpus;
mod golden;
mod live;
mod manifold_files;
mod model_contract;
mod preprocess_parity;
