//! `usq live`: the live engine on a stream of frames, with a terminal gauge (or plain lines,
//! or JSON lines), an optional CSV record, and a summary when it stops (Ctrl-C, --seconds,
//! --frames).

mod gauge;
mod source;

use super::{ModelArg, report};
use source::Source;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use usq::engine::pixel::Roi;
use usq::engine::{Engine, EngineConfig, LiveResult};
use usq::{Context, ManifoldSet};

#[derive(clap::Args)]
pub struct Args {
    /// V4L2 capture device (e.g. /dev/video0).
    #[arg(long, value_name = "DEV", conflicts_with = "input")]
    device: Option<PathBuf>,
    /// Play a folder of images, a .y4m video, or raw GRAY8 frames (with --size) instead.
    #[arg(long, value_name = "PATH")]
    input: Option<PathBuf>,
    /// Frame size of raw GRAY8 input.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Playback rate of --input (default: the file's, else 30).
    #[arg(long, value_name = "F")]
    fps: Option<f64>,
    /// Latency budget per frame, in milliseconds.
    #[arg(long, default_value_t = 33.0, value_name = "N")]
    budget_ms: f64,
    /// Region of interest: the image sector without text and UI overlays.
    #[arg(long, value_name = "x,y,w,h", value_parser = parse_roi)]
    roi: Option<Roi>,
    /// Score against one organ of the manifold.
    #[arg(long, value_name = "NAME")]
    organ: Option<String>,
    /// Manifold folder; default: models/nrq.
    #[arg(long, value_name = "DIR")]
    manifold: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArg,
    /// One JSON object per result.
    #[arg(long)]
    json: bool,
    /// Also write every result to a CSV file.
    #[arg(long, value_name = "FILE.csv")]
    record: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Stop after pushing this many frames (and scoring what is left).
    #[arg(long, value_name = "N")]
    frames: Option<u64>,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or("expected WxH")?;
    Ok((w.parse().map_err(|_| "bad width")?, h.parse().map_err(|_| "bad height")?))
}

fn parse_roi(s: &str) -> Result<Roi, String> {
    let v: Vec<usize> =
        s.split(',').map(|p| p.trim().parse().map_err(|_| format!("bad number {p:?}"))).collect::<Result<_, _>>()?;
    match v[..] {
        [x, y, width, height] if width > 0 && height > 0 => Ok(Roi { x, y, width, height }),
        _ => Err("expected x,y,w,h with w and h positive".into()),
    }
}

pub fn run(a: Args) -> usq::Result<bool> {
    if a.device.is_some() {
        usq::bail!(
            InvalidArgument,
            "V4L2 capture is not in this build yet; use --input to play a folder, a .y4m or raw frames"
        );
    }
    let Some(input) = &a.input else {
        usq::bail!(InvalidArgument, "give --device /dev/videoN or --input PATH");
    };
    if !(a.budget_ms.is_finite() && a.budget_ms > 0.0) {
        usq::bail!(InvalidArgument, "--budget-ms must be positive");
    }
    let (mut source, file_fps) = Source::open(input, a.size)?;
    let fps = a.fps.or(file_fps).unwrap_or(30.0);
    if !(fps.is_finite() && fps > 0.0) {
        usq::bail!(InvalidArgument, "--fps must be positive");
    }
    let first = source.next_frame().with_context(|| format!("reading the first frame of {}", input.display()))?;
    let manifolds = match &a.manifold {
        Some(d) => ManifoldSet::load_dir(d)?,
        None => usq::defaults::manifolds().context("loading the default manifold")?,
    };
    let encoder = a.model.load(1)?;
    let mut cfg = EngineConfig::for_frames(first.layout.width, first.layout.height);
    cfg.budget_ms = a.budget_ms;
    cfg.roi = a.roi;
    cfg.organ = a.organ.clone();
    if let Some(r) = &a.roi {
        r.check_within(&first.layout)?;
    }
    let engine = Arc::new(Engine::start(encoder, manifolds, cfg)?);

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let mut csv = match &a.record {
        Some(p) => {
            let mut f = std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            writeln!(f, "frame_id,timestamp_us,nrq,patches_scored,coverage,latency_ms,deadline_missed")?;
            Some(f)
        }
        None => None,
    };

    // The player: pushes a frame every 1/fps s until told to stop or out of frames.
    let producer_done = Arc::new(AtomicBool::new(false));
    let player = {
        let (engine, stop, done) = (engine.clone(), stop.clone(), producer_done.clone());
        let limit = a.frames;
        std::thread::spawn(move || -> usq::Result<()> {
            let start = Instant::now();
            let mut frame = Some(first);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && limit.is_none_or(|l| n < l) {
                let f = match frame.take() {
                    Some(f) => f,
                    None => source.next_frame()?,
                };
                engine.push(&f.pixels, f.layout, start.elapsed().as_micros() as u64)?;
                n += 1;
                let due = start + Duration::from_secs_f64(n as f64 / fps);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        })
    };

    let tty = std::io::stdout().is_terminal() && !a.json;
    let mut gauge = gauge::Gauge::new(input.display().to_string(), fps, a.budget_ms);
    let started = Instant::now();
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    let mut out = std::io::stdout().lock();
    loop {
        if a.seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
            stop.store(true, Ordering::SeqCst);
        }
        match engine.results().recv_timeout(Duration::from_millis(50)) {
            Ok(r) => {
                gauge.add(&r);
                if let Some(f) = csv.as_mut() {
                    write_csv(f, &r)?;
                }
                if a.json {
                    writeln!(out, "{}", serde_json::to_string(&r).expect("plain data serialises"))?;
                } else if !tty {
                    writeln!(
                        out,
                        "frame={} nrq={:.4} coverage={:.3} latency_ms={:.2} missed={}",
                        r.frame_id, r.nrq, r.coverage, r.latency_ms, r.deadline_missed as u8
                    )?;
                }
            }
            Err(_) => {
                let s = engine.stats();
                let settled = s.frames_scored + s.frames_dropped + s.frames_skipped + s.frames_failed;
                let player_over = producer_done.load(Ordering::SeqCst) || player.is_finished();
                if player_over && settled >= s.frames_pushed {
                    break;
                }
            }
        }
        if tty && last_draw.elapsed() >= Duration::from_millis(100) {
            gauge.draw(&mut out, &engine.stats())?;
            last_draw = Instant::now();
        }
    }
    stop.store(true, Ordering::SeqCst);
    let played = match player.join() {
        Ok(r) => r,
        Err(_) => Err(usq::Error::new(usq::ErrorKind::Io, "the player thread panicked")),
    };
    let stats = engine.stats();
    if tty {
        gauge.draw(&mut out, &stats)?;
    }
    drop(out);
    if let Err(e) = &played {
        report(e);
    }
    eprintln!("{}", gauge.summary(&stats, started.elapsed()));
    Ok(played.is_ok())
}

fn write_csv(f: &mut std::fs::File, r: &LiveResult) -> usq::Result<()> {
    writeln!(
        f,
        "{},{},{},{},{},{},{}",
        r.frame_id, r.timestamp_us, r.nrq, r.patches_scored, r.coverage, r.latency_ms, r.deadline_missed as u8
    )?;
    Ok(())
}
