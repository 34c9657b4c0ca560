//! The two metrics end to end on gray frames: preprocessing, the encoder, the maths.

use crate::checks::{self, Faults, FrameChecks};
use crate::contract::{DESCRIPTOR_LEN, INPUT_SIDE, LAYER_BLOCKS};
use crate::encoder::{Encoder, ImageFeatures};
use crate::error::{Context, Result};
use crate::imaging::frame::GrayFrame;
use crate::imaging::preprocess::{self, PatchOrigin};
use crate::manifold::ManifoldSet;
use crate::metrics::{nrq, ulpips};

/// One layer's share of a uLPIPS score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LayerReport {
    /// The 0-based encoder block the layer follows (one of [`LAYER_BLOCKS`]).
    pub block: usize,
    /// The layer's structure term: windowed token-relation difference.
    pub structure: f64,
    /// The layer's Gram term: channel Gram matrix difference.
    pub gram: f64,
}

/// TinyUSFM-uLPIPS of an image against its reference (lower = closer).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CompareReport {
    /// The score: the layers' structure and Gram terms summed, over the layer count; 0 = identical.
    pub ulpips: f64,
    /// Each layer's terms, in [`LAYER_BLOCKS`] order.
    pub layers: Vec<LayerReport>,
    /// The task-anchored weighted score ([`crate::weighting`]), beside the reference value,
    /// when the scorer has weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ulpips_weighted: Option<f64>,
}

/// Full-reference comparison of `image` against `reference`. An encoder of batch 1 wastes
/// nothing here.
pub fn compare(encoder: &mut Encoder, reference: &GrayFrame, image: &GrayFrame) -> Result<CompareReport> {
    compare_on(std::slice::from_mut(encoder), reference, image)
}

/// As [`compare`], the two frames encoded at once and the layers' terms split over two threads
/// when there are two encoders (forks of one model): the same features, as each frame still
/// runs alone in batch slot 0, and the same terms.
pub fn compare_on(encoders: &mut [Encoder], reference: &GrayFrame, image: &GrayFrame) -> Result<CompareReport> {
    let threads = encoders.len();
    let inputs = [preprocess::ulpips_input(reference), preprocess::ulpips_input(image)];
    // Each frame goes through batch slot 0 on its own: kernels may round differently across
    // slots, and identical frames must give exactly 0.
    let feats: Vec<ImageFeatures> = match encoders {
        [] => crate::bail!(InvalidArgument, "no encoder to compare on"),
        [one] => {
            let mut feats = Vec::with_capacity(2);
            for input in &inputs {
                feats.extend(one.run(&[input]).context("encoding the frames")?);
            }
            feats
        }
        [a, b, ..] => {
            let (fa, fb) = on_two_threads(|| a.run(&[&inputs[0]]), || b.run(&[&inputs[1]]))?;
            let (fa, fb) = (fa.context("encoding the reference")?, fb.context("encoding the image")?);
            fa.into_iter().chain(fb).collect()
        }
    };
    let layer = |k: usize| {
        let r = ulpips::TokenGrid::from_encoder_output(&feats[0].layers[k]);
        let i = ulpips::TokenGrid::from_encoder_output(&feats[1].layers[k]);
        let t = ulpips::layer_terms(&r, &i);
        LayerReport { block: LAYER_BLOCKS[k], structure: t.structure, gram: t.gram }
    };
    let (n, half) = (LAYER_BLOCKS.len(), LAYER_BLOCKS.len() / 2);
    let layers: Vec<LayerReport> = if threads > 1 {
        // The layers' terms (token relations and Gram matrices: as long as an encoder run) are
        // independent of each other: half of them on a second thread, each computed as on one.
        let (a, b) =
            on_two_threads(|| (0..half).map(layer).collect::<Vec<_>>(), || (half..n).map(layer).collect::<Vec<_>>())?;
        a.into_iter().chain(b).collect()
    } else {
        (0..n).map(layer).collect()
    };
    let terms: Vec<ulpips::LayerTerms> =
        layers.iter().map(|l| ulpips::LayerTerms { structure: l.structure, gram: l.gram }).collect();
    let score = ulpips::combine(&terms);
    crate::error::ensure_finite("uLPIPS", &[score])?;
    Ok(CompareReport { ulpips: score, layers, ulpips_weighted: None })
}

/// Options of a no-reference score.
#[derive(Debug, Clone, Default)]
pub struct ScoreOptions {
    /// Score against this organ only; `None` combines all organs by log-mean-exp.
    pub organ: Option<String>,
    /// Score at most this many patches, a spatially spread subset of the grid.
    pub max_patches: Option<usize>,
}

/// One scored patch, at its top-left corner in the padded frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PatchScore {
    /// Left edge, in padded-frame pixels.
    pub x: usize,
    /// Top edge, in padded-frame pixels.
    pub y: usize,
    /// The patch's log-likelihood under the manifold (higher = more like clean anatomy).
    pub loglik: f64,
}

/// TinyUSFM-NRQ of a frame (higher = better).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreReport {
    /// The score: mean log-likelihood of the worst 15% of patches (at least one).
    pub nrq: f64,
    /// The organ scored against; `None` when all organs were combined by log-mean-exp.
    pub organ: Option<String>,
    /// Every patch scored, in grid order (row-major).
    pub patches: Vec<PatchScore>,
    /// Indices into `patches` of the worst region, worst first.
    pub worst: Vec<usize>,
    /// Where the original frame sits in the padded one (non-zero only for frames under 224).
    pub pad_left: usize,
    /// Rows of padding above the original frame (see `pad_left`).
    pub pad_top: usize,
    /// The acquisition checks' measured values ([`crate::checks`]), beside NRQ.
    pub checks: FrameChecks,
    /// The faults the checks raise; empty when none.
    pub faults: Faults,
    /// The organ whose clean statistics judged the checks: the one scored against, or with all
    /// organs the one the frame matches best; `None` when no organ has clean statistics.
    pub checks_organ: Option<String>,
    /// The calibrated quality index beside NRQ ([`crate::manifold::calibration`]), when the
    /// organ it is read against has a scale.
    pub quality: Option<QualityIndex>,
}

/// The calibrated quality index (0-100) of a frame and the organ whose clean frames it is
/// read against: the organ scored against, or with all organs the one the frame fits best.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QualityIndex {
    /// 0 at or below the organ's worst held-out clean frame, 50 a typical one, 100 at or above the best.
    pub index: f64,
    /// The organ.
    pub organ: String,
}

impl ScoreOptions {
    /// Fails unless these options can score against `manifolds`: a known organ, a patch
    /// budget of at least one.
    pub fn check(&self, manifolds: &ManifoldSet) -> Result<()> {
        if let Some(o) = &self.organ {
            manifolds.organ(o)?;
        }
        if self.max_patches == Some(0) {
            return Err(no_patches());
        }
        Ok(())
    }
}

fn no_patches() -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::InvalidArgument,
        "max_patches must be at least 1 (the patches scored per frame)",
    )
}

/// The patches NRQ reads in a frame (after padding) and the padded frame.
pub fn nrq_patches(frame: &GrayFrame, max_patches: Option<usize>) -> Result<(GrayFrame, Vec<PatchOrigin>)> {
    let padded = preprocess::pad_to_input(frame);
    let grid = preprocess::patch_grid(padded.width, padded.height);
    let patches = match max_patches {
        Some(0) => return Err(no_patches()),
        Some(k) => preprocess::spread_subset(&grid, padded.width, padded.height, k),
        None => grid,
    };
    Ok((padded, patches))
}

/// Patch descriptors (768 values each, unit length) of the given patches of a padded frame.
pub fn patch_descriptors(encoder: &mut Encoder, padded: &GrayFrame, patches: &[PatchOrigin]) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::with_capacity(patches.len());
    let mut bufs = vec![vec![0f32; INPUT_SIDE * INPUT_SIDE]; encoder.batch()];
    for chunk in patches.chunks(encoder.batch()) {
        for (buf, &p) in bufs.iter_mut().zip(chunk) {
            preprocess::crop_patch(padded, p, buf);
        }
        let refs: Vec<&[f32]> = bufs[..chunk.len()].iter().map(|b| b.as_slice()).collect();
        for f in encoder.run(&refs)? {
            let z = nrq::patch_descriptor(&f.layer_slices());
            debug_assert_eq!(z.len(), DESCRIPTOR_LEN);
            out.push(z);
        }
    }
    Ok(out)
}

/// As [`patch_descriptors`] on several encoders at once (forks of one model, so one batch size):
/// each takes a contiguous run of whole batches, so every patch meets the same batch-mates as
/// on one encoder and the descriptors are the same.
pub fn patch_descriptors_on(
    encoders: &mut [Encoder],
    padded: &GrayFrame,
    patches: &[PatchOrigin],
) -> Result<Vec<Vec<f64>>> {
    let Some(first) = encoders.first() else { crate::bail!(InvalidArgument, "no encoder to score on") };
    let batch = first.batch();
    let runs = patches.len().div_ceil(batch);
    let workers = encoders.len().min(runs);
    if workers <= 1 {
        return patch_descriptors(&mut encoders[0], padded, patches);
    }
    let per_worker = runs.div_ceil(workers) * batch;
    std::thread::scope(|s| {
        let handles: Vec<_> = encoders
            .iter_mut()
            .zip(patches.chunks(per_worker))
            .map(|(e, part)| s.spawn(move || patch_descriptors(e, padded, part)))
            .collect();
        let mut out = Vec::with_capacity(patches.len());
        for h in handles {
            out.extend(h.join().map_err(|_| worker_panicked())??);
        }
        Ok(out)
    })
}

/// Runs `a` here and `b` on a second thread, and returns both results.
fn on_two_threads<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> Result<(A, B)> {
    std::thread::scope(|s| {
        let hb = s.spawn(b);
        let ra = a();
        Ok((ra, hb.join().map_err(|_| worker_panicked())?))
    })
}

fn worker_panicked() -> crate::Error {
    crate::Error::new(crate::ErrorKind::Inference, "an encoder thread panicked")
}

/// No-reference score of one frame against a manifold set.
pub fn score(
    encoder: &mut Encoder,
    manifolds: &ManifoldSet,
    frame: &GrayFrame,
    opts: &ScoreOptions,
) -> Result<ScoreReport> {
    score_on(std::slice::from_mut(encoder), manifolds, frame, opts)
}

/// As [`score`], the frame's patches split across several encoders (forks of one model): the
/// same report, sooner on as many cores.
pub fn score_on(
    encoders: &mut [Encoder],
    manifolds: &ManifoldSet,
    frame: &GrayFrame,
    opts: &ScoreOptions,
) -> Result<ScoreReport> {
    // Cheap, and it keeps a manifold of another model from scoring garbage.
    manifolds.check_features(DESCRIPTOR_LEN)?;
    let organ = opts.organ.as_deref().map(|o| manifolds.organ(o)).transpose()?;
    let (padded, patches) = nrq_patches(frame, opts.max_patches)?;
    let descriptors = patch_descriptors_on(encoders, &padded, &patches).context("encoding the patches")?;
    let mut scratch = Vec::new();
    let organs = &manifolds.organs;
    // Per organ, its own log-likelihood of every patch: the organ-mismatch check reads them.
    let (mut each, mut per_organ) = (vec![f64::NAN; organs.len()], vec![Vec::new(); organs.len()]);
    let logliks: Vec<f64> = descriptors
        .iter()
        .map(|z| {
            let v = manifolds.loglik_each(organ, z, &mut scratch, &mut each);
            for (lls, &e) in per_organ.iter_mut().zip(&each) {
                if !e.is_nan() {
                    lls.push(e);
                }
            }
            v
        })
        .collect();
    crate::error::ensure_finite("patch log-likelihoods", &logliks)?;
    let (nrq, worst) = nrq::worst_region(&logliks).expect("a frame has at least one patch");
    // Each organ's own NRQ, for the calibrated index (before the medians reorder the lists).
    let organ_nrq: Vec<f64> =
        per_organ.iter_mut().map(|lls| nrq::worst_region_mean_in_place(lls).unwrap_or(f64::NAN)).collect();
    let medians: Vec<f64> = per_organ.iter_mut().map(|lls| checks::median_in_place(lls)).collect();
    let judge = manifolds.organ_fit(organ, &medians);
    let quality = manifolds.quality_index(organ.or(judge.map(|(o, _)| o)), &organ_nrq);
    let measures = checks::measure(&frame.pixels, frame.width, frame.height);
    let (checks, faults) =
        FrameChecks::judge(measures, judge.and_then(|(o, _)| o.clean.as_ref()), judge.map(|(_, g)| g), None);
    Ok(ScoreReport {
        nrq,
        organ: organ.map(|o| o.name.clone()),
        patches: patches.iter().zip(&logliks).map(|(p, &loglik)| PatchScore { x: p.x, y: p.y, loglik }).collect(),
        worst,
        pad_left: (padded.width - frame.width) / 2,
        pad_top: (padded.height - frame.height) / 2,
        checks,
        faults,
        checks_organ: judge.map(|(o, _)| o.name.clone()),
        quality: quality.map(|(o, index)| QualityIndex { index, organ: o.name.clone() }),
    })
}
