//! `usq live`: the live engine on a stream of frames, with a terminal gauge (or plain lines,
//! or JSON lines), an optional CSV record, and a summary when it stops (Ctrl-C, --seconds,
//! --frames).

mod gauge;
mod serve;

use super::{LiveModelArg, report};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use usq::Context;
use usq::capture::status::SharedSource;
use usq::clip::Source;
use usq::engine::{Engine, EngineConfig, LiveResult};
use usq::imaging::pixel::{FrameLayout, Roi};

#[derive(clap::Args)]
pub struct Args {
    /// V4L2 capture device (e.g. /dev/video0).
    #[arg(long, value_name = "DEV", conflicts_with = "input")]
    device: Option<PathBuf>,
    /// Play a folder of images, a .y4m video, a multi-frame DICOM cine, or raw GRAY8 frames
    /// (with --size) instead.
    #[arg(long, value_name = "PATH")]
    input: Option<PathBuf>,
    /// Frame size: of raw GRAY8 input, or asked of the device.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Playback rate of --input (default: the file's, else 30), or asked of the device.
    #[arg(long, value_name = "F")]
    fps: Option<f64>,
    /// Capture format asked of the device: GREY, YUYV, NV12, RGB3, BGR3 or MJPG (default: the
    /// first of these the device offers).
    #[arg(long, value_name = "FOURCC")]
    format: Option<String>,
    /// When the capture device is lost (unplugged, failing, or no frame for 5 s): reopen it
    /// until it sends frames again, taking its new size and format if they changed, or exit
    /// with an error.
    #[arg(long, value_enum, default_value_t = OnCaptureLoss::Reconnect, value_name = "WHAT")]
    on_capture_loss: OnCaptureLoss,
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
    model: LiveModelArg,
    /// Encoders scoring each frame's patches, each on its own core: the budget affords about
    /// that many times the patches per frame.
    #[arg(long, default_value_t = 1, value_name = "T")]
    threads: usize,
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
    /// Serve a live view in the browser: the frame with its heatmap, the gauge, the trend and
    /// the engine's health at http://ADDR/, results as Server-Sent Events at /events.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = serve::DEFAULT_ADDR)]
    serve: Option<String>,
    /// Allow --serve on an address other than loopback (frames may show patient data).
    #[arg(long, requires = "serve")]
    serve_public: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnCaptureLoss {
    Reconnect,
    Exit,
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

/// What feeds the engine: returns a line about the source for the summary, if it has one.
type Feeder = Box<dyn FnOnce(&Engine, &AtomicBool) -> usq::Result<Option<String>> + Send>;

pub fn run(a: Args) -> usq::Result<bool> {
    if !(a.budget_ms.is_finite() && a.budget_ms > 0.0) {
        usq::bail!(InvalidArgument, "--budget-ms must be positive");
    }
    if a.fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
        usq::bail!(InvalidArgument, "--fps must be positive");
    }
    if a.format.is_some() && a.device.is_none() {
        usq::bail!(InvalidArgument, "--format applies to capture from --device only");
    }
    let source = SharedSource::default();
    let (label, layout, fps, feeder) = match (&a.device, &a.input) {
        (Some(dev), _) => open_device(dev, &a, source.clone())?,
        (None, Some(input)) => open_input(input, &a)?,
        (None, None) => usq::bail!(InvalidArgument, "give --device /dev/videoN or --input PATH"),
    };
    let scorer = usq::Scorer::with_threads(
        &a.model.source(),
        usq::ManifoldSource::dir_or_default(a.manifold.clone()),
        1,
        a.threads,
    )?;
    if let Some(w) = scorer.manifolds().and_then(|m| m.clean_stats_warning(a.organ.as_deref())) {
        eprintln!("warning: {w}");
    }
    if a.model.model.is_none() {
        let m = usq::LiveModel::for_this_cpu();
        eprintln!("usq live: the shipped {} model ({})", m.name(), m.reason());
    }
    // A capture device may come back at another size: its frames up to 1920x1080 fit the ring.
    let (w, h) = match a.device {
        Some(_) => (layout.width.max(1920), layout.height.max(1080)),
        None => (layout.width, layout.height),
    };
    let mut cfg = EngineConfig::for_frames(w, h);
    cfg.max_frame_bytes = cfg.max_frame_bytes.max(layout.required_bytes()?);
    cfg.budget_ms = a.budget_ms;
    cfg.roi = a.roi;
    cfg.organ = a.organ.clone();
    if let Some(r) = &a.roi {
        r.check_within(&layout)?;
    }
    cfg.view_frame = a.serve.is_some();
    let engine = Arc::new(Engine::start(scorer, cfg)?);
    let server = match &a.serve {
        Some(addr) => {
            let info = serde_json::json!({
                "source": label,
                "format": format!("{:?} {}x{}", layout.format, layout.width, layout.height),
                "fps": fps,
                "budget_ms": a.budget_ms,
                "organ": a.organ,
            });
            let s = serve::Server::start(addr, a.serve_public, engine.clone(), info, source.clone())?;
            eprintln!("usq live: serving the live view on http://{}/", s.addr());
            Some(s)
        }
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let mut csv = match &a.record {
        Some(p) => {
            let mut f = std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            writeln!(
                f,
                "frame_id,timestamp_us,nrq,quality,patches_scored,coverage,latency_ms,deadline_missed,faults,\
                 echo_level,clipped_share,dead_width,pixel_std,frame_change,organ_margin"
            )?;
            Some(f)
        }
        None => None,
    };

    let producer_done = Arc::new(AtomicBool::new(false));
    let player = {
        let (engine, stop, done, source) = (engine.clone(), stop.clone(), producer_done.clone(), source.clone());
        std::thread::spawn(move || {
            let r = feeder(&engine, &stop);
            source.ended();
            done.store(true, Ordering::SeqCst);
            r
        })
    };

    let tty = std::io::stdout().is_terminal() && !a.json;
    let mut gauge = gauge::Gauge::new(label, fps, a.budget_ms);
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
                let json =
                    (a.json || server.is_some()).then(|| serde_json::to_string(&r).expect("plain data serialises"));
                if let (Some(s), Some(j)) = (&server, &json) {
                    s.publish(j);
                }
                if let Some(j) = json.as_ref().filter(|_| a.json) {
                    writeln!(out, "{j}")?;
                } else if !tty {
                    writeln!(
                        out,
                        "frame={} nrq={:.4} quality={} coverage={:.3} latency_ms={:.2} missed={} faults={}",
                        r.frame_id,
                        r.nrq,
                        r.quality.map_or("-".into(), |q| format!("{q:.1}")),
                        r.coverage,
                        r.latency_ms,
                        r.deadline_missed as u8,
                        crate::cli::score::fault_column(r.faults)
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
            gauge.draw(&mut out, &engine.stats(), &source.get())?;
            last_draw = Instant::now();
        }
    }
    stop.store(true, Ordering::SeqCst);
    let played = match player.join() {
        Ok(r) => r,
        Err(_) => Err(usq::Error::new(usq::ErrorKind::Io, "the frame source thread panicked")),
    };
    let stats = engine.stats();
    if tty {
        gauge.draw(&mut out, &stats, &source.get())?;
    }
    drop(out);
    match &played {
        Err(e) => report(e),
        Ok(Some(line)) => eprintln!("{line}"),
        Ok(None) => {}
    }
    eprintln!("{}", gauge.summary(&stats, started.elapsed()));
    Ok(played.is_ok())
}

type Opened = (String, FrameLayout, f64, Feeder);

/// A file source played at its frame rate.
fn open_input(input: &std::path::Path, a: &Args) -> usq::Result<Opened> {
    let (mut source, file_fps) = Source::open(input, a.size)?;
    let fps = a.fps.or(file_fps).unwrap_or(30.0);
    let first = source.next_frame().with_context(|| format!("reading the first frame of {}", input.display()))?;
    let layout = first.layout;
    let limit = a.frames;
    let feeder: Feeder = Box::new(move |engine, stop| {
        let start = Instant::now();
        let mut producer = engine.producer()?;
        let mut frame = Some(first);
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) && limit.is_none_or(|l| n < l) {
            let f = match frame.take() {
                Some(f) => f,
                None => source.next_frame()?,
            };
            producer.push(&f.pixels, f.layout, start.elapsed().as_micros() as u64)?;
            n += 1;
            let due = start + Duration::from_secs_f64(n as f64 / fps);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok(None)
    });
    Ok((input.display().to_string(), layout, fps, feeder))
}

#[cfg(not(feature = "v4l2"))]
fn open_device(dev: &std::path::Path, _a: &Args, _source: SharedSource) -> usq::Result<Opened> {
    usq::bail!(
        InvalidArgument,
        "{}: this usq was built without V4L2 capture; rebuild with `cargo build --release --features v4l2` \
         (needs libclang), or use --input to play a folder, a .y4m or raw frames",
        dev.display()
    )
}

/// A V4L2 device streamed at its own pace.
#[cfg(feature = "v4l2")]
fn open_device(dev: &std::path::Path, a: &Args, source: SharedSource) -> usq::Result<Opened> {
    use usq::capture::CaptureFormat;
    use usq::capture::v4l2::{Camera, CaptureEvent, CaptureRequest, CaptureStats, OnLoss, StreamOptions};
    let request =
        CaptureRequest { format: a.format.as_deref().map(CaptureFormat::parse).transpose()?, size: a.size, fps: a.fps };
    let camera = Camera::open(dev, &request)?;
    let (label, layout) = (camera.describe(), camera.layout());
    let fps = camera.fps().or(a.fps).unwrap_or(30.0);
    let limit = a.frames;
    let on_loss = match a.on_capture_loss {
        OnCaptureLoss::Reconnect => OnLoss::Reconnect,
        OnCaptureLoss::Exit => OnLoss::Exit,
    };
    let feeder: Feeder = Box::new(move |engine, stop| {
        let mut stats = CaptureStats::default();
        let mut producer = engine.producer()?;
        let mut n = 0u64;
        let push = |f: usq::capture::CapturedFrame<'_>| {
            producer.push(f.data, f.layout, f.timestamp_us).context("the capture's frame")?;
            n += 1;
            Ok(limit.is_none_or(|l| n < l))
        };
        // Losses and returns also go to stderr as they happen (stdout is the results'); skips
        // and stalls, which may come by the hundred, only to the gauge, the page and the summary.
        let event = |e: CaptureEvent<'_>| match e {
            CaptureEvent::Skipped(reason) => source.skipped(reason),
            CaptureEvent::Stalled(gap) => source.stalled(gap),
            CaptureEvent::Resized { from, to } => {
                source.resized(from, to);
                eprintln!("usq live: the capture's frames changed size: {}x{} -> {}x{}", from.0, from.1, to.0, to.1)
            }
            CaptureEvent::SourceChanged { from, to } => {
                source.source_changed(from, to);
                eprintln!("usq live: the capture's source changed; negotiated again: {from} -> {to}")
            }
            CaptureEvent::Lost(e) => {
                source.lost(&e.to_string());
                if on_loss == OnLoss::Reconnect {
                    eprintln!("usq live: capture lost: {e}; reopening the device until it sends frames")
                }
            }
            CaptureEvent::Back { after, device } => {
                source.back(after, device);
                eprintln!("usq live: capture back after {:.1} s: {device}", after.as_secs_f64())
            }
        };
        let ended =
            camera.stream_supervised(&request, &StreamOptions::default(), on_loss, stop, &mut stats, push, event);
        let line = capture_summary(&stats);
        ended.map(|_| Some(line.clone())).map_err(|e| e.context(line))
    });
    Ok((label, layout, fps, feeder))
}

/// The capture's counters, one line for the summary.
#[cfg(feature = "v4l2")]
fn capture_summary(s: &usq::capture::v4l2::CaptureStats) -> String {
    let mut line = format!(
        "capture: {} frames, {} retries, {} stalls (longest gap {:.1} s)",
        s.frames,
        s.retries,
        s.stalls,
        s.longest_gap.as_secs_f64()
    );
    if s.skipped > 0 {
        line += &format!(", {} unusable frames skipped (last: {})", s.skipped, s.last_skip.as_deref().unwrap_or(""));
    }
    if s.resizes > 0 {
        line += &format!(", frame size changed {} times", s.resizes);
    }
    if s.losses > 0 {
        line += &format!(
            ", device lost {} times, back {} times ({:.1} s without it)",
            s.losses,
            s.reconnects,
            s.time_lost.as_secs_f64()
        );
    }
    line
}

fn write_csv(f: &mut std::fs::File, r: &LiveResult) -> usq::Result<()> {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let faults: Vec<&str> = r.faults.iter().map(|f| f.name()).collect();
    let m = &r.checks.measures;
    writeln!(
        f,
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        r.frame_id,
        r.timestamp_us,
        r.nrq,
        opt(r.quality),
        r.patches_scored,
        r.coverage,
        r.latency_ms,
        r.deadline_missed as u8,
        faults.join("|"),
        m.echo_level,
        m.clipped_share,
        m.dead_width,
        m.pixel_std,
        opt(r.checks.frame_change.map(f64::from)),
        opt(r.checks.organ_margin)
    )?;
    Ok(())
}
