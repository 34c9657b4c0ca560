//! `usq bench`: encoder and NRQ timings on this machine, as a table or JSON lines.
//!
//! Three measurements, each on its own peak-memory mark where Linux lets us reset it:
//! - `forward`: one encoder run on `batch` patches of the frame;
//! - `nrq_frame`: the whole no-reference score of the frame (every grid patch, `batch` per
//!   run; decoding excluded), its patches split over `--threads` encoders as `usq score` does
//!   for one image ([`Scorer::set_frame_threads`]);
//! - `live` (with `--live-seconds`): the live engine fed at `--fps` under `--budget-ms`,
//!   latency from frame commit to result, with `--threads` encoders as `usq live` runs it.

use super::ModelArg;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use usq::engine::{Engine, EngineConfig};
use usq::imaging::pixel::{FrameLayout, PixelFormat};
use usq::{EncoderOptions, GrayFrame, ScoreOptions, Scorer};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Threads: for `forward`, tract's executor inside one encoder run; for `nrq_frame` and
    /// `live`, encoders splitting each frame's patches (as `usq score` on one image and
    /// `usq live` do).
    #[arg(long, default_value_t = 1, value_name = "T")]
    threads: usize,
    /// Images per encoder run.
    #[arg(long, default_value_t = 1, value_name = "B")]
    batch: usize,
    /// Timed encoder runs.
    #[arg(long, default_value_t = 50, value_name = "N")]
    iterations: usize,
    /// Timed whole-frame NRQ scores.
    #[arg(long, default_value_t = 5, value_name = "N")]
    frame_iterations: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3, value_name = "N")]
    warmup: usize,
    /// The frame to score (default: a seeded speckle frame of 800x540; timing does not
    /// depend on content).
    #[arg(long, value_name = "IMG")]
    image: Option<PathBuf>,
    /// Manifold folder; default: models/nrq.
    #[arg(long, value_name = "DIR")]
    manifold: Option<PathBuf>,
    /// Also run the live engine for this many seconds.
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    live_seconds: f64,
    /// Frame rate fed to the live engine.
    #[arg(long, default_value_t = 30.0, value_name = "F")]
    fps: f64,
    /// Latency budget of the live engine, in milliseconds.
    #[arg(long, default_value_t = 33.0, value_name = "MS")]
    budget_ms: f64,
    /// One JSON object per measurement.
    #[arg(long)]
    json: bool,
    /// Also print where an encoder run spends its time, by op kind.
    #[arg(long)]
    profile: bool,
    /// Run the model on tract's own ops only, without the project's (src/ops/): to see what
    /// they gain on this CPU.
    #[arg(long)]
    tract_ops_only: bool,
}

impl Args {
    fn scorer(&self, options: usq::EncoderOptions) -> usq::Result<Scorer> {
        let model = self.model.source();
        let manifolds = usq::ManifoldSource::dir_or_default(self.manifold.clone());
        if self.tract_ops_only {
            Scorer::with_encoder(model.load_tract_ops_only(options)?, manifolds)
        } else {
            Scorer::new(&model, manifolds, options)
        }
    }
}

#[derive(serde::Serialize)]
struct Record {
    kind: &'static str,
    model: String,
    threads: usize,
    batch: usize,
    iterations: usize,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    load_ms: f64,
    peak_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patches: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline_misses: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_pushed: Option<u64>,
    /// Live: patches scored per result, on average.
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_patches: Option<f64>,
}

impl Record {
    /// A measurement of `kind` from its timings, in milliseconds; the peak RSS is read now.
    fn timed(kind: &'static str, model: &str, a: &Args, times: &[f64], load_ms: f64) -> Record {
        Record {
            kind,
            model: model.to_string(),
            threads: a.threads,
            batch: a.batch,
            iterations: times.len(),
            p50_ms: percentile(times, 0.50),
            p99_ms: percentile(times, 0.99),
            mean_ms: times.iter().sum::<f64>() / times.len() as f64,
            load_ms,
            peak_rss_mb: peak_rss_mb(),
            patches: None,
            budget_ms: None,
            deadline_misses: None,
            frames_pushed: None,
            mean_patches: None,
        }
    }
}

pub fn run(a: Args) -> usq::Result<bool> {
    if a.iterations == 0 || a.frame_iterations == 0 {
        usq::bail!(InvalidArgument, "--iterations and --frame-iterations must be at least 1");
    }
    let options = EncoderOptions { batch: a.batch, threads: a.threads };
    let model_name = a.model.source().file().map_or_else(|| "(embedded)".into(), |p| p.display().to_string());
    let frame = match &a.image {
        Some(p) => GrayFrame::open(p)?,
        None => speckle_frame(800, 540),
    };
    let mut records = Vec::new();

    // Encoder runs on real patches of the frame.
    reset_peak_rss();
    let started = Instant::now();
    let mut scorer = a.scorer(options)?;
    let load_ms = ms(started.elapsed());
    let (padded, patches) = usq::quality::nrq_patches(&frame, None)?;
    let inputs: Vec<Vec<f32>> = (0..a.batch)
        .map(|i| {
            let mut buf = vec![0f32; 224 * 224];
            usq::imaging::preprocess::crop_patch(&padded, patches[i % patches.len()], &mut buf);
            buf
        })
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut times = Vec::with_capacity(a.iterations);
    for i in 0..a.warmup + a.iterations {
        let t = Instant::now();
        scorer.encoder_mut().run_with(&refs, |_, _| {})?;
        if i >= a.warmup {
            times.push(ms(t.elapsed()));
        }
    }
    records.push(Record::timed("forward", &model_name, &a, &times, load_ms));
    if a.profile {
        eprintln!("matrix-product kernels: {}", scorer.encoder_mut().matmul_kernels().join(", "));
        let ops = scorer.encoder_mut().profile(a.iterations.min(20))?;
        let total: f64 = ops.iter().map(|o| o.1).sum();
        eprintln!("profile, ms per encoder run by op kind (total {total:.2}):");
        for (op, t) in ops.iter().take(16) {
            eprintln!("  {t:8.3}  {:5.1} %  {op}", 100.0 * t / total);
        }
    }

    // Whole frames: the patches split over single-threaded encoders, as `usq score` does.
    if a.threads > 1 {
        drop(scorer);
        scorer = a.scorer(EncoderOptions { batch: a.batch, threads: 1 })?;
        scorer.set_frame_threads(a.threads)?;
    }
    reset_peak_rss();
    let opts = ScoreOptions::default();
    let mut times = Vec::with_capacity(a.frame_iterations);
    for i in 0..a.warmup.min(1) + a.frame_iterations {
        let t = Instant::now();
        let report = scorer.score(&frame, &opts)?;
        std::hint::black_box(report.nrq);
        if i >= a.warmup.min(1) {
            times.push(ms(t.elapsed()));
        }
    }
    let mut r = Record::timed("nrq_frame", &model_name, &a, &times, load_ms);
    r.patches = Some(patches.len());
    records.push(r);

    if a.live_seconds > 0.0 {
        drop(scorer);
        records.push(live(&a, options, &model_name, &frame)?);
    }

    for r in &records {
        if a.json {
            println!("{}", serde_json::to_string(r).expect("plain data serialises"));
        } else {
            let rss = r.peak_rss_mb.map_or("-".into(), |m| format!("{m:.0} MB"));
            let extra = match (r.patches, r.deadline_misses) {
                (Some(p), _) => format!("  {p} patches"),
                (_, Some(m)) => format!(
                    "  budget {:.0} ms, {m} misses of {} frames, {:.1} patches a frame",
                    r.budget_ms.unwrap_or(0.0),
                    r.frames_pushed.unwrap_or(0),
                    r.mean_patches.unwrap_or(0.0)
                ),
                _ => String::new(),
            };
            println!(
                "{:<9} p50 {:>8.2} ms  p99 {:>8.2} ms  mean {:>8.2} ms  load {:>6.0} ms  peak RSS {rss}{extra}",
                r.kind, r.p50_ms, r.p99_ms, r.mean_ms, r.load_ms
            );
        }
    }
    if !a.json {
        println!("model {model_name}, threads {}, batch {}", a.threads, a.batch);
    }
    Ok(true)
}

/// The live engine fed at `fps` for `live_seconds`: latency from commit to result.
fn live(a: &Args, options: EncoderOptions, model_name: &str, frame: &GrayFrame) -> usq::Result<Record> {
    reset_peak_rss();
    let started = Instant::now();
    let mut scorer = a.scorer(EncoderOptions { threads: 1, ..options })?;
    scorer.set_frame_threads(a.threads)?;
    let mut cfg = EngineConfig::for_frames(frame.width, frame.height);
    cfg.budget_ms = a.budget_ms;
    let engine = Engine::start(scorer, cfg)?;
    let load_ms = ms(started.elapsed());
    let layout = FrameLayout::packed(frame.width, frame.height, PixelFormat::Gray8);
    let t0 = Instant::now();
    let (mut latencies, mut patches) = (Vec::new(), 0u64);
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < a.live_seconds {
        engine.push(&frame.pixels, layout, t0.elapsed().as_micros() as u64)?;
        n += 1;
        let due = t0 + Duration::from_secs_f64(n as f64 / a.fps);
        while let Some(left) = due.checked_duration_since(Instant::now()) {
            match engine.results().recv_timeout(left) {
                Ok(r) => {
                    latencies.push(r.latency_ms as f64);
                    patches += u64::from(r.patches_scored);
                }
                Err(_) => break,
            }
        }
    }
    let stats = engine.stop();
    if latencies.is_empty() {
        usq::bail!(Inference, "the live engine scored no frame in {} s", a.live_seconds);
    }
    Ok(Record {
        budget_ms: Some(a.budget_ms),
        deadline_misses: Some(stats.deadline_misses),
        frames_pushed: Some(stats.frames_pushed),
        mean_patches: Some(patches as f64 / latencies.len() as f64),
        ..Record::timed("live", model_name, a, &latencies, load_ms)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Resets the kernel's peak-RSS mark (Linux: write 5 to clear_refs); silently a no-op elsewhere,
/// in which case the reported peak is the process's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM, the peak resident set, in MB (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A frame of multiplicative speckle over smooth structure, seeded.
fn speckle_frame(width: usize, height: usize) -> GrayFrame {
    let mut rng = fastrand::Rng::with_seed(7);
    let pixels = (0..width * height)
        .map(|i| {
            let (x, y) = ((i % width) as f32, (i / width) as f32);
            let tissue = 90.0 + 50.0 * ((x / 60.0).sin() * (y / 45.0).cos());
            let speckle = -(rng.f32().max(1e-6)).ln(); // exponential intensity
            (tissue * speckle).clamp(0.0, 255.0) as u8
        })
        .collect();
    GrayFrame::new(width, height, pixels).expect("a valid frame")
}
