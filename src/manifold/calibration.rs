//! The calibrated quality index (0-100) beside raw NRQ: where a frame's NRQ falls among the
//! NRQs of clean frames of its organ that the manifold was not fitted on.
//!
//! Raw NRQ is a log-likelihood whose scale depends on the manifold (its PCA dimension, its
//! organ), so 370 says nothing without context. The index reads it against the organ's own
//! clean frames: 50 is a typical clean frame, 0 is at or below the worst of them, 100 at or
//! above the best. It ranks; it is not a probability, and it does not tell how far below the
//! clean frames a poor frame is (every such frame is 0; raw NRQ keeps that).

use crate::error::{Result, ensure_finite};

/// Fewest clean frames a scale is built from (fewer give a coarse, unstable index).
pub const MIN_FRAMES: usize = 5;

/// Least share of the frame's patch grid a live window must hold for the index: with fewer,
/// the worst region rests on one or two patches and reads higher than the whole-frame NRQs the
/// scale is made of (at start-up the first frames give 100). A set rule, not tuned on data.
pub const LIVE_MIN_COVERAGE: f64 = 0.5;

/// Share of an organ's clean images held out of the fit to build its scale, by default.
pub const HOLDOUT_SHARE: f64 = 0.2;

/// How many of `n` clean images (sorted by path) to hold out of the fit for the scale at
/// `share`: the last ones, so frames named by subject or clip mostly stay on one side of the
/// split (neighbouring frames of one clip would flatter the scale). 0 when that would leave
/// fewer than [`MIN_FRAMES`] for the scale or nothing for the fit.
pub fn holdout(n: usize, share: f64) -> usize {
    let k = (n as f64 * share.clamp(0.0, 1.0)).floor() as usize;
    if k < MIN_FRAMES || k >= n { 0 } else { k }
}

/// The sorted NRQs of an organ's held-out clean frames (`usq_quality_nrq` in the `.npz`).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityScale {
    nrq: Vec<f64>,
}

impl QualityScale {
    /// A scale from clean frames' NRQs, in any order.
    pub fn new(mut nrq: Vec<f64>) -> Result<QualityScale> {
        ensure_finite("clean-frame NRQs", &nrq)?;
        nrq.sort_by(f64::total_cmp);
        let s = QualityScale { nrq };
        s.validate()?;
        Ok(s)
    }

    /// A scale as stored: must already be sorted.
    pub(crate) fn from_sorted(nrq: Vec<f64>) -> Result<QualityScale> {
        let s = QualityScale { nrq };
        s.validate()?;
        Ok(s)
    }

    /// At least [`MIN_FRAMES`] finite values in ascending order.
    pub fn validate(&self) -> Result<()> {
        ensure_finite("usq_quality_nrq", &self.nrq)?;
        if self.nrq.len() < MIN_FRAMES {
            crate::bail!(Manifold, "usq_quality_nrq holds {} values, at least {MIN_FRAMES} needed", self.nrq.len());
        }
        if self.nrq.windows(2).any(|w| w[0] > w[1]) {
            crate::bail!(Manifold, "usq_quality_nrq is not sorted ascending");
        }
        Ok(())
    }

    /// The clean frames' NRQs, ascending.
    pub fn values(&self) -> &[f64] {
        &self.nrq
    }

    /// The index of a frame of NRQ `nrq`: 0 at or below the lowest clean NRQ, 100 at or above
    /// the highest, and between them linear through the i-th lowest at `100 i / (n - 1)`.
    /// NaN in, NaN out.
    pub fn index(&self, nrq: f64) -> f64 {
        let v = &self.nrq;
        let n = v.len();
        if nrq.is_nan() {
            return f64::NAN;
        }
        if nrq <= v[0] {
            return 0.0;
        }
        if nrq >= v[n - 1] {
            return 100.0;
        }
        // v[i] <= nrq < v[i + 1], so the step is never 0.
        let i = v.partition_point(|&x| x <= nrq) - 1;
        let t = (nrq - v[i]) / (v[i + 1] - v[i]);
        100.0 * (i as f64 + t) / (n - 1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_ranks_a_frame_among_the_clean_frames() {
        let s = QualityScale::new(vec![40.0, 10.0, 20.0, 30.0, 50.0]).unwrap();
        assert_eq!(s.values(), [10.0, 20.0, 30.0, 40.0, 50.0]);
        for (nrq, want) in
            [(-1e9, 0.0), (10.0, 0.0), (15.0, 12.5), (30.0, 50.0), (49.0, 97.5), (50.0, 100.0), (1e9, 100.0)]
        {
            assert!((s.index(nrq) - want).abs() < 1e-12, "{nrq}: {} vs {want}", s.index(nrq));
        }
        assert!(s.index(f64::NAN).is_nan());
    }

    #[test]
    fn the_holdout_is_a_share_with_enough_frames_on_both_sides() {
        assert_eq!(holdout(600, HOLDOUT_SHARE), 120);
        assert_eq!(holdout(24, HOLDOUT_SHARE), 0);
        assert_eq!(holdout(25, HOLDOUT_SHARE), 5);
        assert_eq!(holdout(10, 1.0), 0);
        assert_eq!(holdout(100, 0.0), 0);
    }

    #[test]
    fn ties_and_bad_scales() {
        let s = QualityScale::new(vec![1.0, 2.0, 2.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.index(2.0), 75.0);
        assert!(s.index(1.5) > 0.0 && s.index(1.5) < s.index(2.0));
        assert!(QualityScale::new(vec![1.0; 4]).is_err());
        assert!(QualityScale::new(vec![1.0, 2.0, f64::NAN, 3.0, 4.0]).is_err());
        assert!(QualityScale::from_sorted(vec![5.0, 4.0, 3.0, 2.0, 1.0]).is_err());
    }
}
