use super::{ModelArg, progress, report};
use std::path::PathBuf;
use usq::dataset::{self, ImageFile};
use usq::{CompareReport, Context, GrayFrame, Scorer};

#[derive(clap::Args)]
pub struct Args {
    /// Reference image, or a folder of references.
    #[arg(value_name = "REF|REF_DIR")]
    reference: PathBuf,
    /// Image to compare with the reference, or a folder of images: each is paired with the
    /// reference at the same path below REF_DIR, the extension aside (x.png with x.jpg).
    #[arg(value_name = "IMG|IMG_DIR")]
    image: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Also the task-anchored weighted uLPIPS (`ulpips_weighted`), beside the reference value,
    /// with the shipped weights (models/ulpips_weights.json) or those of --weights.
    #[arg(long)]
    weighted: bool,
    /// A uLPIPS weights file fitted for the model's weights (implies --weighted).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// One JSON object per pair.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header row, one row per pair.
    #[arg(long)]
    csv: bool,
    /// Threads: pairs compared at once, each on its own thread (the model is loaded once); with
    /// fewer pairs than threads, a pair's two frames are encoded at once.
    #[arg(long, default_value_t = 1, value_name = "T")]
    threads: usize,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(rename = "ref")]
    reference: String,
    img: String,
    ulpips: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ulpips_weighted: Option<f64>,
    layers: &'a [usq::quality::LayerReport],
}

impl<'a> Line<'a> {
    fn json(reference: &std::path::Path, img: &std::path::Path, r: &'a CompareReport) -> String {
        let line = Line {
            reference: reference.display().to_string(),
            img: img.display().to_string(),
            ulpips: r.ulpips,
            ulpips_weighted: r.ulpips_weighted,
            layers: &r.layers,
        };
        serde_json::to_string(&line).expect("plain data serialises")
    }
}

fn compare(scorer: &mut Scorer, reference: &ImageFile, image: &ImageFile) -> usq::Result<CompareReport> {
    let r = GrayFrame::open(&reference.path)?;
    let i = GrayFrame::open(&image.path)?;
    scorer
        .compare(&r, &i)
        .with_context(|| format!("comparing {} with {}", image.path.display(), reference.path.display()))
}

fn csv_header(layers: usize) -> Vec<String> {
    let mut h: Vec<String> = ["ref", "img", "ulpips", "ulpips_weighted"].map(String::from).into();
    for k in 0..layers {
        h.push(format!("layer{k}_block"));
        h.push(format!("layer{k}_structure"));
        h.push(format!("layer{k}_gram"));
    }
    h
}

fn csv_row(reference: &str, image: &str, r: &CompareReport) -> Vec<String> {
    let mut row = vec![
        reference.into(),
        image.into(),
        r.ulpips.to_string(),
        r.ulpips_weighted.map(|w| w.to_string()).unwrap_or_default(),
    ];
    for l in &r.layers {
        row.extend([l.block.to_string(), l.structure.to_string(), l.gram.to_string()]);
    }
    row
}

fn print_single(a: &Args, r: &CompareReport) {
    if a.json {
        println!("{}", Line::json(&a.reference, &a.image, r));
    } else if a.csv {
        println!("{}", super::score::csv_line(&csv_header(r.layers.len())));
        println!(
            "{}",
            super::score::csv_line(&csv_row(&a.reference.display().to_string(), &a.image.display().to_string(), r))
        );
    } else {
        println!("reference  {}\nimage      {}\nuLPIPS     {:.6}", a.reference.display(), a.image.display(), r.ulpips);
        if let Some(w) = r.ulpips_weighted {
            println!("weighted   {w:.6}  (task-anchored weights; the reference value is uLPIPS)");
        }
        println!("{:>6} {:>12} {:>12}", "block", "structure", "gram");
        for l in &r.layers {
            println!("{:>6} {:>12.6} {:>12.6}", l.block, l.structure, l.gram);
        }
    }
}

/// Up to five paths, then how many more.
fn some_paths(files: &[ImageFile]) -> String {
    let mut s: Vec<String> = files.iter().take(5).map(|f| f.relative.display().to_string()).collect();
    if files.len() > 5 {
        s.push(format!("and {} more", files.len() - 5));
    }
    s.join(", ")
}

pub fn run(a: Args) -> usq::Result<bool> {
    let (ref_dir, img_dir) = (a.reference.is_dir(), a.image.is_dir());
    if ref_dir != img_dir {
        usq::bail!(
            InvalidArgument,
            "REF and IMG must both be files or both be folders ({} is a {}, {} a {})",
            a.reference.display(),
            if ref_dir { "folder" } else { "file" },
            a.image.display(),
            if img_dir { "folder" } else { "file" }
        );
    }
    usq::encoder::check_threads(a.threads).map_err(|e| e.context("--threads"))?;
    let pairs = if ref_dir {
        let p = dataset::pair(&a.reference, &a.image)?;
        if let Some(s) = p.skipped_summary() {
            eprintln!("skipped {} files: {s}", p.skipped.len());
        }
        if !p.only_reference.is_empty() {
            eprintln!("{} references have no image: {}", p.only_reference.len(), some_paths(&p.only_reference));
        }
        if !p.only_image.is_empty() {
            eprintln!("{} images have no reference: {}", p.only_image.len(), some_paths(&p.only_image));
        }
        if p.pairs.is_empty() {
            usq::bail!(
                InvalidArgument,
                "no image in {} pairs with one in {}",
                a.image.display(),
                a.reference.display()
            );
        }
        Some(p.pairs)
    } else {
        // Read first: a missing file fails before the model loads.
        std::fs::metadata(&a.reference).with_context(|| format!("reading {}", a.reference.display()))?;
        std::fs::metadata(&a.image).with_context(|| format!("reading {}", a.image.display()))?;
        None
    };
    let weights = match (&a.weights, a.weighted) {
        (Some(path), _) => Some(usq::UlpipsWeights::from_path(path)?),
        (None, true) => Some(usq::defaults::ulpips_weights()?),
        (None, false) => None,
    };
    let mut scorer = usq::Scorer::new(&a.model.source(), usq::ManifoldSource::None, usq::EncoderOptions::batch(1))?;
    if let Some(w) = weights {
        scorer.set_ulpips_weights(w)?;
    }
    // A pair is two encoder runs: two threads per pair at most.
    let threads_for = |pairs: usize| a.threads.min(2 * pairs);
    let Some(pairs) = pairs else {
        let file = |p: &PathBuf| ImageFile { path: p.clone(), relative: p.clone() };
        scorer.set_frame_threads(threads_for(1))?;
        let r = compare(&mut scorer, &file(&a.reference), &file(&a.image))?;
        print_single(&a, &r);
        return Ok(true);
    };
    let weighted = scorer_weighted(&a);
    if a.csv {
        println!("{}", super::score::csv_line(&csv_header(usq::contract::LAYER_BLOCKS.len())));
    } else if !a.json {
        println!("{:>10} {}pair", "ulpips", if weighted { format!("{:>10} ", "weighted") } else { String::new() });
    }
    let mut scorers = scorer.for_job(threads_for(pairs.len()), pairs.len())?;
    drop(scorer);
    let bar = progress::bar(pairs.len(), "pairs");
    let mut failed = 0usize;
    dataset::map_ordered(
        &mut scorers,
        &pairs,
        |s, (r, i)| compare(s, r, i),
        |k, result| {
            let (r, i) = &pairs[k];
            match result {
                Ok(c) if a.json => progress::println(&bar, &Line::json(&r.path, &i.path, &c)),
                Ok(c) if a.csv => progress::println(
                    &bar,
                    &super::score::csv_line(&csv_row(&r.path.display().to_string(), &i.path.display().to_string(), &c)),
                ),
                Ok(c) => {
                    let w = c.ulpips_weighted.map(|w| format!("{w:>10.6} ")).unwrap_or_default();
                    // The pair by its reference's relative path; the image's when it differs.
                    let name = if r.relative == i.relative {
                        r.relative.display().to_string()
                    } else {
                        format!("{} ~ {}", r.relative.display(), i.relative.display())
                    };
                    progress::println(&bar, &format!("{:>10.6} {w}{name}", c.ulpips));
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
    eprintln!(
        "compared {} of {} pairs in {:.1} s{}",
        pairs.len() - failed,
        pairs.len(),
        bar.elapsed().as_secs_f64(),
        if failed > 0 { format!(", {failed} failed (above)") } else { String::new() }
    );
    Ok(failed == 0)
}

fn scorer_weighted(a: &Args) -> bool {
    a.weighted || a.weights.is_some()
}
