//! Which patches a live frame scores, and how scores of recent frames add up to one NRQ.
//!
//! Under a latency budget a frame may afford only a few of its grid patches. `PatchSchedule`
//! rotates through the grid in spread order, so successive frames cover the whole field of
//! view; `WindowAggregate` keeps each patch's latest log-likelihood and scores the worst
//! region over the patches seen within the last `window` frames. It also keeps each organ's
//! own log-likelihood of the patch, whose medians the organ-mismatch check reads.
//!
//! Memory: both allocate when built for a frame size, and nothing per frame.

use crate::imaging::preprocess::{PatchOrigin, spread_order};
use crate::metrics::nrq::worst_region_mean_in_place;

pub struct PatchSchedule {
    order: Vec<usize>,
    cursor: usize,
}

impl PatchSchedule {
    pub fn new(grid: &[PatchOrigin], width: usize, height: usize) -> PatchSchedule {
        PatchSchedule { order: spread_order(grid, width, height), cursor: 0 }
    }

    /// The next `n` grid indices (at most the whole grid), continuing where the last frame
    /// stopped. `out` must have capacity for the grid.
    pub fn next_patches(&mut self, n: usize, out: &mut Vec<usize>) {
        out.clear();
        for _ in 0..n.min(self.order.len()) {
            out.push(self.order[self.cursor]);
            self.cursor = (self.cursor + 1) % self.order.len();
        }
    }
}

pub struct WindowAggregate {
    loglik: Vec<f64>,
    /// Per patch, each organ's own log-likelihood (`organs` values per patch; NaN = not scored).
    organ_loglik: Vec<f64>,
    organs: usize,
    /// Frame sequence number of each patch's latest score; 0 = never scored.
    scored_at: Vec<u64>,
    window: u64,
    scratch: Vec<f64>,
}

impl WindowAggregate {
    pub fn new(patches: usize, organs: usize, window: u64) -> WindowAggregate {
        WindowAggregate {
            loglik: vec![0.0; patches],
            organ_loglik: vec![f64::NAN; patches * organs],
            organs,
            scored_at: vec![0; patches],
            window: window.max(1),
            scratch: Vec::with_capacity(patches),
        }
    }

    /// Whether a patch last scored at `at` counts in the window ending at `frame_seq`.
    fn in_window(&self, at: u64, frame_seq: u64) -> bool {
        at != 0 && frame_seq - at < self.window
    }

    /// Records a patch's score and each organ's own log-likelihood of it (`each`, one per organ).
    pub fn record(&mut self, patch: usize, loglik: f64, each: &[f64], frame_seq: u64) {
        self.loglik[patch] = loglik;
        self.organ_loglik[patch * self.organs..][..self.organs].copy_from_slice(each);
        self.scored_at[patch] = frame_seq;
    }

    /// Per organ, the median of its log-likelihoods over the patches within the window ending
    /// at `frame_seq` (NaN for an organ with none), into `out` (one slot per organ).
    pub fn organ_medians(&mut self, frame_seq: u64, out: &mut [f64]) {
        if self.organs == 0 {
            return; // a set without organs has no medians (and chunks of 0 would panic)
        }
        for (organ, slot) in out.iter_mut().enumerate().take(self.organs) {
            self.scratch.clear();
            for (lls, &at) in self.organ_loglik.chunks_exact(self.organs).zip(&self.scored_at) {
                if self.in_window(at, frame_seq) && !lls[organ].is_nan() {
                    self.scratch.push(lls[organ]);
                }
            }
            *slot = crate::checks::median_in_place(&mut self.scratch);
        }
    }

    /// One organ's own NRQ over the patches within the window ending at `frame_seq` (for the
    /// calibrated index); `None` when it scored none.
    pub fn organ_score(&mut self, organ: usize, frame_seq: u64) -> Option<f64> {
        if organ >= self.organs {
            return None;
        }
        self.scratch.clear();
        for (lls, &at) in self.organ_loglik.chunks_exact(self.organs).zip(&self.scored_at) {
            if self.in_window(at, frame_seq) && !lls[organ].is_nan() {
                self.scratch.push(lls[organ]);
            }
        }
        worst_region_mean_in_place(&mut self.scratch)
    }

    /// NRQ over the patches scored within the window ending at `frame_seq` (sequence numbers
    /// start at 1), and how many patches that is.
    pub fn score(&mut self, frame_seq: u64) -> Option<(f64, usize)> {
        self.scratch.clear();
        for (&ll, &at) in self.loglik.iter().zip(&self.scored_at) {
            if self.in_window(at, frame_seq) {
                self.scratch.push(ll);
            }
        }
        let n = self.scratch.len();
        worst_region_mean_in_place(&mut self.scratch).map(|m| (m, n))
    }

    /// Each patch's latest score when it counts in the window ending at `frame_seq`, else
    /// `None`, into `out` (one slot per patch). Allocates nothing.
    pub fn window_scores(&self, frame_seq: u64, out: &mut [Option<f64>]) {
        for ((slot, &ll), &at) in out.iter_mut().zip(&self.loglik).zip(&self.scored_at) {
            *slot = self.in_window(at, frame_seq).then_some(ll);
        }
    }

    pub fn patches(&self) -> usize {
        self.loglik.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::preprocess::patch_grid;

    #[test]
    fn rotation_covers_the_grid() {
        let grid = patch_grid(800, 540);
        let mut s = PatchSchedule::new(&grid, 800, 540);
        let mut out = Vec::with_capacity(grid.len());
        let mut seen = vec![0; grid.len()];
        for _ in 0..7 {
            s.next_patches(4, &mut out);
            out.iter().for_each(|&i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&c| c == 1), "28 patches in 7 frames of 4: {seen:?}");
        s.next_patches(100, &mut out);
        assert_eq!(out.len(), 28);
    }

    #[test]
    fn window_forgets_old_patches() {
        let mut w = WindowAggregate::new(4, 2, 2);
        assert_eq!(w.score(1), None);
        w.record(0, -10.0, &[-10.0, f64::NAN], 1);
        w.record(1, 5.0, &[5.0, f64::NAN], 1);
        assert_eq!(w.score(1), Some((-10.0, 2)));
        w.record(2, 1.0, &[1.0, f64::NAN], 2);
        assert_eq!(w.score(2), Some((-10.0, 3)));
        let mut medians = [0.0; 2];
        w.organ_medians(2, &mut medians);
        assert_eq!(medians[0], 1.0);
        assert!(medians[1].is_nan(), "an organ never scored has no median");
        assert_eq!(w.organ_score(0, 2), Some(-10.0));
        assert_eq!(w.organ_score(1, 2), None);
        assert_eq!(w.organ_score(2, 2), None, "no such organ");
        // At frame 3, patches from frame 1 are out of a 2-frame window.
        assert_eq!(w.score(3), Some((1.0, 1)));
        w.organ_medians(3, &mut medians);
        assert_eq!(medians[0], 1.0);
    }
}
