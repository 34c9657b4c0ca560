#![warn(missing_docs)]
//! usq: live ultrasound image quality from the TinyUSFM foundation model.
//!
//! - [`contract`]: the model contract's sizes, names and metadata keys;
//! - [`scorer`]: a model and its manifolds, checked once; NRQ, uLPIPS and heatmaps;
//! - [`imaging`]: images from bytes to encoder inputs: decoding, pixel formats with stride,
//!   gray conversion, OpenCV-exact resampling, the NRQ patch grid, heatmaps;
//! - [`dataset`]: folders of images as one job: listing, pairing, scoring on several threads;
//! - [`fitting`]: organ manifolds fitted from folders of clean frames (fit and quality scale);
//! - [`encoder`]: the TinyUSFM contract model through tract;
//! - [`metrics`]: the uLPIPS and NRQ maths over features (pure);
//! - [`manifold`]: organ manifolds (reading, writing, fitting);
//! - [`quality`]: the metrics end to end;
//! - [`checks`]: acquisition checks beside NRQ (gain, saturation, contact, frozen, blank,
//!   organ mismatch), judged against the organ's clean statistics;
//! - [`capture`]: capture-card frames (V4L2 with feature `v4l2`) and their formats;
//! - [`engine`]: the live engine (frame ring, latency budget, rotating patch schedule);
//! - `ops` (crate-private): tract ops the project owns (faster casts, int8 quantisation and
//!   attention);
//! - [`weighting`]: task-anchored uLPIPS weights (beside the paper's equal weights);
//! - [`pool`]: a fixed-pool global allocator for allocation-free firmware;
//! - [`defaults`]: the shipped models and manifold, and which a scorer uses;
//! - [`error`]: the crate's one error type: a kind to branch on and a chain of context.

#[doc(hidden)]
pub mod bench_hooks;
pub mod capture;
pub mod checks;
pub mod clip;
pub mod contract;
pub mod dataset;
pub mod defaults;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod fitting;
pub mod imaging;
pub mod manifold;
pub mod metrics;
mod model_shapes;
pub(crate) mod ops;
pub mod pool;
pub mod quality;
pub mod scorer;
pub mod weighting;

pub use defaults::{LiveModel, ManifoldSource, ModelSource};
pub use encoder::{Encoder, EncoderOptions, ImageFeatures, ModelInfo};
pub use error::{Context, Error, ErrorKind, Result};
pub use imaging::frame::GrayFrame;
pub use manifold::{ManifoldSet, OrganModel};
pub use quality::{CompareReport, ScoreOptions, ScoreReport};
pub use scorer::Scorer;
pub use weighting::UlpipsWeights;
