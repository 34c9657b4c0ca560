//! Organ manifolds fitted from folders of clean frames, as `usq fit-nrq` and the Python
//! `usq.fit_manifold` do it: which folders are organs, which frames fit and which make the
//! quality index's scale, and the fit itself (descriptors on several threads, then the pure
//! maths of [`crate::manifold::fit`]).

use crate::checks::FrameMeasures;
use crate::contract::DESCRIPTOR_LEN;
use crate::dataset::{self, ImageFile};
use crate::encoder::Encoder;
use crate::error::{Context, Result};
use crate::imaging::frame::GrayFrame;
use crate::manifold::calibration::{self, QualityScale};
use crate::manifold::fit::{FitReport, FitSettings, clean_stats, fit_organ};
use crate::manifold::{ManifoldSet, OrganModel};
use crate::quality::{self, ScoreOptions};
use std::path::{Path, PathBuf};

/// One organ of a fitting root: a sub-folder, named as the organ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganFolder {
    /// The organ's name (the sub-folder's name).
    pub organ: String,
    /// The sub-folder.
    pub dir: PathBuf,
}

/// The organ sub-folders of `root`, sorted by name (hidden folders left out); an error when
/// there are none.
pub fn organ_folders(root: &Path) -> Result<Vec<OrganFolder>> {
    let mut v: Vec<OrganFolder> = std::fs::read_dir(root)
        .with_context(|| format!("listing {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|dir| {
            let organ = dir.file_name()?.to_str()?.to_string();
            (!organ.starts_with('.')).then_some(OrganFolder { organ, dir })
        })
        .collect();
    v.sort_by(|a, b| a.organ.cmp(&b.organ));
    if v.is_empty() {
        crate::bail!(InvalidArgument, "{} has no organ sub-folders", root.display());
    }
    Ok(v)
}

/// Where an organ's quality scale comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Calibration {
    /// This share of the organ's frames, the last in sorted order, held out of the fit
    /// ([`calibration::holdout`]); 0 for no scale.
    HoldOut(f64),
    /// Another root laid out the same way (one sub-folder per organ) of clean frames; every
    /// frame of the organ's folder fits. An organ without a folder there gets no scale.
    Folder(PathBuf),
}

impl Default for Calibration {
    fn default() -> Calibration {
        Calibration::HoldOut(calibration::HOLDOUT_SHARE)
    }
}

/// The frames of one organ's fit and of its scale, and what was left out of the folders.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganJob {
    /// The organ.
    pub organ: String,
    /// Frames the manifold is fitted on.
    pub fit: Vec<ImageFile>,
    /// Frames whose NRQs make the quality scale (none: no scale).
    pub calibration: Vec<ImageFile>,
    /// Files under the folders that are not frames.
    pub skipped: Vec<dataset::Skipped>,
}

/// An organ's job: its frames (recursively, as [`dataset::collect`]) and the calibration ones.
pub fn organ_job(folder: &OrganFolder, calibration: &Calibration) -> Result<OrganJob> {
    let mut list = dataset::collect(std::slice::from_ref(&folder.dir))?;
    if list.images.is_empty() {
        crate::bail!(InvalidArgument, "organ folder {} holds no images", folder.dir.display());
    }
    let calibration = match calibration {
        Calibration::HoldOut(share) => {
            if !(0.0..1.0).contains(share) {
                crate::bail!(InvalidArgument, "the hold-out share must be at least 0 and below 1, not {share}");
            }
            let k = calibration::holdout(list.images.len(), *share);
            list.images.split_off(list.images.len() - k)
        }
        Calibration::Folder(root) => {
            let dir = root.join(&folder.organ);
            if dir.is_dir() {
                let mut cal = dataset::collect(&[dir])?;
                list.skipped.append(&mut cal.skipped);
                cal.images
            } else {
                Vec::new()
            }
        }
    };
    Ok(OrganJob { organ: folder.organ.clone(), fit: list.images, calibration, skipped: list.skipped })
}

/// What a fit is at, for a progress display: frames done of a total, per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitStage {
    /// Encoding the fit frames' patches.
    Encoding,
    /// Scoring the calibration frames against the fitted organ.
    Calibrating,
}

/// A fitted organ and how the fit went.
#[derive(Debug, Clone)]
pub struct OrganFit {
    /// The organ model, with its clean statistics and (with enough calibration frames) its scale.
    pub model: OrganModel,
    /// PCA and EM figures.
    pub report: FitReport,
    /// Frames fitted.
    pub frames: usize,
}

/// Fits one organ: `patches_per_image` spread patches of each fit frame encoded on the
/// `encoders` (one per thread, e.g. [`Encoder::fork`]s), the PCA + GMM, the acquisition checks'
/// clean statistics, and the quality scale from the whole-frame NRQs of the calibration frames
/// against the new organ alone (none with fewer than [`calibration::MIN_FRAMES`]). The first
/// frame that cannot be read stops the fit, named in the error.
pub fn fit_organ_job(
    encoders: &mut [Encoder],
    job: &OrganJob,
    patches_per_image: usize,
    settings: &FitSettings,
    progress: &mut dyn FnMut(FitStage, usize, usize),
) -> Result<OrganFit> {
    if patches_per_image == 0 {
        crate::bail!(InvalidArgument, "patches per image must be at least 1");
    }
    let encode = |e: &mut Encoder, image: &ImageFile| -> Result<(FrameMeasures, Vec<Vec<f64>>)> {
        let frame = GrayFrame::open(&image.path)?;
        let measures = crate::checks::measure(&frame.pixels, frame.width, frame.height);
        let (padded, grid) = quality::nrq_patches(&frame, Some(patches_per_image))?;
        let z = quality::patch_descriptors(e, &padded, &grid)
            .with_context(|| format!("encoding {}", image.path.display()))?;
        Ok((measures, z))
    };
    let encoded = run_all(encoders, &job.fit, encode, &mut |done, total| progress(FitStage::Encoding, done, total))?;
    let (mut samples, mut measures, mut patches_of) = (Vec::new(), Vec::new(), Vec::new());
    for (m, z) in encoded {
        measures.push(m);
        patches_of.push(z.len());
        samples.extend(z.into_iter().flatten());
    }
    let (mut model, report) = fit_organ(&job.organ, &samples, DESCRIPTOR_LEN, settings)
        .with_context(|| format!("fitting organ {}", job.organ))?;
    // The acquisition checks' thresholds derive from the same clean frames (see crate::checks).
    model.clean = Some(
        clean_stats(&model, &measures, &samples, DESCRIPTOR_LEN, &patches_of)
            .with_context(|| format!("clean statistics of organ {}", job.organ))?,
    );
    if job.calibration.len() >= calibration::MIN_FRAMES {
        let alone = ManifoldSet { organs: vec![model.clone()] };
        let score = |e: &mut Encoder, image: &ImageFile| -> Result<f64> {
            let frame = GrayFrame::open(&image.path)?;
            quality::score(e, &alone, &frame, &ScoreOptions::default())
                .map(|r| r.nrq)
                .with_context(|| format!("scoring {}", image.path.display()))
        };
        let nrq = run_all(encoders, &job.calibration, score, &mut |done, total| {
            progress(FitStage::Calibrating, done, total)
        })?;
        model.quality = Some(QualityScale::new(nrq).with_context(|| format!("quality scale of organ {}", job.organ))?);
    }
    Ok(OrganFit { model, report, frames: job.fit.len() })
}

/// `work` over `images` on the encoders, in order, stopping at the first error.
fn run_all<R: Send>(
    encoders: &mut [Encoder],
    images: &[ImageFile],
    work: impl Fn(&mut Encoder, &ImageFile) -> Result<R> + Sync,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(images.len());
    let mut first_error = None;
    dataset::map_ordered(encoders, images, work, |i, r| {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        progress(i + 1, images.len());
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
