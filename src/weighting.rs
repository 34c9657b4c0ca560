//! Task-anchored uLPIPS weights: one structure and one Gram weight per layer, fitted for one
//! set of encoder weights (models/ulpips_weights.json, written by
//! `models/usq_tools/evaluate/ulpips_weights.py`).
//!
//! The paper's uLPIPS weighs its eight terms equally (1/4 each, [`crate::metrics::ulpips::combine`]);
//! the weighted score is `sum_l (structure_w[l] * structure[l] + gram_w[l] * gram[l])`, reported
//! beside the reference value, never in its place. The file says which encoder weights it was
//! fitted for (the model's `usq.weights` metadata); a scorer refuses weights fitted for others.
//!
//! File format (JSON; keys beyond these are documentation and ignored):
//! `{"format": "usq-ulpips-weights/1", "weights": "<usq.weights of the model>",
//!   "layers": [{"block": 2, "structure": w, "gram": w}, ...]}`, one entry per output layer in
//! [`LAYER_BLOCKS`] order, every weight finite and non-negative, not all zero.

use crate::contract::LAYER_BLOCKS;
use crate::encoder::ModelInfo;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::quality::LayerReport;
use std::path::Path;

/// The `format` value this version reads.
pub const FORMAT: &str = "usq-ulpips-weights/1";
/// What `models/usq_tools/quantise/int8.py` appends to the float model's `usq.weights` label.
pub const QUANTISED_NOTE: &str = "; int8 (";
/// Largest weights file read (the shipped one is under 2 KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One layer's two weights.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerWeight {
    /// The 0-based encoder block the layer follows.
    pub block: usize,
    /// Weight of the layer's structure term.
    pub structure: f64,
    /// Weight of the layer's Gram term.
    pub gram: f64,
}

/// Per-layer uLPIPS weights, checked: see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct UlpipsWeights {
    weights: String,
    layers: Vec<LayerWeight>,
}

#[derive(serde::Deserialize)]
struct File {
    format: String,
    weights: String,
    layers: Vec<LayerWeight>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, msg)
}

impl UlpipsWeights {
    /// Weights for the encoder weights labelled `weights`, checked.
    pub fn new(weights: impl Into<String>, layers: Vec<LayerWeight>) -> Result<UlpipsWeights> {
        let blocks: Vec<usize> = layers.iter().map(|l| l.block).collect();
        if blocks != LAYER_BLOCKS {
            return Err(invalid(format!("layers are for blocks {blocks:?}; the model's layers are {LAYER_BLOCKS:?}")));
        }
        for l in &layers {
            for (name, w) in [("structure", l.structure), ("gram", l.gram)] {
                if !w.is_finite() || w < 0.0 {
                    return Err(invalid(format!(
                        "block {}: {name} weight {w} is not a finite non-negative number",
                        l.block
                    )));
                }
            }
        }
        if layers.iter().all(|l| l.structure == 0.0 && l.gram == 0.0) {
            return Err(invalid("every weight is zero"));
        }
        Ok(UlpipsWeights { weights: weights.into(), layers })
    }

    /// Parses and checks a weights file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<UlpipsWeights> {
        let f: File = serde_json::from_slice(bytes)
            .map_err(|e| Error::from_source(ErrorKind::InvalidArgument, &e))
            .context("not a uLPIPS weights file")?;
        if f.format != FORMAT {
            return Err(invalid(format!("format {:?}, this version reads {FORMAT:?}", f.format)));
        }
        UlpipsWeights::new(f.weights, f.layers)
    }

    /// Reads a weights file (at most [`MAX_FILE_BYTES`]).
    pub fn from_path(path: impl AsRef<Path>) -> Result<UlpipsWeights> {
        let path = path.as_ref();
        let bytes =
            read_limited(path, MAX_FILE_BYTES).with_context(|| format!("reading uLPIPS weights {}", path.display()))?;
        UlpipsWeights::from_json(&bytes).with_context(|| format!("uLPIPS weights {}", path.display()))
    }

    /// The `usq.weights` label of the encoder weights these were fitted for.
    pub fn fitted_for(&self) -> &str {
        &self.weights
    }

    /// The per-layer weights, in [`LAYER_BLOCKS`] order.
    pub fn layers(&self) -> &[LayerWeight] {
        &self.layers
    }

    /// Fails unless these weights were fitted for the model's encoder weights. A quantised
    /// model shares its float model's weights: its `usq.weights` is the float model's label
    /// followed by [`QUANTISED_NOTE`] and how it was quantised, and that note is not compared.
    pub fn check_model(&self, model: &ModelInfo) -> Result<()> {
        let base = model.weights.split_once(QUANTISED_NOTE).map_or(model.weights.as_str(), |(b, _)| b);
        if base != self.weights {
            return Err(invalid(format!(
                "uLPIPS weights were fitted for encoder weights {:?}, the model has {:?}",
                self.weights, model.weights
            )));
        }
        Ok(())
    }

    /// The weighted score of one comparison's per-layer terms.
    pub fn apply(&self, layers: &[LayerReport]) -> f64 {
        debug_assert_eq!(layers.len(), self.layers.len());
        layers.iter().zip(&self.layers).map(|(t, w)| w.structure * t.structure + w.gram * t.gram).sum()
    }
}

/// A whole file of at most `max` bytes; a larger one is an error, not an allocation.
fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::from_source(ErrorKind::Io, &e);
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(io)?.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(invalid(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(layers: &str) -> String {
        format!(r#"{{"format": "{FORMAT}", "weights": "w1", "about": "ignored", "layers": {layers}}}"#)
    }

    const FOUR: &str = r#"[{"block": 2, "structure": 0.25, "gram": 0.25}, {"block": 4, "structure": 0.25, "gram": 0.25},
        {"block": 6, "structure": 0.25, "gram": 0.25}, {"block": 10, "structure": 0.25, "gram": 0.25}]"#;

    #[test]
    fn equal_weights_give_the_reference_score() {
        let w = UlpipsWeights::from_json(file(FOUR).as_bytes()).unwrap();
        let layers: Vec<LayerReport> = LAYER_BLOCKS
            .iter()
            .enumerate()
            .map(|(i, &block)| LayerReport { block, structure: 0.1 * i as f64 + 0.05, gram: 0.01 * i as f64 })
            .collect();
        let terms: Vec<_> = layers
            .iter()
            .map(|l| crate::metrics::ulpips::LayerTerms { structure: l.structure, gram: l.gram })
            .collect();
        let reference = crate::metrics::ulpips::combine(&terms);
        assert!((w.apply(&layers) - reference).abs() < 1e-15);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let cases = [
            ("{", "not a uLPIPS weights file"),
            (&file("[]"), "blocks []"),
            (&file(&FOUR.replace("\"block\": 10", "\"block\": 11")), "blocks [2, 4, 6, 11]"),
            (&file(&FOUR.replacen("0.25", "-1", 1)), "not a finite non-negative"),
            (&file(&FOUR.replace("0.25", "0")), "every weight is zero"),
            (&file(FOUR).replace(FORMAT, "usq-ulpips-weights/9"), "this version reads"),
        ];
        for (text, needle) in cases {
            let e = UlpipsWeights::from_json(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn weights_for_other_encoder_weights_are_refused() {
        let w = UlpipsWeights::from_json(file(FOUR).as_bytes()).unwrap();
        let info = |label: &str| ModelInfo { weights: label.into(), version: "1".into(), producer: String::new() };
        assert!(w.check_model(&info("w1")).is_ok());
        assert!(w.check_model(&info("w1; int8 (per-column weights)")).is_ok(), "the int8 model shares the weights");
        assert!(w.check_model(&info("w1x; int8 (per-column weights)")).is_err());
        assert!(w.check_model(&info("w2")).unwrap_err().to_string().contains("fitted for encoder weights"));
    }
}
