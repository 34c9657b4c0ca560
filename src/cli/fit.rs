use super::{ModelArg, progress};
use std::path::PathBuf;
use usq::Encoder;
use usq::fitting::{self, Calibration, FitStage};
use usq::manifold::calibration;
use usq::manifold::fit::FitSettings;

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

pub fn run(a: Args) -> usq::Result<bool> {
    if a.patches_per_image == 0 {
        usq::bail!(InvalidArgument, "--patches-per-image must be at least 1");
    }
    usq::encoder::check_threads(a.threads).map_err(|e| e.context("--threads"))?;
    let cal = match &a.calibration {
        Some(dir) => Calibration::Folder(dir.clone()),
        None => Calibration::HoldOut(a.holdout),
    };
    let organs = fitting::organ_folders(&a.root)?;
    // Every organ's frames are listed (and a bad hold-out refused) before the model loads.
    let jobs = organs.iter().map(|o| fitting::organ_job(o, &cal)).collect::<usq::Result<Vec<_>>>()?;
    let encoder = a.model.source().load(usq::EncoderOptions::batch(a.batch))?;
    let mut encoders: Vec<Encoder> = (0..a.threads).map(|_| encoder.fork()).collect::<usq::Result<_>>()?;
    drop(encoder);
    std::fs::create_dir_all(&a.out).map_err(|e| usq::Error::from_source(usq::ErrorKind::Io, &e))?;
    let settings = FitSettings { max_dim: a.pca_dim, components: a.components, seed: a.seed, ..Default::default() };
    for job in &jobs {
        if let Some(s) = usq::dataset::summarise_skipped(&job.skipped) {
            eprintln!("{}: skipped {} files: {s}", job.organ, job.skipped.len());
        }
        let bar = progress::bar(job.fit.len(), &format!("{} images encoded", job.organ));
        let mut stage = FitStage::Encoding;
        let fit = fitting::fit_organ_job(&mut encoders, job, a.patches_per_image, &settings, &mut |s, done, total| {
            if s != stage {
                stage = s;
                bar.reset();
                bar.set_length(total as u64);
                bar.set_message(format!("({} calibration frames scored)", job.organ));
            }
            bar.set_position(done as u64);
        });
        bar.finish_and_clear();
        let fit = fit?;
        let out = a.out.join(format!("{}.npz", job.organ));
        fit.model.save(&out)?;
        let rep = &fit.report;
        let scale = match &fit.model.quality {
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
                job.calibration.len(),
                calibration::MIN_FRAMES
            ),
        };
        println!(
            "{}: {} images, {} patches, PCA {} (explains {:.1}% of variance), GMM {} components, EM {} iterations{}, mean log-likelihood {:.3}{scale} -> {}",
            job.organ,
            fit.frames,
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
