use super::progress;
use super::{ModelArg, report};
use std::path::{Path, PathBuf};
use usq::dataset::{self, ImageFile};
use usq::{Context, GrayFrame, ManifoldSource, ScoreOptions, ScoreReport, Scorer};

#[derive(clap::Args)]
pub struct Args {
    /// Images (PNG, JPEG, BMP, TIFF; gray or colour, 8 or 16 bit) and folders of them, walked
    /// recursively (image files only, sorted; what is left out is counted on stderr).
    #[arg(required = true, value_name = "IMAGE|FOLDER")]
    inputs: Vec<PathBuf>,
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
    /// Write a heatmap PNG (with several images, each image's path below its folder is appended
    /// to the name).
    #[arg(long, value_name = "OUT.png")]
    heatmap: Option<PathBuf>,
    /// One JSON object per line.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header row, for spreadsheets.
    #[arg(long)]
    csv: bool,
    /// Images per encoder run.
    #[arg(long, default_value_t = 4, value_name = "B")]
    batch: usize,
    /// Threads: images scored at once, each on its own thread (the model is loaded once); with
    /// fewer images than threads, each image's patches are split over the spare ones.
    #[arg(long, default_value_t = 1, value_name = "T")]
    threads: usize,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    path: String,
    nrq: f64,
    /// The calibrated index beside NRQ (0-100), `null` without a scale for the organ.
    quality: Option<f64>,
    quality_organ: Option<&'a str>,
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

/// The faults in the fixed width of the text table: the first (the one that explains the
/// others) and how many more; the full list is in `--json` and `--csv`.
fn fault_cell(faults: usq::checks::Faults) -> String {
    let mut it = faults.iter();
    match (it.next(), it.count()) {
        (None, _) => "-".into(),
        (Some(f), 0) => f.name().into(),
        (Some(f), more) => format!("{}+{more}", f.name()),
    }
}

/// Width of [`fault_cell`]: the longest fault name and `+6`.
fn fault_width() -> usize {
    usq::checks::Fault::ALL.iter().map(|f| f.name().len()).max().unwrap_or(0) + 2
}

fn heatmap_path(base: &Path, image: &ImageFile, many: bool) -> PathBuf {
    if !many {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // The path below the folder, so images of one name in two sub-folders do not overwrite.
    let rel = image.relative.with_extension("");
    let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    base.with_file_name(format!("{stem}-{}.png", rel.join("_")))
}

const CSV_HEADER: [&str; 15] = [
    "path",
    "nrq",
    "quality",
    "quality_organ",
    "organ",
    "patches",
    "worst",
    "faults",
    "checks_organ",
    "echo_level",
    "clipped_share",
    "dead_width",
    "pixel_std",
    "organ_margin",
    "judged",
];

fn csv_row(path: &str, r: &ScoreReport) -> Vec<String> {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let m = &r.checks.measures;
    vec![
        path.to_string(),
        r.nrq.to_string(),
        opt(r.quality.as_ref().map(|q| q.index)),
        r.quality.as_ref().map(|q| q.organ.clone()).unwrap_or_default(),
        r.organ.clone().unwrap_or_default(),
        r.patches.len().to_string(),
        r.worst.len().to_string(),
        // Faults joined by ';' so the cell needs no quoting in most readers.
        r.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(";"),
        r.checks_organ.clone().unwrap_or_default(),
        m.echo_level.to_string(),
        m.clipped_share.to_string(),
        m.dead_width.to_string(),
        m.pixel_std.to_string(),
        opt(r.checks.organ_margin),
        r.checks.judged.to_string(),
    ]
}

pub(crate) fn csv_line(cells: &[impl AsRef<[u8]>]) -> String {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    w.write_record(cells).expect("writing to memory");
    let mut s = String::from_utf8(w.into_inner().expect("writing to memory")).expect("UTF-8 cells");
    s.pop();
    s
}

fn score_one(
    scorer: &mut Scorer,
    image: &ImageFile,
    opts: &ScoreOptions,
    a: &Args,
    many: bool,
) -> usq::Result<ScoreReport> {
    let path = &image.path;
    let f = GrayFrame::open(path)?;
    let r = scorer.score(&f, opts).with_context(|| format!("scoring {}", path.display()))?;
    if let Some(base) = &a.heatmap {
        let out = heatmap_path(base, image, many);
        Scorer::heatmap(&f, &r)
            .save(&out)
            .map_err(|e| usq::Error::from_source(usq::ErrorKind::Io, &e))
            .with_context(|| format!("writing heatmap {}", out.display()))?;
    }
    Ok(r)
}

pub fn run(a: Args) -> usq::Result<bool> {
    let opts = ScoreOptions { organ: a.organ.clone(), max_patches: a.max_patches };
    usq::encoder::check_threads(a.threads).map_err(|e| e.context("--threads"))?;
    let list = dataset::collect(&a.inputs)?;
    if let Some(s) = list.skipped_summary() {
        eprintln!("skipped {} files: {s}", list.skipped.len());
    }
    if list.images.is_empty() {
        usq::bail!(InvalidArgument, "no image files found in {}", describe_inputs(&a.inputs));
    }
    let scorer = Scorer::new(
        &a.model.source(),
        ManifoldSource::dir_or_default(a.manifold.clone()),
        usq::EncoderOptions { batch: a.batch, threads: 1 },
    )?;
    scorer.check_options(&opts)?;
    let organ_width = scorer.manifolds().map_or(0, |m| m.organs.iter().map(|o| o.name.len()).max().unwrap_or(0)).max(5);
    if let Some(w) = scorer.manifolds().and_then(|m| m.clean_stats_warning(opts.organ.as_deref())) {
        eprintln!("warning: {w}");
    }
    let fw = fault_width();
    if a.csv {
        println!("{}", csv_line(&CSV_HEADER));
    } else if !a.json {
        println!(
            "{:>10} {:>7} {:<organ_width$} {:>7} {:>5} {:<fw$} image",
            "nrq", "quality", "organ", "patches", "worst", "faults"
        );
    }
    let many = list.images.len() > 1;
    let mut scorers = scorer.for_job(a.threads, list.images.len())?;
    drop(scorer);
    let bar = progress::bar(list.images.len(), "images");
    let mut failed = 0usize;
    dataset::map_ordered(
        &mut scorers,
        &list.images,
        |s, image| score_one(s, image, &opts, &a, many),
        |i, result| {
            let path = list.images[i].path.display().to_string();
            match result {
                Ok(r) if a.json => {
                    let line = Line {
                        path,
                        nrq: r.nrq,
                        quality: r.quality.as_ref().map(|q| q.index),
                        quality_organ: r.quality.as_ref().map(|q| q.organ.as_str()),
                        organ: r.organ.as_deref(),
                        patches: &r.patches,
                        faults: r.faults,
                        checks: ChecksLine { organ: r.checks_organ.as_deref(), values: &r.checks },
                    };
                    progress::println(&bar, &serde_json::to_string(&line).expect("plain data serialises"));
                }
                Ok(r) if a.csv => progress::println(&bar, &csv_line(&csv_row(&path, &r))),
                Ok(r) => {
                    let quality = r.quality.as_ref().map_or("-".into(), |q| format!("{:.1}", q.index));
                    let line = format!(
                        "{:>10.4} {:>7} {:<organ_width$} {:>7} {:>5} {:<fw$} {path}",
                        r.nrq,
                        quality,
                        r.organ.as_deref().unwrap_or("(all)"),
                        r.patches.len(),
                        r.worst.len(),
                        fault_cell(r.faults)
                    );
                    progress::println(&bar, &line);
                }
                Err(e) => {
                    bar.suspend(|| report(&e));
                    failed += 1;
                }
            }
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    if many {
        let scored = list.images.len() - failed;
        eprintln!(
            "scored {scored} of {} images in {:.1} s{}",
            list.images.len(),
            bar.elapsed().as_secs_f64(),
            if failed > 0 { format!(", {failed} failed (above)") } else { String::new() }
        );
    }
    Ok(failed == 0)
}

pub(crate) fn describe_inputs(inputs: &[PathBuf]) -> String {
    inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
