//! The clean-image manifold of TinyUSFM-NRQ: per organ, a PCA projection of patch
//! descriptors and a diagonal Gaussian mixture over the projection.

pub mod calibration;
pub mod fit;
mod npz;

use crate::checks::{CleanStats, OrganMargins};
use crate::error::{Context, Result, ensure_finite};
use calibration::QualityScale;
use std::path::Path;

/// One organ's PCA + diagonal GMM, as in the reference `.npz` files.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganModel {
    /// The organ's name (the `.npz` file stem), as a scorer or the live engine selects it.
    pub name: String,
    /// Descriptor length (768 for the 4-layer TinyUSFM descriptor).
    pub features: usize,
    /// PCA dimension `d`.
    pub dim: usize,
    /// Mixture components `K`.
    pub components: usize,
    /// Descriptor mean subtracted before projecting, `features` values.
    pub pca_mean: Vec<f64>,
    /// `d x features`, row-major.
    pub pca_components: Vec<f64>,
    /// Mixture weights, `K` values.
    pub gmm_weights: Vec<f64>,
    /// `K x d`, row-major.
    pub gmm_means: Vec<f64>,
    /// `K x d` diagonal variances, row-major.
    pub gmm_covariances: Vec<f64>,
    /// Log mixture weights, `K` values, as stored (what `loglik` uses, not `gmm_weights`).
    pub log_weights: Vec<f64>,
    /// Per component, `sum(log(var)) + d log(2 pi)`: with it, `loglik` is the mixture's true
    /// log-density (measured on the published organ files).
    pub log_det: Vec<f64>,
    /// Statistics of the organ's clean training frames for the acquisition checks
    /// ([`crate::checks`]): extra `usq_clean_*` keys that the reference format ignores; `None`
    /// in files fitted elsewhere (the published organs) or by an older usq.
    pub clean: Option<CleanStats>,
    /// NRQs of the organ's clean frames held out of the fit, for the calibrated quality index
    /// ([`calibration`]): the extra `usq_quality_nrq` key; `None` in files without it.
    pub quality: Option<QualityScale>,
}

impl OrganModel {
    /// Checks shapes and values: consistent sizes, finite numbers, positive variances.
    pub fn validate(&self) -> Result<()> {
        let (f, d, k) = (self.features, self.dim, self.components);
        let sizes = [
            ("pca_mean", self.pca_mean.len(), f),
            ("pca_components", self.pca_components.len(), d * f),
            ("gmm_weights", self.gmm_weights.len(), k),
            ("gmm_means", self.gmm_means.len(), k * d),
            ("gmm_covariances", self.gmm_covariances.len(), k * d),
            ("log_weights", self.log_weights.len(), k),
            ("log_det", self.log_det.len(), k),
        ];
        if d == 0 || k == 0 || f == 0 {
            crate::bail!(Manifold, "empty manifold (features {f}, dim {d}, components {k})");
        }
        for (name, got, want) in sizes {
            if got != want {
                crate::bail!(
                    Manifold,
                    "{name} holds {got} values, expected {want} (dim {d}, {k} components, {f} features)"
                );
            }
        }
        for (name, v) in [
            ("pca_mean", &self.pca_mean),
            ("pca_components", &self.pca_components),
            ("gmm_weights", &self.gmm_weights),
            ("gmm_means", &self.gmm_means),
            ("gmm_covariances", &self.gmm_covariances),
            ("log_weights", &self.log_weights),
            ("log_det", &self.log_det),
        ] {
            ensure_finite(name, v).map_err(|e| e.context(format!("organ {}", self.name)))?;
        }
        if let Some(i) = self.gmm_covariances.iter().position(|&v| v <= 0.0) {
            crate::bail!(Manifold, "gmm_covariances[{i}] is not positive");
        }
        if let Some(c) = &self.clean {
            c.validate().map_err(|e| e.context(format!("organ {}", self.name)))?;
        }
        if let Some(q) = &self.quality {
            q.validate().map_err(|e| e.context(format!("organ {}", self.name)))?;
        }
        Ok(())
    }

    /// Log-likelihood of one descriptor `z` (length `features`):
    /// `x = (z - mean) P^T`, `logsumexp_k(log w_k - 0.5 (sum((x - mu_k)^2 / var_k) + log_det_k))`.
    pub fn loglik(&self, z: &[f64], scratch: &mut Vec<f64>) -> f64 {
        assert_eq!(z.len(), self.features);
        let (f, d) = (self.features, self.dim);
        // The scratch buffer holds the projection (d values) then the per-component terms.
        scratch.clear();
        scratch.extend((0..d).map(|r| {
            let row = &self.pca_components[r * f..(r + 1) * f];
            row.iter().zip(z).zip(&self.pca_mean).map(|((p, zi), m)| p * (zi - m)).sum::<f64>()
        }));
        for k in 0..self.components {
            let x = &scratch[..d];
            let mu = &self.gmm_means[k * d..(k + 1) * d];
            let var = &self.gmm_covariances[k * d..(k + 1) * d];
            let maha: f64 = x.iter().zip(mu).zip(var).map(|((xi, m), v)| (xi - m) * (xi - m) / v).sum();
            scratch.push(self.log_weights[k] - 0.5 * (maha + self.log_det[k]));
        }
        crate::metrics::log_sum_exp(&scratch[d..])
    }
}

/// The organs a frame can be scored against: a folder of `<Organ>.npz`, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifoldSet {
    /// The organ models, sorted by name.
    pub organs: Vec<OrganModel>,
}

impl ManifoldSet {
    /// Reads every `*.npz` in a folder; the organ name is the file stem.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<ManifoldSet> {
        let dir = dir.as_ref();
        let ctx = || format!("loading manifold folder {}", dir.display());
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .with_context(ctx)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz")))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(
                crate::Error::new(crate::ErrorKind::Manifold, "no .npz organ file in the folder").context(ctx())
            );
        }
        let organs = paths.iter().map(OrganModel::load).collect::<Result<Vec<_>>>().with_context(ctx)?;
        Ok(ManifoldSet { organs })
    }

    /// A set from `.npz` files held in memory, as `(organ name, bytes)`.
    pub fn from_npz_bytes<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<ManifoldSet> {
        let mut organs = files
            .into_iter()
            .map(|(name, bytes)| {
                OrganModel::from_npz(name, std::io::Cursor::new(bytes)).with_context(|| format!("organ {name}"))
            })
            .collect::<Result<Vec<_>>>()?;
        organs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ManifoldSet { organs })
    }

    /// The organ called `name`; the error lists the organs there are.
    pub fn organ(&self, name: &str) -> Result<&OrganModel> {
        self.organs.iter().find(|o| o.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.organs.iter().map(|o| o.name.as_str()).collect();
            crate::Error::new(
                crate::ErrorKind::InvalidArgument,
                format!("unknown organ '{name}'; this manifold has: {}", known.join(", ")),
            )
        })
    }

    /// Fails unless every organ expects descriptors of `features` values.
    pub fn check_features(&self, features: usize) -> Result<()> {
        for o in &self.organs {
            if o.features != features {
                crate::bail!(
                    Manifold,
                    "organ {} expects {}-value descriptors but the model gives {features}",
                    o.name,
                    o.features
                );
            }
        }
        Ok(())
    }

    /// The organs without clean statistics, of `organ` or of the whole set: the acquisition
    /// checks cannot judge frames against them (only `frozen` is raised).
    pub fn organs_without_clean_stats(&self, organ: Option<&str>) -> Vec<&str> {
        self.organs
            .iter()
            .filter(|o| o.clean.is_none() && organ.is_none_or(|n| n == o.name))
            .map(|o| o.name.as_str())
            .collect()
    }

    /// A warning for a user when the checks cannot judge some organs in use, or `None`.
    pub fn clean_stats_warning(&self, organ: Option<&str>) -> Option<String> {
        let missing = self.organs_without_clean_stats(organ);
        (!missing.is_empty()).then(|| {
            format!(
                "no clean-frame statistics for {} (a manifold fitted elsewhere or by an older usq): the acquisition \
                 checks judge only `frozen` against it; refit with `usq fit-nrq` to get them",
                missing.join(", ")
            )
        })
    }

    /// How a frame fits the organs' clean frames, for the acquisition checks, from each organ's
    /// median patch log-likelihood (`medians`, in set order; NaN for an organ not scored):
    /// the organ it is judged against (`scored`, when it has clean statistics; else the organ
    /// with clean statistics it fits best) and the margins ([`OrganMargins`]). `None` when no
    /// organ in question has clean statistics.
    pub fn organ_fit(&self, scored: Option<&OrganModel>, medians: &[f64]) -> Option<(&OrganModel, OrganMargins)> {
        let margin =
            |o: &OrganModel, m: f64| Some(m - o.clean.as_ref()?.thresholds().organ_loglik).filter(|v| !v.is_nan());
        let fits = self.organs.iter().zip(medians).filter_map(|(o, &m)| Some((o, margin(o, m)?)));
        match scored {
            Some(s) => {
                let i = self.organs.iter().position(|x| std::ptr::eq(x, s))?;
                let own = margin(s, *medians.get(i)?)?;
                let other = fits.filter(|(o, _)| !std::ptr::eq(*o, s)).map(|(_, m)| m).max_by(f64::total_cmp);
                Some((&self.organs[i], OrganMargins { own, other }))
            }
            None => fits.max_by(|a, b| a.1.total_cmp(&b.1)).map(|(o, own)| (o, OrganMargins { own, other: None })),
        }
    }

    /// The calibrated quality index of a frame against `organ` ([`calibration`]), from each
    /// organ's own NRQ of the frame (`organ_nrq`, in set order): `None` without an organ, or
    /// when it has no scale.
    pub fn quality_index(&self, organ: Option<&OrganModel>, organ_nrq: &[f64]) -> Option<(&OrganModel, f64)> {
        let organ = organ?;
        let i = self.organs.iter().position(|x| std::ptr::eq(x, organ))?;
        let organ = &self.organs[i];
        Some((organ, organ.quality.as_ref()?.index(*organ_nrq.get(i)?)))
    }

    /// Per-patch log-likelihood: of one organ, or log-mean-exp over all organs. Allocates
    /// nothing once `scratch` holds `dim + components` values of the largest organ.
    pub fn loglik(&self, organ: Option<&OrganModel>, z: &[f64], scratch: &mut Vec<f64>) -> f64 {
        self.loglik_each(organ, z, scratch, &mut [])
    }

    /// [`ManifoldSet::loglik`], also writing every organ's own log-likelihood into `each` (one
    /// slot per organ, in set order; nothing when `each` is empty: then only what the score
    /// needs is computed).
    pub fn loglik_each(&self, organ: Option<&OrganModel>, z: &[f64], scratch: &mut Vec<f64>, each: &mut [f64]) -> f64 {
        match organ {
            Some(o) => {
                let mut own = None;
                for (x, slot) in self.organs.iter().zip(each.iter_mut()) {
                    *slot = x.loglik(z, scratch);
                    if std::ptr::eq(x, o) {
                        own = Some(*slot);
                    }
                }
                own.unwrap_or_else(|| o.loglik(z, scratch))
            }
            None => {
                // Streaming log-mean-exp: no buffer of per-organ values.
                let (mut max, mut sum) = (f64::NEG_INFINITY, 0.0);
                for (i, o) in self.organs.iter().enumerate() {
                    let v = o.loglik(z, scratch);
                    if let Some(slot) = each.get_mut(i) {
                        *slot = v;
                    }
                    if v > max {
                        sum = sum * (max - v).exp() + 1.0;
                        max = v;
                    } else {
                        sum += (v - max).exp();
                    }
                }
                max + sum.ln() - (self.organs.len() as f64).ln()
            }
        }
    }
}

impl OrganModel {
    /// Reads one organ's `.npz` file; the organ name is the file stem.
    pub fn load(path: impl AsRef<Path>) -> Result<OrganModel> {
        let path = path.as_ref();
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        OrganModel::from_npz(&name, file).with_context(|| format!("reading {}", path.display()))
    }

    /// Writes the organ as a reference-layout `.npz` file, replacing any file at `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        self.to_npz(file).with_context(|| format!("writing {}", path.display()))
    }
}
