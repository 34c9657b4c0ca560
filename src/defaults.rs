//! The shipped defaults: the model and the NRQ manifold set in `models/`.
//!
//! Looked up at run time in `$USQ_MODELS`, else `./models`, else the source tree's `models/`;
//! with the `embed-defaults` feature both are compiled into the library instead.

use crate::error::Result;
use crate::{Encoder, ManifoldSet};
use std::path::PathBuf;

/// The default model's file name inside `models/`.
pub const MODEL_FILE: &str = "tinyusfm.onnx";
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

pub fn manifold_dir() -> PathBuf {
    models_dir().join(MANIFOLD_DIR)
}

#[cfg(feature = "embed-defaults")]
mod embedded {
    pub const MODEL: &[u8] = include_bytes!("../models/tinyusfm.onnx");
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

/// The default manifold set.
pub fn manifolds() -> Result<ManifoldSet> {
    #[cfg(feature = "embed-defaults")]
    return ManifoldSet::from_npz_bytes(embedded::ORGANS.iter().copied());
    #[cfg(not(feature = "embed-defaults"))]
    ManifoldSet::load_dir(manifold_dir())
}
