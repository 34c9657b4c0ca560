//! The shipped defaults: the models and the NRQ manifold set in `models/`.
//!
//! Two models: the fp32 reference (offline scoring and comparison: `usq score`, `usq compare`,
//! `usq_score`, `usq_compare`) and its int8 quantisation for live scoring (`usq live`, the C
//! live engine), which is what fits a frame's budget on a CPU (BENCHMARKS.md); the manifold
//! is the same for both (fitted with the fp32 model; models/REPORT.md measures the int8
//! scores against the fp32 ones).
//!
//! Looked up at run time in `$USQ_MODELS`, else `./models`, else the source tree's `models/`;
//! with the `embed-defaults` feature all three are compiled into the library instead.

use crate::error::Result;
use crate::{Encoder, ManifoldSet};
use std::path::PathBuf;

/// The default (fp32 reference) model's file name inside `models/`.
pub const MODEL_FILE: &str = "tinyusfm.onnx";
/// The default live (int8) model's file name inside `models/`.
pub const LIVE_MODEL_FILE: &str = "tinyusfm-int8.onnx";
/// The default manifold set's folder inside `models/`.
pub const MANIFOLD_DIR: &str = "nrq";

/// The folder the defaults are read from.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("USQ_MODELS") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("models");
    if local.join(MODEL_FILE).is_file() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

pub fn model_path() -> PathBuf {
    models_dir().join(MODEL_FILE)
}

pub fn live_model_path() -> PathBuf {
    models_dir().join(LIVE_MODEL_FILE)
}

pub fn manifold_dir() -> PathBuf {
    models_dir().join(MANIFOLD_DIR)
}

#[cfg(feature = "embed-defaults")]
mod embedded {
    pub const MODEL: &[u8] = include_bytes!("../models/tinyusfm.onnx");
    pub const LIVE_MODEL: &[u8] = include_bytes!("../models/tinyusfm-int8.onnx");
    pub const ORGANS: &[(&str, &[u8])] = &[("FetalHead", include_bytes!("../models/nrq/FetalHead.npz"))];
}

/// The default encoder for `batch` images per run.
pub fn encoder(batch: usize) -> Result<Encoder> {
    encoder_with(crate::EncoderOptions::batch(batch))
}

/// The default encoder, with threads.
pub fn encoder_with(options: crate::EncoderOptions) -> Result<Encoder> {
    #[cfg(feature = "embed-defaults")]
    return Encoder::from_bytes_with(embedded::MODEL, options);
    #[cfg(not(feature = "embed-defaults"))]
    Encoder::from_path_with(model_path(), options)
}

/// The default live (int8) encoder.
pub fn live_encoder_with(options: crate::EncoderOptions) -> Result<Encoder> {
    #[cfg(feature = "embed-defaults")]
    return Encoder::from_bytes_with(embedded::LIVE_MODEL, options);
    #[cfg(not(feature = "embed-defaults"))]
    Encoder::from_path_with(live_model_path(), options)
}

/// The default manifold set.
pub fn manifolds() -> Result<ManifoldSet> {
    #[cfg(feature = "embed-defaults")]
    return ManifoldSet::from_npz_bytes(embedded::ORGANS.iter().copied());
    #[cfg(not(feature = "embed-defaults"))]
    ManifoldSet::load_dir(manifold_dir())
}
