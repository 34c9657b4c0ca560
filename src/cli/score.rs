use super::{ModelArg, report};
use std::path::PathBuf;
use usq::{Context, GrayFrame, ManifoldSource, ScoreOptions, Scorer};

#[derive(clap::Args)]
pub struct Args {
    /// Images to score (PNG, JPEG, BMP, TIFF; gray or colour, 8 or 16 bit).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArg,
    /// Manifold folder of <Organ>.npz files; default: models/nrq.
    #[arg(long, value_name = "DIR")]
    manifold: Option<PathBuf>,
    /// Score against this organ only (default: all organs, combined by log-mean-exp).
    #[arg(long, value_name = "NAME")]
    organ: Option<String>,
    /// Score at most K patches, a deterministic spatially spread subset of the grid.
    #[arg(long, value_name = "K")]
    max_patches: Option<usize>,
    /// Write a heatmap PNG (with several images, the image's stem is appended).
    #[arg(long, value_name = "OUT.png")]
    heatmap: Option<PathBuf>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Images per encoder run.
    #[arg(long, default_value_t = 4, value_name = "B")]
    batch: usize,
    /// Threads for the encoder's matrix products.
    #[arg(long, default_value_t = 1, value_name = "T")]
    threads: usize,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    path: String,
    nrq: f64,
    organ: Option<&'a str>,
    patches: &'a [usq::quality::PatchScore],
    faults: usq::checks::Faults,
    checks: ChecksLine<'a>,
}

/// The checks' values and the organ whose clean statistics judged them.
#[derive(serde::Serialize)]
struct ChecksLine<'a> {
    organ: Option<&'a str>,
    #[serde(flatten)]
    values: &'a usq::checks::FrameChecks,
}

/// The faults as a text column: names joined by commas, `-` for none.
pub fn fault_column(faults: usq::checks::Faults) -> String {
    if faults.is_empty() { "-".into() } else { faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(",") }
}

fn heatmap_path(base: &std::path::Path, image: &std::path::Path, many: bool) -> PathBuf {
    if !many {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let img = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    base.with_file_name(format!("{stem}-{img}.png"))
}

pub fn run(a: Args) -> usq::Result<bool> {
    let opts = ScoreOptions { organ: a.organ.clone(), max_patches: a.max_patches };
    let mut scorer = Scorer::new(
        &a.model.source(),
        ManifoldSource::dir_or_default(a.manifold.clone()),
        usq::EncoderOptions { batch: a.batch, threads: a.threads },
    )?;
    scorer.check_options(&opts)?;
    if let Some(w) = scorer.manifolds().and_then(|m| m.clean_stats_warning(opts.organ.as_deref())) {
        eprintln!("warning: {w}");
    }
    if !a.json {
        println!("{:<40} {:>12} {:>12} {:>8} {:>6}  faults", "image", "nrq", "organ", "patches", "worst");
    }
    let mut all_ok = true;
    for path in &a.images {
        let result = GrayFrame::open(path).and_then(|f| {
            let r = scorer.score(&f, &opts).with_context(|| format!("scoring {}", path.display()))?;
            if let Some(base) = &a.heatmap {
                let out = heatmap_path(base, path, a.images.len() > 1);
                Scorer::heatmap(&f, &r)
                    .save(&out)
                    .map_err(|e| usq::Error::from_source(usq::ErrorKind::Io, &e))
                    .with_context(|| format!("writing heatmap {}", out.display()))?;
            }
            Ok(r)
        });
        match result {
            Ok(r) if a.json => {
                let line = Line {
                    path: path.display().to_string(),
                    nrq: r.nrq,
                    organ: r.organ.as_deref(),
                    patches: &r.patches,
                    faults: r.faults,
                    checks: ChecksLine { organ: r.checks_organ.as_deref(), values: &r.checks },
                };
                println!("{}", serde_json::to_string(&line).expect("plain data serialises"));
            }
            Ok(r) => println!(
                "{:<40} {:>12.4} {:>12} {:>8} {:>6}  {}",
                path.display(),
                r.nrq,
                r.organ.as_deref().unwrap_or("(all)"),
                r.patches.len(),
                r.worst.len(),
                fault_column(r.faults)
            ),
            Err(e) => {
                report(&e);
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}
