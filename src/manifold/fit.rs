//! Fitting an organ model from clean-image patch descriptors: PCA, then a diagonal Gaussian
//! mixture by EM with k-means initialisation (scikit-learn's `PCA` + `GaussianMixture(
//! covariance_type="diag")` recipe, as the reference fits its organ files).

use super::OrganModel;
use crate::checks::{CleanStats, FrameMeasures};
use crate::error::Result;
use nalgebra::{DMatrix, SymmetricEigen};

/// Settings of the fit; the defaults are the reference recipe.
#[derive(Debug, Clone)]
pub struct FitSettings {
    /// Upper bound of the PCA dimension (fewer when there are fewer samples).
    pub max_dim: usize,
    /// Gaussian components in the mixture.
    pub components: usize,
    /// Added to every variance, as scikit-learn's `reg_covar`.
    pub reg_covar: f64,
    /// Most EM iterations (and most k-means iterations of the initialisation).
    pub max_iter: usize,
    /// EM stops when the mean log-likelihood changes by less than this.
    pub tol: f64,
    /// Seed of the k-means++ initialisation.
    pub seed: u64,
}

impl Default for FitSettings {
    fn default() -> Self {
        FitSettings { max_dim: 128, components: 4, reg_covar: 1e-4, max_iter: 300, tol: 1e-3, seed: 0 }
    }
}

/// What the fit did, for the caller's report.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// Patch descriptors fitted.
    pub samples: usize,
    /// PCA dimension kept.
    pub dim: usize,
    /// EM iterations run.
    pub em_iterations: usize,
    /// EM met `tol` before `max_iter`.
    pub converged: bool,
    /// Mean per-sample log-likelihood of the fitted mixture (as scikit-learn's lower bound).
    pub mean_loglik: f64,
    /// Share of the descriptor variance the kept PCA axes explain.
    pub explained_variance: f64,
}

/// The clean statistics of an organ's training frames for the acquisition checks: each frame's
/// `measures`, and the median log-likelihood under `model` of its patches' descriptors
/// (`samples`, `features` values per patch, frame `i` owning the next `patches[i]` of them).
pub fn clean_stats(
    model: &OrganModel,
    measures: &[FrameMeasures],
    samples: &[f64],
    features: usize,
    patches: &[usize],
) -> Result<CleanStats> {
    if patches.len() != measures.len() || patches.iter().sum::<usize>() * features != samples.len() {
        crate::bail!(InvalidArgument, "clean statistics need every frame's measures and its patches' descriptors");
    }
    let (mut scratch, mut lls, mut medians, mut at) = (Vec::new(), Vec::new(), Vec::with_capacity(patches.len()), 0);
    for &n in patches {
        lls.clear();
        lls.extend(samples[at..at + n * features].chunks_exact(features).map(|z| model.loglik(z, &mut scratch)));
        at += n * features;
        medians.push(crate::checks::median_in_place(&mut lls));
    }
    CleanStats::from_frames(measures, &medians)
}

/// Fits an organ model to `samples` descriptors of `features` values each (row-major).
pub fn fit_organ(name: &str, samples: &[f64], features: usize, s: &FitSettings) -> Result<(OrganModel, FitReport)> {
    let n = samples.len() / features.max(1);
    if features == 0 || n * features != samples.len() {
        crate::bail!(InvalidArgument, "sample buffer is not a whole number of {features}-value descriptors");
    }
    if n < s.components.max(2) {
        crate::bail!(InvalidArgument, "organ {name}: {n} patch descriptors, need at least {}", s.components.max(2));
    }
    crate::error::ensure_finite("patch descriptors", samples)?;
    let pca = Pca::fit(samples, n, features, s.max_dim.min(n).min(features));
    let projected = pca.project_all(samples, n);
    let d = pca.dim;
    let gmm = DiagGmm::fit(&projected, n, d, s);
    let organ = OrganModel {
        name: name.to_string(),
        features,
        dim: d,
        components: s.components,
        log_weights: gmm.weights.iter().map(|w| w.ln()).collect(),
        log_det: (0..s.components).map(|k| log_det(&gmm.vars[k * d..(k + 1) * d])).collect(),
        pca_mean: pca.mean,
        pca_components: pca.components,
        gmm_weights: gmm.weights,
        gmm_means: gmm.means,
        gmm_covariances: gmm.vars,
        clean: None,
        quality: None,
    };
    organ.validate()?;
    let report = FitReport {
        samples: n,
        dim: d,
        em_iterations: gmm.iterations,
        converged: gmm.converged,
        mean_loglik: gmm.mean_loglik,
        explained_variance: pca.explained,
    };
    Ok((organ, report))
}

/// The reference files' `log_det`: `sum(log var) + d log(2 pi)`.
fn log_det(vars: &[f64]) -> f64 {
    vars.iter().map(|v| v.ln()).sum::<f64>() + vars.len() as f64 * (2.0 * std::f64::consts::PI).ln()
}

struct Pca {
    dim: usize,
    features: usize,
    mean: Vec<f64>,
    components: Vec<f64>,
    explained: f64,
}

impl Pca {
    /// Principal axes from the eigenvectors of the sample covariance, largest first, with
    /// scikit-learn's sign rule (largest-magnitude loading positive) so results are stable.
    fn fit(x: &[f64], n: usize, f: usize, dim: usize) -> Pca {
        let mut mean = vec![0f64; f];
        for row in x.chunks_exact(f) {
            mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred = DMatrix::from_fn(n, f, |r, c| x[r * f + c] - mean[c]);
        let cov = (centred.transpose() * &centred) / ((n - 1).max(1) as f64);
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..f).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let total: f64 = eig.eigenvalues.iter().map(|v| v.max(0.0)).sum();
        let kept: f64 = order[..dim].iter().map(|&i| eig.eigenvalues[i].max(0.0)).sum();
        let mut components = Vec::with_capacity(dim * f);
        for &i in &order[..dim] {
            let v = eig.eigenvectors.column(i);
            let big = v.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs())).unwrap_or(1.0);
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            components.extend(v.iter().map(|c| c * sign));
        }
        Pca { dim, features: f, mean, components, explained: if total > 0.0 { kept / total } else { 1.0 } }
    }

    fn project_all(&self, x: &[f64], n: usize) -> Vec<f64> {
        let f = self.features;
        let mut out = Vec::with_capacity(n * self.dim);
        for row in x.chunks_exact(f) {
            for c in self.components.chunks_exact(f) {
                out.push(c.iter().zip(row).zip(&self.mean).map(|((p, v), m)| p * (v - m)).sum());
            }
        }
        out
    }
}

struct DiagGmm {
    weights: Vec<f64>,
    means: Vec<f64>,
    vars: Vec<f64>,
    iterations: usize,
    converged: bool,
    mean_loglik: f64,
}

impl DiagGmm {
    fn fit(x: &[f64], n: usize, d: usize, s: &FitSettings) -> DiagGmm {
        let k = s.components;
        let labels = kmeans(x, n, d, k, s.seed, s.max_iter);
        let mut resp = vec![0f64; n * k];
        for (i, &l) in labels.iter().enumerate() {
            resp[i * k + l] = 1.0;
        }
        let mut g = DiagGmm {
            weights: vec![],
            means: vec![],
            vars: vec![],
            iterations: 0,
            converged: false,
            mean_loglik: f64::NEG_INFINITY,
        };
        g.m_step(x, n, d, k, &resp, s.reg_covar);
        let mut prev = f64::NEG_INFINITY;
        for it in 1..=s.max_iter {
            let lb = g.e_step(x, n, d, k, &mut resp);
            g.m_step(x, n, d, k, &resp, s.reg_covar);
            g.iterations = it;
            g.mean_loglik = lb;
            if (lb - prev).abs() < s.tol {
                g.converged = true;
                break;
            }
            prev = lb;
        }
        g
    }

    fn m_step(&mut self, x: &[f64], n: usize, d: usize, k: usize, resp: &[f64], reg: f64) {
        let mut nk = vec![10.0 * f64::EPSILON; k];
        let mut means = vec![0f64; k * d];
        for i in 0..n {
            let xi = &x[i * d..(i + 1) * d];
            for c in 0..k {
                let r = resp[i * k + c];
                nk[c] += r;
                means[c * d..(c + 1) * d].iter_mut().zip(xi).for_each(|(m, v)| *m += r * v);
            }
        }
        for c in 0..k {
            means[c * d..(c + 1) * d].iter_mut().for_each(|m| *m /= nk[c]);
        }
        let mut vars = vec![0f64; k * d];
        for i in 0..n {
            let xi = &x[i * d..(i + 1) * d];
            for c in 0..k {
                let r = resp[i * k + c];
                let mu = &means[c * d..(c + 1) * d];
                vars[c * d..(c + 1) * d]
                    .iter_mut()
                    .zip(xi)
                    .zip(mu)
                    .for_each(|((v, xv), m)| *v += r * (xv - m) * (xv - m));
            }
        }
        for c in 0..k {
            vars[c * d..(c + 1) * d].iter_mut().for_each(|v| *v = *v / nk[c] + reg);
        }
        let total: f64 = nk.iter().sum();
        self.weights = nk.iter().map(|v| v / total).collect();
        self.means = means;
        self.vars = vars;
    }

    /// Responsibilities in place; returns the mean log-likelihood per sample.
    fn e_step(&self, x: &[f64], n: usize, d: usize, k: usize, resp: &mut [f64]) -> f64 {
        let log_det: Vec<f64> = (0..k).map(|c| log_det(&self.vars[c * d..(c + 1) * d])).collect();
        let mut total = 0.0;
        for i in 0..n {
            let xi = &x[i * d..(i + 1) * d];
            let row = &mut resp[i * k..(i + 1) * k];
            for c in 0..k {
                let mu = &self.means[c * d..(c + 1) * d];
                let var = &self.vars[c * d..(c + 1) * d];
                let maha: f64 = xi.iter().zip(mu).zip(var).map(|((a, m), v)| (a - m) * (a - m) / v).sum();
                row[c] = self.weights[c].ln() - 0.5 * (maha + log_det[c]);
            }
            let lse = crate::metrics::log_sum_exp(row);
            row.iter_mut().for_each(|v| *v = (*v - lse).exp());
            total += lse;
        }
        total / n as f64
    }
}

/// Lloyd's k-means with k-means++ seeding; an emptied cluster takes the point farthest
/// from its centre. Returns a label per sample.
fn kmeans(x: &[f64], n: usize, d: usize, k: usize, seed: u64, max_iter: usize) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let dist2 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>();
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut centres: Vec<f64> = row(rng.usize(..n)).to_vec();
    let mut nearest: Vec<f64> = (0..n).map(|i| dist2(row(i), &centres[..d])).collect();
    while centres.len() < k * d {
        let total: f64 = nearest.iter().sum();
        let pick = if total > 0.0 {
            let mut t = rng.f64() * total;
            nearest
                .iter()
                .position(|&w| {
                    t -= w;
                    t <= 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.usize(..n)
        };
        centres.extend_from_slice(row(pick));
        let c = centres.len() / d - 1;
        for (i, near) in nearest.iter_mut().enumerate() {
            *near = near.min(dist2(row(i), &centres[c * d..(c + 1) * d]));
        }
    }
    let mut labels = vec![usize::MAX; n];
    for _ in 0..max_iter {
        let mut changed = false;
        for (i, label) in labels.iter_mut().enumerate() {
            let best = (0..k)
                .min_by(|&a, &b| {
                    dist2(row(i), &centres[a * d..(a + 1) * d]).total_cmp(&dist2(row(i), &centres[b * d..(b + 1) * d]))
                })
                .unwrap();
            if *label != best {
                *label = best;
                changed = true;
            }
        }
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[labels[i]] += 1;
            sums[labels[i] * d..(labels[i] + 1) * d].iter_mut().zip(row(i)).for_each(|(s, v)| *s += v);
        }
        for c in 0..k {
            if counts[c] == 0 {
                let far = (0..n)
                    .max_by(|&a, &b| {
                        let da = dist2(row(a), &centres[labels[a] * d..(labels[a] + 1) * d]);
                        let db = dist2(row(b), &centres[labels[b] * d..(labels[b] + 1) * d]);
                        da.total_cmp(&db)
                    })
                    .unwrap();
                centres[c * d..(c + 1) * d].copy_from_slice(row(far));
                labels[far] = c;
                changed = true;
            } else {
                for j in 0..d {
                    centres[c * d + j] = sums[c * d + j] / counts[c] as f64;
                }
            }
        }
        if !changed {
            break;
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well-separated blobs in 6-D along the first axis, little noise elsewhere.
    fn blobs(n: usize) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut x = Vec::new();
        for i in 0..n {
            let centre = if i % 2 == 0 { 3.0 } else { -3.0 };
            x.push(centre + 0.1 * (rng.f64() - 0.5));
            for _ in 1..6 {
                x.push(0.1 * (rng.f64() - 0.5));
            }
        }
        x
    }

    #[test]
    fn pca_finds_the_dominant_axis() {
        let x = blobs(200);
        let pca = Pca::fit(&x, 200, 6, 2);
        // First axis is e0 (sign made positive), explaining nearly all variance.
        assert!((pca.components[0] - 1.0).abs() < 1e-3, "{:?}", &pca.components[..6]);
        assert!(pca.explained > 0.99);
    }

    #[test]
    fn fit_separates_blobs_and_scores_them_higher_than_outliers() {
        let x = blobs(200);
        let s = FitSettings { max_dim: 3, components: 2, ..Default::default() };
        let (organ, report) = fit_organ("Blobs", &x, 6, &s).unwrap();
        assert_eq!(report.dim, 3);
        assert!(report.converged);
        let mut w = organ.gmm_weights.clone();
        w.sort_by(f64::total_cmp);
        assert!((w[0] - 0.5).abs() < 0.01 && (w[1] - 0.5).abs() < 0.01, "{w:?}");
        let mut scratch = Vec::new();
        let inlier = organ.loglik(&x[..6], &mut scratch);
        let outlier = organ.loglik(&[0.0, 2.0, 2.0, 0.0, 0.0, 0.0], &mut scratch);
        assert!(inlier > outlier + 10.0, "{inlier} vs {outlier}");
        // log_det includes the 2 pi constant, as the published files store it.
        let ld: f64 =
            organ.gmm_covariances[..3].iter().map(|v| v.ln()).sum::<f64>() + 3.0 * (2.0 * std::f64::consts::PI).ln();
        assert!((organ.log_det[0] - ld).abs() < 1e-12);
    }

    #[test]
    fn too_few_samples_is_an_error() {
        let e = fit_organ("X", &[0.0; 12], 4, &FitSettings::default()).unwrap_err();
        assert!(e.to_string().contains("need at least 4"), "{e}");
    }
}
