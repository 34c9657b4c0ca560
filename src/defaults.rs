//! The shipped defaults (the models and the NRQ manifold set in `models/`) and the policy of
//! which model and manifold a scorer uses: [`ModelSource`], [`ManifoldSource`].
//!
//! Two models: the fp32 reference (offline scoring and comparison: `usq score`, `usq compare`,
//! `usq_scorer_score`, `usq_scorer_compare`) and its int8 quantisation. Live scoring (`usq
//! live`, the C live engine) takes whichever of the two is faster on this CPU ([`LiveModel`]):
//! the int8 one where the CPU has integer dot-product instructions, the fp32 one elsewhere.
//! The manifold is the same for both (fitted with the fp32 model; models/REPORT.md measures
//! the int8 scores against the fp32 ones).
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
/// The task-anchored uLPIPS weights for the shipped models, inside `models/`.
pub const ULPIPS_WEIGHTS_FILE: &str = "ulpips_weights.json";

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

/// The shipped uLPIPS weights' path.
pub fn ulpips_weights_path() -> PathBuf {
    models_dir().join(ULPIPS_WEIGHTS_FILE)
}

/// The shipped uLPIPS weights ([`crate::weighting::UlpipsWeights`]), fitted for the shipped
/// models' encoder weights.
pub fn ulpips_weights() -> Result<crate::weighting::UlpipsWeights> {
    #[cfg(feature = "embed-defaults")]
    return crate::weighting::UlpipsWeights::from_json(embedded::ULPIPS_WEIGHTS).context("the embedded uLPIPS weights");
    #[cfg(not(feature = "embed-defaults"))]
    crate::weighting::UlpipsWeights::from_path(ulpips_weights_path())
}

#[cfg(feature = "embed-defaults")]
mod embedded {
    pub const ULPIPS_WEIGHTS: &[u8] = include_bytes!("../models/ulpips_weights.json");
    pub const MODEL: &[u8] = include_bytes!("../models/tinyusfm.onnx");
    pub const LIVE_MODEL: &[u8] = include_bytes!("../models/tinyusfm-int8.onnx");
    pub const ORGANS: &[(&str, &[u8])] = &[
        ("FetalHead", include_bytes!("../models/nrq/FetalHead.npz")),
        ("Lung", include_bytes!("../models/nrq/Lung.npz")),
    ];
}

/// Where a scorer's model comes from. The library decides what each default means; the
/// faces (CLI, C library, bindings) only translate "a path, or nothing" into one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An ONNX file that follows the model contract.
    Path(PathBuf),
    /// The shipped fp32 reference model: offline scoring and comparison.
    Reference,
    /// The shipped model for live scoring on this CPU: see [`LiveModel::for_this_cpu`].
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
            ModelSource::Live => LiveModel::for_this_cpu().embedded().into(),
            #[cfg(not(feature = "embed-defaults"))]
            ModelSource::Reference => read(&model_path())?.into(),
            #[cfg(not(feature = "embed-defaults"))]
            ModelSource::Live => read(&LiveModel::for_this_cpu().path())?.into(),
        };
        Encoder::from_bytes_tract_ops_only(&bytes, options)
    }

    /// The file this source reads, if any (for reports such as `usq bench`).
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            ModelSource::Path(p) => Some(p.clone()),
            ModelSource::Reference if !cfg!(feature = "embed-defaults") => Some(model_path()),
            ModelSource::Live if !cfg!(feature = "embed-defaults") => Some(LiveModel::for_this_cpu().path()),
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
    let model = LiveModel::for_this_cpu();
    log::info!("live model: {} ({})", model.name(), model.reason());
    #[cfg(feature = "embed-defaults")]
    return Encoder::from_bytes_with(model.embedded(), options);
    #[cfg(not(feature = "embed-defaults"))]
    Encoder::from_path_with(model.path(), options)
}

/// Which shipped model live scoring runs ([`ModelSource::Live`]).
///
/// The int8 model is faster than the fp32 one only where the CPU has an integer dot product:
/// on x86-64 that is AVX-512 VNNI or AVX-VNNI (`vpdpbusd`), where the project's int8 linear
/// op runs (src/ops/linear.rs, a kernel for each) and tract's own too. Without them tract's
/// AVX2 int8 kernel widens every byte and was measured about 40x slower than the fp32
/// model on an AMD EPYC with AVX2 only (BENCHMARKS.md), so there the fp32 model is the live
/// one. On ARM the int8 model stays the live one (the project's SDOT or SMULL kernels on
/// aarch64, its SMULL kernel on armv7 with NEON, tract's kernels on armv7 without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveModel {
    /// `tinyusfm-int8.onnx`.
    Int8,
    /// `tinyusfm.onnx`, the reference.
    Fp32,
}

impl LiveModel {
    /// The faster model on the CPU this runs on.
    pub fn for_this_cpu() -> LiveModel {
        if int8_dot_product() { LiveModel::Int8 } else { LiveModel::Fp32 }
    }

    /// Short name for reports: `int8` or `fp32`.
    pub fn name(self) -> &'static str {
        match self {
            LiveModel::Int8 => "int8",
            LiveModel::Fp32 => "fp32",
        }
    }

    /// Why this CPU gets it, for logs and `usq live`'s header.
    pub fn reason(self) -> &'static str {
        match (self, cfg!(target_arch = "x86_64")) {
            (LiveModel::Int8, true) => "the CPU has VNNI integer dot products",
            (LiveModel::Fp32, true) => "the CPU has no VNNI: tract's int8 kernels are slower than fp32 here",
            _ if cfg!(target_arch = "aarch64") => "NEON integer products (the project's SDOT or SMULL kernels)",
            // armv7: the project's kernel only where the auxiliary vector says NEON.
            _ if crate::ops::linear::LinearI8::available() => "NEON integer products (the project's SMULL kernel)",
            _ => "no NEON: the int8 model on tract's own kernels",
        }
    }

    /// The shipped file's path.
    pub fn path(self) -> PathBuf {
        match self {
            LiveModel::Int8 => live_model_path(),
            LiveModel::Fp32 => model_path(),
        }
    }

    #[cfg(feature = "embed-defaults")]
    fn embedded(self) -> &'static [u8] {
        match self {
            LiveModel::Int8 => embedded::LIVE_MODEL,
            LiveModel::Fp32 => embedded::MODEL,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn int8_dot_product() -> bool {
    std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn int8_dot_product() -> bool {
    true
}

/// The shipped manifold set.
pub fn manifolds() -> Result<ManifoldSet> {
    #[cfg(feature = "embed-defaults")]
    return ManifoldSet::from_npz_bytes(embedded::ORGANS.iter().copied());
    #[cfg(not(feature = "embed-defaults"))]
    ManifoldSet::load_dir(manifold_dir())
}
