//! TinyUSFM-NRQ maths: the patch descriptor and the worst-region aggregation.
//! The manifold log-likelihood itself lives with the manifold ([`crate::manifold`]).

use super::l2_normalise;
use crate::contract::{EMBED_DIM, TOKENS_WITH_CLS};

/// Share of patches, the worst ones, averaged into the frame score.
pub const WORST_FRACTION: f64 = 0.15;

/// A patch's descriptor: per layer the mean of its patch tokens (cls dropped),
/// concatenated in layer order, then L2-normalised.
pub fn patch_descriptor(layers: &[&[f32]]) -> Vec<f64> {
    let mut z = vec![0f64; layers.len() * EMBED_DIM];
    patch_descriptor_into(layers, &mut z);
    z
}

/// [`patch_descriptor`] into a caller's buffer of `layers.len() * 192` values.
pub fn patch_descriptor_into(layers: &[&[f32]], z: &mut [f64]) {
    assert_eq!(z.len(), layers.len() * EMBED_DIM);
    for (layer, mean) in layers.iter().zip(z.chunks_exact_mut(EMBED_DIM)) {
        assert_eq!(layer.len(), TOKENS_WITH_CLS * EMBED_DIM, "encoder output has the wrong size");
        mean.fill(0.0);
        for tok in layer[EMBED_DIM..].chunks_exact(EMBED_DIM) {
            for (m, &v) in mean.iter_mut().zip(tok) {
                *m += v as f64;
            }
        }
        let n = (TOKENS_WITH_CLS - 1) as f64;
        mean.iter_mut().for_each(|m| *m /= n);
    }
    l2_normalise(z);
}

/// How many of `n` patches make the worst region: `max(1, round(0.15 n))`, ties to even
/// (Python's `round`).
pub fn worst_k(n: usize) -> usize {
    ((WORST_FRACTION * n as f64).round_ties_even() as usize).max(1)
}

/// Mean of the `k` lowest log-likelihoods and the indices of those patches (ascending by
/// log-likelihood; ties keep grid order). `None` for no patches.
pub fn worst_region(logliks: &[f64]) -> Option<(f64, Vec<usize>)> {
    if logliks.is_empty() {
        return None;
    }
    let mut order: Vec<usize> = (0..logliks.len()).collect();
    order.sort_by(|&a, &b| logliks[a].total_cmp(&logliks[b]));
    order.truncate(worst_k(logliks.len()));
    let mean = order.iter().map(|&i| logliks[i]).sum::<f64>() / order.len() as f64;
    Some((mean, order))
}

/// The worst-region mean alone, reordering `logliks` in place; allocates nothing.
pub fn worst_region_mean_in_place(logliks: &mut [f64]) -> Option<f64> {
    if logliks.is_empty() {
        return None;
    }
    let k = worst_k(logliks.len());
    logliks.select_nth_unstable_by(k - 1, f64::total_cmp);
    Some(logliks[..k].iter().sum::<f64>() / k as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_rule() {
        assert_eq!(worst_k(1), 1); // 0.15 -> 0 -> at least 1
        assert_eq!(worst_k(6), 1); // 0.9
        assert_eq!(worst_k(7), 1); // 1.05
        assert_eq!(worst_k(16), 2); // 2.4
        assert_eq!(worst_k(20), 3); // 3.0
        assert_eq!(worst_k(10), 2); // 1.5 -> even 2
        assert_eq!(worst_k(30), 4); // 4.5 -> even 4
        assert_eq!(worst_k(50), 8); // 7.5 -> even 8
    }

    #[test]
    fn worst_region_by_hand() {
        let ll = [5.0, -1.0, 3.0, -7.0, 2.0, 0.0, 1.0, 4.0, 6.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0];
        let (m, idx) = worst_region(&ll).unwrap();
        assert_eq!(idx, vec![3, 1]);
        assert_eq!(m, -4.0);
        assert!(worst_region(&[]).is_none());
        assert_eq!(worst_region(&[2.5]).unwrap().0, 2.5);
        let mut copy = ll;
        assert_eq!(worst_region_mean_in_place(&mut copy), Some(-4.0));
    }

    #[test]
    fn descriptor_is_unit_length_and_drops_cls() {
        let mut a = vec![0f32; TOKENS_WITH_CLS * EMBED_DIM];
        // A huge cls token must not matter.
        a[..EMBED_DIM].iter_mut().for_each(|v| *v = 1e6);
        a[EMBED_DIM..].iter_mut().enumerate().for_each(|(i, v)| *v = (i % EMBED_DIM) as f32);
        let z = patch_descriptor(&[&a, &a]);
        assert_eq!(z.len(), 2 * EMBED_DIM);
        let norm: f64 = z.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-12);
        // Channel c has mean c in both layers.
        assert!((z[10] / z[20] - 0.5).abs() < 1e-12);
        assert_eq!(z[5], z[EMBED_DIM + 5]);
    }
}
