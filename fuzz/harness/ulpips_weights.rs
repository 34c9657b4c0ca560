//! The uLPIPS weights file from arbitrary bytes: an error or checked weights.

pub fn run(data: &[u8]) {
    if let Ok(w) = usq::UlpipsWeights::from_json(data) {
        assert!(w.layers().iter().all(|l| l.structure >= 0.0 && l.gram >= 0.0));
    }
}
