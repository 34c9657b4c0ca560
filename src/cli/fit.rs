use super::{ModelArg, progress};
use std::path::{Path, PathBuf};
use usq::checks::FrameMeasures;
use usq::dataset::{self, ImageFile};
use usq::manifold::calibration::{self, QualityScale};
use usq::manifold::fit::{FitSettings, clean_stats, fit_organ};
use usq::{Context, Encoder, GrayFrame, ManifoldSet, OrganModel, ScoreOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Folder with one sub-folder of clean images per organ (the sub-folder name is the organ;
    /// its images are found recursively).
    #[arg(value_name = "ROOT")]
    root: PathBuf,
    /// Output folder for <Organ>.npz.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Grid patches per image (a spatially spread subset; with few, the spread favours the
    /// frame's corners, often the empty surround of the sector).
    #[arg(long, default_value_t = 12)]
    patches_per_image: usize,
    /// Upper bound of the PCA dimension.
    #[arg(long, default_value_t = 128)]
    pca_dim: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 8)]
    components: usize,
    /// Seed of the k-means initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per encoder run.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Images encoded at once, each on its own thread (the model is loaded once).
    #[arg(long, default_value_t = 1, value_name = "T")]
    threads: usize,
    /// Share of each organ's images (the last in sorted order) held out of the fit: their NRQs
    /// make the scale of the calibrated quality index. 0 writes no scale.
    #[arg(long, default_value_t = calibration::HOLDOUT_SHARE, value_name = "F", conflicts_with = "calibration")]
    holdout: f64,
    /// A folder laid out as ROOT (one sub-folder per organ) of other clean images for the
    /// quality scale, instead of holding images of ROOT out of the fit.
    #[arg(long, value_name = "DIR")]
    calibration: Option<PathBuf>,
}

fn sorted_dirs(dir: &Path) -> usq::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// The images below one organ's folder, with what was skipped said on stderr.
fn organ_images(dir: &Path) -> usq::Result<Vec<ImageFile>> {
    let list = dataset::collect(&[dir.to_path_buf()])?;
    if let Some(s) = list.skipped_summary() {
        eprintln!("{}: skipped {} files: {s}", dir.display(), list.skipped.len());
    }
    Ok(list.images)
}

/// One image's checks measures and its patches' descriptors.
fn encode(encoder: &mut Encoder, image: &ImageFile, patches: usize) -> usq::Result<(FrameMeasures, Vec<Vec<f64>>)> {
    let frame = GrayFrame::open(&image.path)?;
    let measures = usq::checks::measure(&frame.pixels, frame.width, frame.height);
    let (padded, grid) = usq::quality::nrq_patches(&frame, Some(patches))?;
    let z = usq::quality::patch_descriptors(encoder, &padded, &grid)
        .with_context(|| format!("encoding {}", image.path.display()))?;
    Ok((measures, z))
}

/// Whole-frame NRQ of one clean image against the organ alone, as `usq score --organ` gives it.
fn clean_nrq(encoder: &mut Encoder, organ: &ManifoldSet, image: &ImageFile) -> usq::Result<f64> {
    let frame = GrayFrame::open(&image.path)?;
    usq::quality::score(encoder, organ, &frame, &ScoreOptions::default())
        .map(|r| r.nrq)
        .with_context(|| format!("scoring {}", image.path.display()))
}

/// Runs `work` over `images` on the encoders, stopping at the first error.
fn each<R: Send>(
    encoders: &mut [Encoder],
    images: &[ImageFile],
    what: &str,
    work: impl Fn(&mut Encoder, &ImageFile) -> usq::Result<R> + Sync,
) -> usq::Result<Vec<R>> {
    let bar = progress::bar(images.len(), what);
    let mut out = Vec::with_capacity(images.len());
    let mut first_error = None;
    dataset::map_ordered(encoders, images, work, |_, r| {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

pub fn run(a: Args) -> usq::Result<bool> {
    if a.patches_per_image == 0 {
        usq::bail!(InvalidArgument, "--patches-per-image must be at least 1");
    }
    if !(1..=usq::encoder::MAX_THREADS).contains(&a.threads) {
        usq::bail!(InvalidArgument, "--threads must be 1 to {}, not {}", usq::encoder::MAX_THREADS, a.threads);
    }
    if !(0.0..1.0).contains(&a.holdout) {
        usq::bail!(InvalidArgument, "--holdout must be at least 0 and below 1, not {}", a.holdout);
    }
    let organs = sorted_dirs(&a.root)?;
    if organs.is_empty() {
        usq::bail!(InvalidArgument, "{} has no organ sub-folders", a.root.display());
    }
    let encoder = a.model.source().load(usq::EncoderOptions::batch(a.batch))?;
    let mut encoders: Vec<Encoder> = (0..a.threads).map(|_| encoder.fork()).collect::<usq::Result<_>>()?;
    drop(encoder);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let settings = FitSettings { max_dim: a.pca_dim, components: a.components, seed: a.seed, ..Default::default() };
    for dir in organs {
        let organ = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut images = organ_images(&dir)?;
        if images.is_empty() {
            usq::bail!(InvalidArgument, "organ folder {} holds no images", dir.display());
        }
        let held_out = match &a.calibration {
            Some(root) => {
                let d = root.join(&organ);
                if d.is_dir() { organ_images(&d)? } else { Vec::new() }
            }
            None => {
                let k = calibration::holdout(images.len(), a.holdout);
                images.split_off(images.len() - k)
            }
        };
        let encoded = each(&mut encoders, &images, &format!("{organ} images encoded"), |e, img| {
            encode(e, img, a.patches_per_image)
        })?;
        let (mut samples, mut measures, mut patches_of) = (Vec::new(), Vec::new(), Vec::new());
        for (m, z) in encoded {
            measures.push(m);
            patches_of.push(z.len());
            samples.extend(z.into_iter().flatten());
        }
        let features = usq::contract::DESCRIPTOR_LEN;
        let (mut model, rep) =
            fit_organ(&organ, &samples, features, &settings).with_context(|| format!("fitting organ {organ}"))?;
        // The acquisition checks' thresholds derive from the same clean frames (see usq::checks).
        model.clean = Some(
            clean_stats(&model, &measures, &samples, features, &patches_of)
                .with_context(|| format!("clean statistics of organ {organ}"))?,
        );
        model.quality = quality_scale(&mut encoders, &model, &held_out)?;
        let out = a.out.join(format!("{organ}.npz"));
        model.save(&out)?;
        let scale = match &model.quality {
            Some(q) => {
                let v = q.values();
                format!(
                    ", quality scale from {} calibration frames (NRQ {:.1} to {:.1}, median {:.1})",
                    v.len(),
                    v[0],
                    v[v.len() - 1],
                    v[v.len() / 2]
                )
            }
            None => format!(
                ", no quality scale ({} calibration frames; at least {} needed)",
                held_out.len(),
                calibration::MIN_FRAMES
            ),
        };
        println!(
            "{organ}: {} images, {} patches, PCA {} (explains {:.1}% of variance), GMM {} components, EM {} iterations{}, mean log-likelihood {:.3}{scale} -> {}",
            images.len(),
            rep.samples,
            rep.dim,
            100.0 * rep.explained_variance,
            settings.components,
            rep.em_iterations,
            if rep.converged { "" } else { " (not converged)" },
            rep.mean_loglik,
            out.display()
        );
    }
    Ok(true)
}

/// The organ's quality scale from its held-out images' whole-frame NRQs; `None` with too few.
fn quality_scale(
    encoders: &mut [Encoder],
    model: &OrganModel,
    held_out: &[ImageFile],
) -> usq::Result<Option<QualityScale>> {
    if held_out.len() < calibration::MIN_FRAMES {
        return Ok(None);
    }
    let alone = ManifoldSet { organs: vec![model.clone()] };
    let what = format!("{} held-out images scored", model.name);
    let nrq = each(encoders, held_out, &what, |e, img| clean_nrq(e, &alone, img))?;
    QualityScale::new(nrq).map(Some).with_context(|| format!("quality scale of organ {}", model.name))
}
