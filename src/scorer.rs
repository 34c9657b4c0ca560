//! The scorer: one encoder and one manifold set, checked against each other once, with the
//! offline metrics as methods. The CLI, the C library and the live engine all start from one.

use crate::defaults::{ManifoldSource, ModelSource};
use crate::encoder::{Encoder, EncoderOptions};
use crate::error::Result;
use crate::imaging::frame::GrayFrame;
use crate::manifold::ManifoldSet;
use crate::quality::{self, CompareReport, ScoreOptions, ScoreReport};
use crate::weighting::UlpipsWeights;

/// A model and its organ manifolds, ready to score frames.
///
/// Not `Sync`: the encoder keeps per-run state, so one scorer serves one thread at a time.
/// With [`Scorer::set_frame_threads`] it has more than one encoder (forks of one model) and
/// spreads each frame's work over them.
#[derive(Debug)]
pub struct Scorer {
    /// Never empty; the first is the scorer's own, the rest its frame threads' forks.
    encoders: Vec<Encoder>,
    manifolds: Option<ManifoldSet>,
    ulpips_weights: Option<UlpipsWeights>,
}

impl Scorer {
    /// Loads the model and the manifolds and checks that they fit each other.
    /// The manifolds are read first: they fail faster than a model loads.
    pub fn new(model: &ModelSource, manifolds: ManifoldSource, options: EncoderOptions) -> Result<Scorer> {
        let manifolds = manifolds.load()?;
        let encoder = model.load(options)?;
        Ok(Scorer { encoders: vec![encoder], manifolds, ulpips_weights: None })
    }

    /// A scorer on `threads` cores the way that pays for this model: `threads` single-threaded
    /// encoders over one loaded model ([`Scorer::set_frame_threads`]) rather than one encoder
    /// splitting each matrix product (tract's executor, measured slower for the int8 model on
    /// two cores: BENCHMARKS.md). What the live engine, `usq live` and the C engine start from.
    pub fn with_threads(
        model: &ModelSource,
        manifolds: ManifoldSource,
        batch: usize,
        threads: usize,
    ) -> Result<Scorer> {
        crate::encoder::check_threads(threads)?;
        let mut scorer = Scorer::new(model, manifolds, EncoderOptions::batch(batch))?;
        scorer.set_frame_threads(threads)?;
        Ok(scorer)
    }

    /// A scorer from an encoder already built (e.g. [`ModelSource::load_tract_ops_only`]).
    pub fn with_encoder(encoder: Encoder, manifolds: ManifoldSource) -> Result<Scorer> {
        Ok(Scorer { encoders: vec![encoder], manifolds: manifolds.load()?, ulpips_weights: None })
    }

    /// A scorer from an encoder and a manifold set already loaded.
    pub fn from_parts(encoder: Encoder, manifolds: ManifoldSet) -> Result<Scorer> {
        Scorer::with_encoder(encoder, ManifoldSource::Set(manifolds))
    }

    /// Swaps the manifold set (another organ set for the same model), checked as at start.
    pub fn set_manifolds(&mut self, manifolds: ManifoldSource) -> Result<()> {
        self.manifolds = manifolds.load()?;
        Ok(())
    }

    /// A scorer for comparisons only (no manifold: [`Scorer::score`] fails).
    pub fn for_comparison(encoder: Encoder) -> Scorer {
        Scorer { encoders: vec![encoder], manifolds: None, ulpips_weights: None }
    }

    /// A second scorer over the same loaded model (see [`Encoder::fork`]) and a copy of the
    /// manifolds and weights, for another thread. It has one frame thread.
    pub fn fork(&self) -> Result<Scorer> {
        Ok(Scorer {
            encoders: vec![self.encoder().fork()?],
            manifolds: self.manifolds.clone(),
            ulpips_weights: self.ulpips_weights.clone(),
        })
    }

    /// `n` scorers over one loaded model: this one's forks, for [`crate::dataset::map_ordered`].
    pub fn forks(&self, n: usize) -> Result<Vec<Scorer>> {
        (0..n).map(|_| self.fork()).collect()
    }

    /// Scorers for a job of `items` frames (or pairs) on `threads` threads: one scorer per item
    /// up to `threads`, since whole items split best; threads left over when there are fewer
    /// items go to the scorers as frame threads ([`Scorer::set_frame_threads`]).
    pub fn for_job(&self, threads: usize, items: usize) -> Result<Vec<Scorer>> {
        crate::encoder::check_threads(threads)?;
        let n = threads.min(items).max(1);
        let mut scorers = self.forks(n)?;
        for (k, s) in scorers.iter_mut().enumerate() {
            s.set_frame_threads(threads / n + usize::from(k < threads % n))?;
        }
        Ok(scorers)
    }

    /// Spreads each frame's encoder runs over `threads` encoders (this one and forks of it),
    /// each on its own thread: a frame's patches in [`Scorer::score`], the two frames in
    /// [`Scorer::compare`]. The scores are the same as on one thread. For this model, whole
    /// patches on separate cores beat splitting each matrix product (tract's executor,
    /// [`EncoderOptions::threads`]); forks share the encoder's options, so build it with 1.
    pub fn set_frame_threads(&mut self, threads: usize) -> Result<()> {
        crate::encoder::check_threads(threads)?;
        while self.encoders.len() < threads {
            let fork = self.encoder().fork()?;
            self.encoders.push(fork);
        }
        self.encoders.truncate(threads);
        Ok(())
    }

    /// Encoders each frame is spread over (1 unless [`Scorer::set_frame_threads`]).
    pub fn frame_threads(&self) -> usize {
        self.encoders.len()
    }

    /// TinyUSFM-NRQ of one frame (higher = better).
    pub fn score(&mut self, frame: &GrayFrame, options: &ScoreOptions) -> Result<ScoreReport> {
        let Some(manifolds) = &self.manifolds else { return Err(no_manifolds()) };
        quality::score_on(&mut self.encoders, manifolds, frame, options)
    }

    /// Adds the task-anchored weighted uLPIPS to every comparison; the weights must have been
    /// fitted for this model's encoder weights.
    pub fn set_ulpips_weights(&mut self, weights: UlpipsWeights) -> Result<()> {
        weights.check_model(self.encoder().info())?;
        self.ulpips_weights = Some(weights);
        Ok(())
    }

    /// TinyUSFM-uLPIPS of `image` against `reference` (lower = closer), and the weighted score
    /// when the scorer has weights ([`Scorer::set_ulpips_weights`]).
    pub fn compare(&mut self, reference: &GrayFrame, image: &GrayFrame) -> Result<CompareReport> {
        let mut report = quality::compare_on(&mut self.encoders, reference, image)?;
        report.ulpips_weighted = self.ulpips_weights.as_ref().map(|w| w.apply(&report.layers));
        Ok(report)
    }

    /// Fails unless `options` can score with this scorer (known organ, at least one patch),
    /// so a caller with many frames learns of a bad option before the first one.
    pub fn check_options(&self, options: &ScoreOptions) -> Result<()> {
        options.check(self.manifolds_or_fail()?)
    }

    /// The frame tinted by its patch scores, the worst region outlined ([`crate::imaging::heatmap`]).
    pub fn heatmap(frame: &GrayFrame, report: &ScoreReport) -> image::RgbImage {
        crate::imaging::heatmap::render(frame, report)
    }

    /// The manifold set, if the scorer has one.
    pub fn manifolds(&self) -> Option<&ManifoldSet> {
        self.manifolds.as_ref()
    }

    /// The encoder (for timing and inspection).
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoders[0]
    }

    fn encoder(&self) -> &Encoder {
        &self.encoders[0]
    }

    /// The encoder and the manifold set, e.g. to start the live engine with (frame threads'
    /// forks are dropped).
    pub fn into_parts(self) -> (Encoder, Option<ManifoldSet>) {
        let encoder = self.encoders.into_iter().next().expect("a scorer has an encoder");
        (encoder, self.manifolds)
    }

    /// Every encoder (the scorer's own first, then its frame threads' forks) and the manifold
    /// set: the live engine runs them all.
    pub fn into_encoders(self) -> (Vec<Encoder>, Option<ManifoldSet>) {
        (self.encoders, self.manifolds)
    }

    fn manifolds_or_fail(&self) -> Result<&ManifoldSet> {
        self.manifolds.as_ref().ok_or_else(no_manifolds)
    }
}

fn no_manifolds() -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::InvalidArgument,
        "this scorer has no manifold set: it compares but cannot score",
    )
}
