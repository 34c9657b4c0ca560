//! The paper's metric maths over encoder features: pure functions over slices, no model,
//! no I/O, so each step can be checked by hand.

pub mod nrq;
pub mod ulpips;

/// `x / max(||x||, 1e-12)`, as torch's `F.normalize`.
pub fn l2_normalise(x: &mut [f64]) {
    let n = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    x.iter_mut().for_each(|v| *v /= n);
}

/// `log(sum(exp(x)))` without overflow; `-inf` for an empty slice.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `log(mean(exp(x)))`: how organ log-likelihoods are combined when no organ is named.
pub fn log_mean_exp(xs: &[f64]) -> f64 {
    log_sum_exp(xs) - (xs.len() as f64).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_mean_exp_by_hand() {
        assert!((log_mean_exp(&[0.0, 0.0]) - 0.0).abs() < 1e-15);
        // log((e^1 + e^3)/2)
        let want = ((1f64.exp() + 3f64.exp()) / 2.0).ln();
        assert!((log_mean_exp(&[1.0, 3.0]) - want).abs() < 1e-12);
        // Huge magnitudes do not overflow: log((e^-1000 + e^-1000)/2) = -1000.
        assert!((log_mean_exp(&[-1000.0, -1000.0]) + 1000.0).abs() < 1e-9);
        assert!((log_mean_exp(&[1000.0]) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn normalise_unit_and_zero() {
        let mut v = vec![3.0, 4.0];
        l2_normalise(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0, 0.0];
        l2_normalise(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }
}
