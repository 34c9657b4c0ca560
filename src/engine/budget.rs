//! `LatencyBudget`: how many NRQ patches a frame can afford, from the engine's own measured
//! cost (exponential moving averages of the encoder run and the per-frame overhead).

/// Share of the budget planned for; the rest absorbs jitter.
const HEADROOM: f64 = 0.85;
/// Weight of the newest measurement in the moving averages.
const EMA: f64 = 0.2;

#[derive(Debug, Clone)]
pub struct LatencyBudget {
    budget_ms: f64,
    batch: usize,
    run_ms: Option<f64>,
    tail_ms: f64,
}

impl LatencyBudget {
    pub fn new(budget_ms: f64, batch: usize) -> LatencyBudget {
        LatencyBudget { budget_ms, batch: batch.max(1), run_ms: None, tail_ms: 0.0 }
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
            Some(m) => m + EMA * (ms - m),
            None => ms,
        });
    }

    /// Time spent after the last run (aggregation, publishing).
    pub fn observe_tail(&mut self, ms: f64) {
        self.tail_ms += EMA * (ms - self.tail_ms);
    }

    /// Patches to score for a frame that has already waited `elapsed_ms` since capture: as
    /// many whole runs as fit, at least one patch, at most `available`.
    pub fn patches_for(&self, elapsed_ms: f64, available: usize) -> usize {
        let Some(run) = self.run_ms else { return self.batch.min(available).max(1) };
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
        // 85 ms usable: 4 runs of 2 patches.
        assert_eq!(b.patches_for(0.0, 28), 8);
        // 30 ms already spent waiting: 55 ms, 2 runs.
        assert_eq!(b.patches_for(30.0, 28), 4);
        // Over budget already: still one patch, so every frame gets a score.
        assert_eq!(b.patches_for(500.0, 28), 1);
        assert_eq!(b.patches_for(0.0, 3), 3, "never more than the grid");
        b.observe_run(40.0);
        assert!((b.run_ms().unwrap() - 24.0).abs() < 1e-9);
    }
}
