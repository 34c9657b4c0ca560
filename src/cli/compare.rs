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
    layers: &'a [usq::quality::LayerReport],
}

pub fn run(a: Args) -> usq::Result<bool> {
    let reference = GrayFrame::open(&a.reference)?;
    let image = GrayFrame::open(&a.image)?;
    let mut scorer = usq::Scorer::new(&a.model.source(), usq::ManifoldSource::None, usq::EncoderOptions::batch(1))?;
    let r = scorer.compare(&reference, &image)?;
    if a.json {
        let line = Line {
            reference: a.reference.display().to_string(),
            img: a.image.display().to_string(),
            ulpips: r.ulpips,
            layers: &r.layers,
        };
        println!("{}", serde_json::to_string(&line).expect("plain data serialises"));
    } else {
        println!("reference  {}\nimage      {}\nuLPIPS     {:.6}", a.reference.display(), a.image.display(), r.ulpips);
        println!("{:>6} {:>12} {:>12}", "block", "structure", "gram");
        for l in &r.layers {
            println!("{:>6} {:>12.6} {:>12.6}", l.block, l.structure, l.gram);
        }
    }
    Ok(true)
}
