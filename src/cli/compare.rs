use super::ModelArg;
use std::path::PathBuf;
use usq::GrayFrame;

#[derive(clap::Args)]
pub struct Args {
    /// Reference image.
    #[arg(value_name = "REF")]
    reference: PathBuf,
    /// Image to compare with the reference.
    #[arg(value_name = "IMG")]
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
    /// One JSON object.
    #[arg(long)]
    json: bool,
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

pub fn run(a: Args) -> usq::Result<bool> {
    let reference = GrayFrame::open(&a.reference)?;
    let image = GrayFrame::open(&a.image)?;
    let weights = match (&a.weights, a.weighted) {
        (Some(path), _) => Some(usq::UlpipsWeights::from_path(path)?),
        (None, true) => Some(usq::defaults::ulpips_weights()?),
        (None, false) => None,
    };
    let mut scorer = usq::Scorer::new(&a.model.source(), usq::ManifoldSource::None, usq::EncoderOptions::batch(1))?;
    if let Some(w) = weights {
        scorer.set_ulpips_weights(w)?;
    }
    let r = scorer.compare(&reference, &image)?;
    if a.json {
        let line = Line {
            reference: a.reference.display().to_string(),
            img: a.image.display().to_string(),
            ulpips: r.ulpips,
            ulpips_weighted: r.ulpips_weighted,
            layers: &r.layers,
        };
        println!("{}", serde_json::to_string(&line).expect("plain data serialises"));
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
    Ok(true)
}
