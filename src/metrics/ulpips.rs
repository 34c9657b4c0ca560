//! TinyUSFM-uLPIPS: a full-reference distance from token relations at several depths.
//!
//! Per layer, with the cls token dropped and every token L2-normalised:
//! - structure: for each grid position, the tokens of the window of radius 3 clipped at the
//!   borders; their cosine-similarity matrix times tau = 20, row-softmaxed; the mean absolute
//!   difference between reference and image; averaged over positions;
//! - Gram: `F^T F / (N C)` over the normalised tokens; the mean absolute difference.
//!
//! The score is (sum of structure terms + sum of Gram terms) / number of layers. Lower is closer.

use super::l2_normalise;
use crate::contract::{EMBED_DIM, GRID_SIDE, TOKENS_WITH_CLS};

/// Softmax temperature of the structure term.
pub const TAU: f64 = 20.0;
/// Window radius of the structure term, in tokens.
pub const WINDOW_RADIUS: usize = 3;

/// Normalised patch tokens on a square grid: `side * side` tokens of `dim` channels.
#[derive(Debug, Clone)]
pub struct TokenGrid {
    /// Tokens per grid row and column (14 for TinyUSFM).
    pub side: usize,
    /// Channels per token (192 for TinyUSFM).
    pub dim: usize,
    /// `side * side` unit-length tokens, row-major over the grid, `dim` values each.
    pub tokens: Vec<f64>,
}

impl TokenGrid {
    /// From one encoder output `[197, 192]`: drops cls, normalises each token.
    pub fn from_encoder_output(layer: &[f32]) -> TokenGrid {
        assert_eq!(layer.len(), TOKENS_WITH_CLS * EMBED_DIM, "encoder output has the wrong size");
        TokenGrid::from_tokens(GRID_SIDE, EMBED_DIM, &layer[EMBED_DIM..])
    }

    /// From raw patch tokens (row-major grid, no cls): normalises each token.
    pub fn from_tokens(side: usize, dim: usize, raw: &[f32]) -> TokenGrid {
        assert_eq!(raw.len(), side * side * dim);
        let mut tokens: Vec<f64> = raw.iter().map(|&v| v as f64).collect();
        tokens.chunks_exact_mut(dim).for_each(l2_normalise);
        TokenGrid { side, dim, tokens }
    }

    fn n(&self) -> usize {
        self.side * self.side
    }

    fn token(&self, i: usize) -> &[f64] {
        &self.tokens[i * self.dim..(i + 1) * self.dim]
    }

    /// All pairwise dot products (cosines, since tokens are unit length), `n x n`.
    fn similarities(&self) -> Vec<f64> {
        let n = self.n();
        let mut s = vec![0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let d = dot(self.token(i), self.token(j));
                s[i * n + j] = d;
                s[j * n + i] = d;
            }
        }
        s
    }

    /// The channel Gram matrix `F^T F / (N C)`, `dim x dim`.
    pub fn gram(&self) -> Vec<f64> {
        let (n, c) = (self.n(), self.dim);
        let mut g = vec![0f64; c * c];
        for t in 0..n {
            let f = self.token(t);
            for a in 0..c {
                let fa = f[a];
                for b in a..c {
                    g[a * c + b] += fa * f[b];
                }
            }
        }
        let norm = (n * c) as f64;
        for a in 0..c {
            for b in a..c {
                let v = g[a * c + b] / norm;
                g[a * c + b] = v;
                g[b * c + a] = v;
            }
        }
        g
    }
}

/// Dot product with four running sums, so that it vectorises.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// The structure and Gram terms of one layer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LayerTerms {
    /// The windowed token-relation difference ([`structure_term`]).
    pub structure: f64,
    /// The channel Gram difference ([`gram_term`]).
    pub gram: f64,
}

/// Grid indices in the window of `radius` around `(row, col)`, clipped, row-major.
fn window(side: usize, row: usize, col: usize, radius: usize, out: &mut Vec<usize>) {
    out.clear();
    let (r0, r1) = (row.saturating_sub(radius), (row + radius).min(side - 1));
    let (c0, c1) = (col.saturating_sub(radius), (col + radius).min(side - 1));
    for r in r0..=r1 {
        for c in c0..=c1 {
            out.push(r * side + c);
        }
    }
}

/// Row-softmax of `tau * S[w, w]` for one window, written into `out` (`w x w`), from the
/// precomputed `exp(tau * S)`. Cosines are within [-1, 1], so `exp(tau * s)` lies in
/// [e^-20, e^20] and needs no max-subtraction: the same softmax, with one `exp` per token
/// pair instead of one per pair per window (49 windows see each pair).
fn window_softmax(exp_sim: &[f64], n: usize, win: &[usize], out: &mut Vec<f64>) {
    let w = win.len();
    out.clear();
    out.resize(w * w, 0.0);
    for (ri, &r) in win.iter().enumerate() {
        let row = &mut out[ri * w..(ri + 1) * w];
        let mut z = 0.0;
        for (ci, &c) in win.iter().enumerate() {
            row[ci] = exp_sim[r * n + c];
            z += row[ci];
        }
        let inv = 1.0 / z;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Mean over grid positions of the mean |P_ref - P_img| of the windowed attention maps.
pub fn structure_term(reference: &TokenGrid, image: &TokenGrid) -> f64 {
    assert_eq!((reference.side, reference.dim), (image.side, image.dim));
    let (side, n) = (reference.side, reference.n());
    let exp_tau = |mut s: Vec<f64>| {
        s.iter_mut().for_each(|v| *v = (TAU * *v).exp());
        s
    };
    let (sr, si) = (exp_tau(reference.similarities()), exp_tau(image.similarities()));
    let (mut win, mut pr, mut pi) = (Vec::new(), Vec::new(), Vec::new());
    let mut total = 0.0;
    for row in 0..side {
        for col in 0..side {
            window(side, row, col, WINDOW_RADIUS, &mut win);
            window_softmax(&sr, n, &win, &mut pr);
            window_softmax(&si, n, &win, &mut pi);
            let d: f64 = pr.iter().zip(&pi).map(|(a, b)| (a - b).abs()).sum();
            total += d / pr.len() as f64;
        }
    }
    total / n as f64
}

/// Mean |G_ref - G_img| of the channel Gram matrices.
pub fn gram_term(reference: &TokenGrid, image: &TokenGrid) -> f64 {
    let (gr, gi) = (reference.gram(), image.gram());
    gr.iter().zip(&gi).map(|(a, b)| (a - b).abs()).sum::<f64>() / gr.len() as f64
}

/// Both terms of one layer, reference against image; allocates the `n x n` similarity matrices.
pub fn layer_terms(reference: &TokenGrid, image: &TokenGrid) -> LayerTerms {
    LayerTerms { structure: structure_term(reference, image), gram: gram_term(reference, image) }
}

/// The uLPIPS score from per-layer terms.
pub fn combine(terms: &[LayerTerms]) -> f64 {
    let s: f64 = terms.iter().map(|t| t.structure + t.gram).sum();
    s / terms.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_from(side: usize, dim: usize, seed: u64) -> TokenGrid {
        let mut rng = fastrand::Rng::with_seed(seed);
        let raw: Vec<f32> = (0..side * side * dim).map(|_| rng.f32() - 0.5).collect();
        TokenGrid::from_tokens(side, dim, &raw)
    }

    #[test]
    fn identical_inputs_give_zero() {
        let a = grid_from(14, 192, 1);
        let t = layer_terms(&a, &a);
        assert_eq!(t.structure, 0.0);
        assert_eq!(t.gram, 0.0);
        assert_eq!(combine(&[t, t, t, t]), 0.0);
    }

    #[test]
    fn different_inputs_give_positive_terms() {
        let t = layer_terms(&grid_from(14, 192, 1), &grid_from(14, 192, 2));
        assert!(t.structure > 0.0 && t.gram > 0.0);
    }

    #[test]
    fn gram_of_orthonormal_tokens() {
        // 2x2 grid of 4 one-hot tokens in 4 channels: F is the identity, so
        // F^T F / (N C) = I / 16.
        let raw = [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.];
        let g = TokenGrid::from_tokens(2, 4, &raw).gram();
        for a in 0..4 {
            for b in 0..4 {
                assert_eq!(g[a * 4 + b], if a == b { 1.0 / 16.0 } else { 0.0 });
            }
        }
        // Against all tokens equal to e0: G = e0 e0^T * 4/16; |diff| sums to 4*(1/16) + ...
        let same = [1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0.];
        let t = gram_term(&TokenGrid::from_tokens(2, 4, &raw), &TokenGrid::from_tokens(2, 4, &same));
        // diff: (0,0): 1/16 - 4/16 = -3/16; (1,1),(2,2),(3,3): 1/16 each => 6/16 over 16 entries.
        assert!((t - (6.0 / 16.0) / 16.0).abs() < 1e-15);
    }

    #[test]
    fn structure_by_hand_on_a_tiny_grid() {
        // A 1x2 "grid" is not square; use 2x2 with radius 3: every window is the whole grid.
        // Reference: all four tokens identical -> every softmax row is uniform (1/4).
        // Image: orthonormal tokens -> row i has e^20 on the diagonal, 1 elsewhere.
        let same = [1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0.];
        let ortho = [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.];
        let s = structure_term(&TokenGrid::from_tokens(2, 4, &same), &TokenGrid::from_tokens(2, 4, &ortho));
        let z = 20f64.exp() + 3.0;
        let (diag, off) = (20f64.exp() / z, 1.0 / z);
        let per_row = (diag - 0.25).abs() + 3.0 * (0.25 - off).abs();
        let want = 4.0 * per_row / 16.0; // same for each of the 4 positions
        assert!((s - want).abs() < 1e-12, "{s} vs {want}");
    }

    #[test]
    fn windows_clip_at_borders() {
        let mut w = Vec::new();
        window(14, 0, 0, 3, &mut w);
        assert_eq!(w.len(), 16);
        window(14, 7, 7, 3, &mut w);
        assert_eq!(w.len(), 49);
        window(14, 13, 5, 3, &mut w);
        assert_eq!(w.len(), 4 * 7);
    }
}
