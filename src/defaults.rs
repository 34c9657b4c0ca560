//! The shipped defaults (the models and the NRQ manifold set in `models/`) and the policy of
//! which model and manifold a scorer uses: [`ModelSource`], [`ManifoldSource`].
//!
//! Two models: the fp32 reference (offline scoring and comparison: `usq score`, `usq compare`,
//! `usq_score`, `usq_compare`) and its int8 quantisation for live scoring (`usq live`, the C
//! live engine), which is what fits a frame's budget on a CPU (BENCHMARKS.md); the manifold
//! is the same for both (fitted with the fp32 model; models/REPORT.md measures the int8
//! scores against the fp32 ones).
//!
//! Looked up at run time in `$USQ_MODELS`, else `./models`, else the source tree's `models/`;
//! with the `embed-defaults` feature all three are compiled into the library instead.

use crate::contract::DESCRIPTOR_LEN;
use crate::encoder::{Encoder, EncoderOptions};
use crate::error::{Context, Result};
use crate::manifold::ManifoldSet;
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

/// The shipped fp32 model's path.
pub fn model_path() -> PathBuf {
    models_dir().join(MODEL_FILE)
}

/// The shipped int8 model's path.
pub fn live_model_path() -> PathBuf {
    models_dir().join(LIVE_MODEL_FILE)
}

/// The shipped manifold folder.
pub fn manifold_dir() -> PathBuf {
    models_dir().join(MANIFOLD_DIR)
}

#[cfg(feature = "embed-defaults")]
mod embedded {
    pub const MODEL: &[u8] = include_bytes!("../models/tinyusfm.onnx");
    pub const LIVE_MODEL: &[u8] = include_bytes!("../models/tinyusfm-int8.onnx");
    pub const ORGANS: &[(&str, &[u8])] = &[("FetalHead", include_bytes!("../models/nrq/FetalHead.npz"))];
}

/// Where a scorer's model comes from. The library decides what each default means; the
/// faces (CLI, C library, bindings) only translate "a path, or nothing" into one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An ONNX file that follows the model contract.
    Path(PathBuf),
    /// The shipped fp32 reference model: offline scoring and comparison.
    Reference,
    /// The shipped int8 model: live scoring within a frame's budget.
    Live,
    /// A contract model held in memory (firmware without a filesystem).
    Bytes(std::sync::Arc<[u8]>),
}

impl ModelSource {
    /// `path` when given, else `default`.
    pub fn path_or(path: Option<impl Into<PathBuf>>, default: ModelSource) -> ModelSource {
        path.map_or(default, |p| ModelSource::Path(p.into()))
    }

    /// Builds the encoder. Errors say which model failed to load.
    pub fn load(&self, options: EncoderOptions) -> Result<Encoder> {
        match self {
            ModelSource::Path(p) => Encoder::from_path_with(p, options),
            ModelSource::Reference => reference_encoder(options).context("loading the default model"),
            ModelSource::Live => live_encoder(options).context("loading the default live model"),
            ModelSource::Bytes(b) => Encoder::from_bytes_with(b, options).context("loading the model bytes"),
        }
    }

    /// The same model on tract's own ops only, without the project's (crate-private `ops`): to
    /// measure what they gain on a CPU.
    pub fn load_tract_ops_only(&self, options: EncoderOptions) -> Result<Encoder> {
        let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading model {}", p.display()));
        let bytes: std::borrow::Cow<'_, [u8]> = match self {
            ModelSource::Path(p) => read(p)?.into(),
            ModelSource::Bytes(b) => (&b[..]).into(),
            #[cfg(feature = "embed-defaults")]
            ModelSource::Reference => embedded::MODEL.into(),
            #[cfg(feature = "embed-defaults")]
            ModelSource::Live => embedded::LIVE_MODEL.into(),
            #[cfg(not(feature = "embed-defaults"))]
            ModelSource::Reference => read(&model_path())?.into(),
            #[cfg(not(feature = "embed-defaults"))]
            ModelSource::Live => read(&live_model_path())?.into(),
        };
        Encoder::from_bytes_tract_ops_only(&bytes, options)
    }

    /// The file this source reads, if any (for reports such as `usq bench`).
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            ModelSource::Path(p) => Some(p.clone()),
            ModelSource::Reference if !cfg!(feature = "embed-defaults") => Some(model_path()),
            ModelSource::Live if !cfg!(feature = "embed-defaults") => Some(live_model_path()),
            _ => None,
        }
    }
}

/// Where a scorer's organ manifolds come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifoldSource {
    /// A folder of `<Organ>.npz` files.
    Dir(PathBuf),
    /// The shipped manifold set.
    Default,
    /// A set already in memory.
    Set(ManifoldSet),
    /// None: the scorer compares (uLPIPS) but cannot score (NRQ).
    None,
}

impl ManifoldSource {
    /// `dir` when given, else the shipped set.
    pub fn dir_or_default(dir: Option<impl Into<PathBuf>>) -> ManifoldSource {
        dir.map_or(ManifoldSource::Default, |d| ManifoldSource::Dir(d.into()))
    }

    /// Reads the set and checks that every organ fits the model contract's descriptor.
    pub fn load(self) -> Result<Option<ManifoldSet>> {
        let set = match self {
            ManifoldSource::Dir(d) => ManifoldSet::load_dir(d)?,
            ManifoldSource::Default => manifolds().context("loading the default manifold")?,
            ManifoldSource::Set(s) => s,
            ManifoldSource::None => return Ok(None),
        };
        set.check_features(DESCRIPTOR_LEN)?;
        Ok(Some(set))
    }
}

fn reference_encoder(options: EncoderOptions) -> Result<Encoder> {
    #[cfg(feature = "embed-defaults")]
    return Encoder::from_bytes_with(embedded::MODEL, options);
    #[cfg(not(feature = "embed-defaults"))]
    Encoder::from_path_with(model_path(), options)
}

fn live_encoder(options: EncoderOptions) -> Result<Encoder> {
    #[cfg(feature = "embed-defaults")]
    return Encoder::from_bytes_with(embedded::LIVE_MODEL, options);
    #[cfg(not(feature = "embed-defaults"))]
    Encoder::from_path_with(live_model_path(), options)
}

/// The shipped manifold set.
pub fn manifolds() -> Result<ManifoldSet> {
    #[cfg(feature = "embed-defaults")]
    return ManifoldSet::from_npz_bytes(embedded::ORGANS.iter().copied());
    #[cfg(not(feature = "embed-defaults"))]
    ManifoldSet::load_dir(manifold_dir())
}
