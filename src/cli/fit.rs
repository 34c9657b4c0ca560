use super::ModelArg;
use std::path::{Path, PathBuf};
use usq::manifold::fit::{FitSettings, clean_stats, fit_organ};
use usq::{Context, GrayFrame};

#[derive(clap::Args)]
pub struct Args {
    /// Folder with one sub-folder of clean images per organ (the sub-folder name is the organ).
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
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

fn sorted_entries(dir: &Path) -> usq::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

pub fn run(a: Args) -> usq::Result<bool> {
    if a.patches_per_image == 0 {
        usq::bail!(InvalidArgument, "--patches-per-image must be at least 1");
    }
    let organs: Vec<PathBuf> = sorted_entries(&a.root)?.into_iter().filter(|p| p.is_dir()).collect();
    if organs.is_empty() {
        usq::bail!(InvalidArgument, "{} has no organ sub-folders", a.root.display());
    }
    let mut encoder = a.model.source().load(usq::EncoderOptions::batch(a.batch))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let settings = FitSettings { max_dim: a.pca_dim, components: a.components, seed: a.seed, ..Default::default() };
    for dir in organs {
        let organ = dir.file_name().unwrap().to_string_lossy().into_owned();
        let images: Vec<PathBuf> = sorted_entries(&dir)?
            .into_iter()
            .filter(|p| {
                p.extension().is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().to_str().unwrap_or("")))
            })
            .collect();
        if images.is_empty() {
            usq::bail!(InvalidArgument, "organ folder {} holds no images", dir.display());
        }
        let (mut samples, mut measures, mut patches_of) = (Vec::new(), Vec::new(), Vec::new());
        for (i, path) in images.iter().enumerate() {
            let frame = GrayFrame::open(path)?;
            measures.push(usq::checks::measure(&frame.pixels, frame.width, frame.height));
            let (padded, patches) = usq::quality::nrq_patches(&frame, Some(a.patches_per_image))?;
            patches_of.push(patches.len());
            for z in usq::quality::patch_descriptors(&mut encoder, &padded, &patches)
                .with_context(|| format!("encoding {}", path.display()))?
            {
                samples.extend(z);
            }
            if (i + 1) % 50 == 0 || i + 1 == images.len() {
                eprintln!("{organ}: {}/{} images encoded", i + 1, images.len());
            }
        }
        let features = usq::contract::DESCRIPTOR_LEN;
        let (mut model, rep) =
            fit_organ(&organ, &samples, features, &settings).with_context(|| format!("fitting organ {organ}"))?;
        // The acquisition checks' thresholds derive from the same clean frames (see usq::checks).
        model.clean = Some(
            clean_stats(&model, &measures, &samples, features, &patches_of)
                .with_context(|| format!("clean statistics of organ {organ}"))?,
        );
        let out = a.out.join(format!("{organ}.npz"));
        model.save(&out)?;
        println!(
            "{organ}: {} images, {} patches, PCA {} (explains {:.1}% of variance), GMM {} components, EM {} iterations{}, mean log-likelihood {:.3} -> {}",
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
