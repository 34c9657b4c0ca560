//! `LatencyBudget`: how many NRQ patches a frame can afford, from the engine's own measured
//! cost (exponential moving averages of the encoder run, of its deviation, and of the
//! per-frame overhead).
//!
//! Each run is planned at its mean plus [`JITTER_DEVIATIONS`] mean deviations, as TCP plans a
//! retransmission timeout from a smoothed round trip and its variation (RFC 6298): on a shared
//! or busy CPU a run now and then takes half as long again as usual, and a plan at the mean
//! alone let those frames miss the deadline once the runs got short enough for several to a
//! frame (issue 17: 1 of 5 runs of the C example at 30 fps without a miss, 2 runs a frame).

/// Share of the budget planned for; the rest absorbs what the deviation does not.
const HEADROOM: f64 = 0.85;
/// Weight of the newest measurement in the moving averages.
const EMA: f64 = 0.2;
/// Mean deviations added to each planned run.
const JITTER_DEVIATIONS: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct LatencyBudget {
    budget_ms: f64,
    batch: usize,
    run_ms: Option<f64>,
    /// Mean absolute deviation of the runs from `run_ms`.
    dev_ms: f64,
    tail_ms: f64,
}

impl LatencyBudget {
    pub fn new(budget_ms: f64, batch: usize) -> LatencyBudget {
        LatencyBudget { budget_ms, batch: batch.max(1), run_ms: None, dev_ms: 0.0, tail_ms: 0.0 }
    }

    pub fn budget_ms(&self) -> f64 {
        self.budget_ms
    }

    /// Cost of one encoder run (of up to `batch` patches), as measured so far.
    pub fn run_ms(&self) -> Option<f64> {
        self.run_ms
    }

    pub fn observe_run(&mut self, ms: f64) {
        self.run_ms = Some(match self.run_ms {
            Some(m) => {
                self.dev_ms += EMA * ((ms - m).abs() - self.dev_ms);
                m + EMA * (ms - m)
            }
            // A quarter of the first run until the deviation is measured (RFC 6298 starts at
            // half; the engine's first run is a warm one).
            None => {
                self.dev_ms = ms / 4.0;
                ms
            }
        });
    }

    /// Mean absolute deviation of a run from [`Self::run_ms`], as measured so far.
    #[cfg(test)]
    pub fn deviation_ms(&self) -> f64 {
        self.dev_ms
    }

    /// Time spent after the last run (aggregation, publishing).
    pub fn observe_tail(&mut self, ms: f64) {
        self.tail_ms += EMA * (ms - self.tail_ms);
    }

    /// Patches to score for a frame that has already waited `elapsed_ms` since capture: as
    /// many whole runs as fit, each planned at its mean plus its deviation, at least one
    /// patch, at most `available`.
    pub fn patches_for(&self, elapsed_ms: f64, available: usize) -> usize {
        let Some(mean) = self.run_ms else { return self.batch.min(available).max(1) };
        let run = mean + JITTER_DEVIATIONS * self.dev_ms;
        let left = self.budget_ms * HEADROOM - elapsed_ms - self.tail_ms;
        let runs = if left > 0.0 { (left / run).floor() as usize } else { 0 };
        (runs * self.batch).clamp(1, available.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_whole_runs_in_the_budget() {
        let mut b = LatencyBudget::new(100.0, 2);
        assert_eq!(b.patches_for(0.0, 28), 2, "before any measurement: one run");
        b.observe_run(20.0);
        // The first run's deviation is taken as a quarter of it: runs planned at 20 + 2·5 ms,
        // 85 ms usable: 2 runs of 2 patches.
        assert_eq!(b.patches_for(0.0, 28), 4);
        // Steady runs: the deviation decays, and 4 runs of 20 ms fit.
        for _ in 0..40 {
            b.observe_run(20.0);
        }
        assert!(b.deviation_ms() < 0.01);
        assert_eq!(b.patches_for(0.0, 28), 8);
        // 30 ms already spent waiting: 55 ms, 2 runs.
        assert_eq!(b.patches_for(30.0, 28), 4);
        // Over budget already: still one patch, so every frame gets a score.
        assert_eq!(b.patches_for(500.0, 28), 1);
        assert_eq!(b.patches_for(0.0, 3), 3, "never more than the grid");
        b.observe_run(40.0);
        assert!((b.run_ms().unwrap() - 24.0).abs() < 1e-9);
    }

    /// Runs that jump between 14 and 21 ms (a busy host) are planned near the slow end: a
    /// frame then plans fewer runs than the mean alone affords.
    #[test]
    fn jittery_runs_plan_fewer_patches() {
        let mut steady = LatencyBudget::new(33.0, 1);
        let mut jittery = LatencyBudget::new(33.0, 1);
        for i in 0..50 {
            steady.observe_run(15.75);
            jittery.observe_run(if i % 4 == 3 { 21.0 } else { 14.0 });
        }
        assert!((jittery.run_ms().unwrap() - 15.75).abs() < 1.5, "{:?}", jittery.run_ms());
        assert!(jittery.deviation_ms() > 2.0, "{}", jittery.deviation_ms());
        assert_eq!(steady.patches_for(0.0, 28), 1, "28 ms usable: one run of 15.75 ms");
        assert_eq!(steady.patches_for(0.0, 28), jittery.patches_for(0.0, 28));
        let mut fast = LatencyBudget::new(33.0, 1);
        let mut fast_jittery = LatencyBudget::new(33.0, 1);
        for i in 0..50 {
            fast.observe_run(8.0);
            fast_jittery.observe_run(if i % 4 == 3 { 14.0 } else { 6.0 });
        }
        assert_eq!(fast.patches_for(0.0, 28), 3);
        assert!(fast_jittery.patches_for(0.0, 28) < 3, "{}", fast_jittery.patches_for(0.0, 28));
    }
}
