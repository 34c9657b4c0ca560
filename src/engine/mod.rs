//! The live engine: frames in from a scanner's frame grabber, NRQ scores out under a latency
//! budget.
//!
//! A worker thread owns the encoder (and, with frame threads, helper encoders on threads of
//! their own, `helper`) and always scores the newest frame of the [`FrameRing`].
//! It measures its own cost and scores as many patches as the budget affords, rotating through
//! the patch grid so that consecutive frames cover the whole field of view, and reports the
//! worst-region NRQ over the patches scored within the last `window_frames` frames. Live NRQ
//! is therefore a windowed version of the offline score (identical when every frame affords
//! its whole grid, or with a window of 1 and no budget pressure). Beside NRQ, every result
//! carries the acquisition checks ([`crate::checks`]): measures of the gray frame, its change
//! since the previous scored frame (the frozen-image check) and how well the window's patches
//! fit each organ's clean frames.
//!
//! Memory: the ring, gray and patch buffers, schedule and window are allocated at start (and
//! again only when the frame size changes). Per frame, the engine's own code allocates
//! nothing; tract allocates during each run (the C library serves those from a fixed pool, see
//! [`crate::pool`]).

pub(crate) mod budget;
pub(crate) mod helper;
pub(crate) mod ring;
pub(crate) mod schedule;
pub(crate) mod slots;

use crate::checks::{self, Faults, FrameChecks};
use crate::contract::{DESCRIPTOR_LEN, INPUT_SIDE};
use crate::encoder::Encoder;
use crate::error::{Error, Result};
use crate::imaging::frame::GrayFrame;
use crate::imaging::pixel::{self, FrameLayout, Roi};
use crate::imaging::preprocess::{self, PatchOrigin};
use crate::manifold::ManifoldSet;
use crate::scorer::Scorer;
use budget::LatencyBudget;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use helper::{Helper, SharedFrame};
use ring::FrameRing;
pub use ring::Producer;
use schedule::{PatchSchedule, WindowAggregate};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest encoder batch the engine runs (patch inputs are kept in a fixed-size list).
pub const MAX_BATCH: usize = 8;
/// Fails unless the live engine can run encoder batches of `batch` images.
pub fn check_batch(batch: usize) -> Result<()> {
    if !(1..=MAX_BATCH).contains(&batch) {
        crate::bail!(InvalidArgument, "the live engine runs batches of 1 to {MAX_BATCH} images, not {batch}");
    }
    Ok(())
}

/// Latencies kept for the percentiles.
const LATENCY_HISTORY: usize = 1024;

/// How a live engine is started: ring size, latency budget, NRQ window, ROI and organ.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Largest frame the ring accepts, in bytes (every slot is this big).
    pub max_frame_bytes: usize,
    /// Frame slots in the ring (at least 3).
    pub ring_capacity: usize,
    /// Target from frame commit to result, in milliseconds.
    pub budget_ms: f64,
    /// Frames over which patch scores are aggregated.
    pub window_frames: u64,
    /// Region of interest in frame pixels; `None` = the whole frame.
    pub roi: Option<Roi>,
    /// Score against one organ; `None` = log-mean-exp over all organs.
    pub organ: Option<String>,
    /// Results kept for consumers that have not read them yet.
    pub result_capacity: usize,
    /// Keep the scored frame's gray pixels in the [`PatchView`] (one copy of the frame per
    /// result, for a display); off by default.
    pub view_frame: bool,
}

impl EngineConfig {
    /// Defaults for frames up to `width` x `height` in any supported format, rows padded to
    /// a multiple of 64 bytes at most.
    pub fn for_frames(width: usize, height: usize) -> EngineConfig {
        EngineConfig {
            // Saturating: sizes past the limits make a config that `check` refuses.
            max_frame_bytes: padded_row(width).saturating_mul(height),
            ring_capacity: 4,
            budget_ms: 33.0,
            window_frames: 30,
            roi: None,
            organ: None,
            result_capacity: 64,
            view_frame: false,
        }
    }
}

/// Bytes of a row of `width` 4-byte pixels padded to 64 bytes, saturating.
fn padded_row(width: usize) -> usize {
    width.saturating_mul(4).saturating_add(63) / 64 * 64
}

/// Most frame slots a ring may have.
pub const MAX_RING_SLOTS: usize = 64;
/// Most results kept for readers.
pub const MAX_RESULT_CAPACITY: usize = 1 << 16;

impl EngineConfig {
    /// Fails unless the engine can be built from this config within the library's limits: a
    /// slot no larger than the largest frame usq reads (in 4-byte pixels, rows padded), at
    /// most [`MAX_RING_SLOTS`] slots and 4 GiB of ring in all, at most
    /// [`MAX_RESULT_CAPACITY`] results kept. Firmware passes these numbers in from its own
    /// configuration: a wrong one gets an error here, not an allocation that aborts.
    pub fn check(&self) -> Result<()> {
        use crate::imaging::frame::{MAX_PIXELS, MAX_SIDE};
        // Any frame check_frame_size accepts: 4 bytes a pixel, each row padded by < 64 bytes.
        let max_slot = 4 * MAX_PIXELS + 64 * MAX_SIDE;
        if self.max_frame_bytes == 0 || self.max_frame_bytes > max_slot {
            crate::bail!(
                InvalidArgument,
                "frame slots of {} bytes: must be 1 to {max_slot} bytes (frames up to {MAX_SIDE} a side, {MAX_PIXELS} pixels)",
                self.max_frame_bytes
            );
        }
        if !(3..=MAX_RING_SLOTS).contains(&self.ring_capacity) {
            crate::bail!(InvalidArgument, "a frame ring needs 3 to {MAX_RING_SLOTS} slots, got {}", self.ring_capacity);
        }
        let ring_limit = (isize::MAX as u64).min(1 << 32);
        let ring_bytes = self.ring_capacity as u64 * self.max_frame_bytes as u64;
        if ring_bytes > ring_limit {
            crate::bail!(
                InvalidArgument,
                "{} slots of {} bytes make a {ring_bytes}-byte ring, more than {ring_limit}",
                self.ring_capacity,
                self.max_frame_bytes
            );
        }
        if self.result_capacity > MAX_RESULT_CAPACITY {
            crate::bail!(
                InvalidArgument,
                "at most {MAX_RESULT_CAPACITY} results can be kept, asked for {}",
                self.result_capacity
            );
        }
        if !(self.budget_ms.is_finite() && self.budget_ms > 0.0) {
            crate::bail!(InvalidArgument, "the latency budget must be a positive number of milliseconds");
        }
        Ok(())
    }
}

/// One scored frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LiveResult {
    /// The id the ring gave the frame when it was pushed or committed.
    pub frame_id: u64,
    /// The capture timestamp given with the frame.
    pub timestamp_us: u64,
    /// Worst-region NRQ over the window (higher = better).
    pub nrq: f64,
    /// Patches scored for this frame.
    pub patches_scored: u32,
    /// Share of the frame's patch grid covered by the window.
    pub coverage: f32,
    /// From commit to result.
    pub latency_ms: f32,
    /// The latency exceeded [`EngineConfig::budget_ms`].
    pub deadline_missed: bool,
    /// The faults the acquisition checks raise ([`crate::checks`]); empty when none.
    pub faults: Faults,
    /// The checks' measured values: of this frame, its change since the previous scored frame,
    /// and the organ margin over the patches in the window.
    pub checks: FrameChecks,
    /// The calibrated quality index (0-100, [`crate::manifold::calibration`]) beside NRQ:
    /// the window's NRQ against the organ scored (or, with all organs, the one the frame fits
    /// best) read on that organ's clean held-out frames; `None` without a scale, and while the
    /// window holds less than [`crate::manifold::calibration::LIVE_MIN_COVERAGE`] of the grid.
    pub quality: Option<f64>,
}

/// Counters of a live engine since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct EngineStats {
    /// Frames committed into the ring.
    pub frames_pushed: u64,
    /// Frames that produced a [`LiveResult`].
    pub frames_scored: u64,
    /// Unscored frames overwritten because the ring was full.
    pub frames_dropped: u64,
    /// Unscored frames passed over because a newer one was ready.
    pub frames_skipped: u64,
    /// Frames the worker could not score (bad layout for the ROI, engine error).
    pub frames_failed: u64,
    /// Scored frames whose latency exceeded the budget.
    pub deadline_misses: u64,
    /// Results not delivered because no consumer read them in time.
    pub results_overflowed: u64,
    /// Median commit-to-result latency over the last 1024 scored frames, in ms (0 before any).
    pub latency_p50_ms: f32,
    /// 99th-percentile commit-to-result latency over the last 1024 scored frames, in ms.
    pub latency_p99_ms: f32,
    /// The engine's current estimate of one encoder run.
    pub run_ms: f32,
}

struct Counters {
    scored: u64,
    failed: u64,
    misses: u64,
    overflowed: u64,
    run_ms: f32,
    latencies: heapless::HistoryBuf<f32, LATENCY_HISTORY>,
    last_error: Option<String>,
}

struct Shared {
    ring: Arc<FrameRing>,
    stop: AtomicBool,
    counters: Mutex<Counters>,
    view: Mutex<PatchView>,
}

/// The patch scores behind the latest result, for a display (a heatmap over the live frame):
/// every grid patch of the frame, with its score when it counts in the result's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchView {
    /// The result's frame (0 before the first).
    pub frame_id: u64,
    /// The scored frame's size (after the region of interest).
    pub width: usize,
    /// See `width`.
    pub height: usize,
    /// Columns of padding left of the frame in the patches' coordinates (frames under 224).
    pub pad_left: usize,
    /// Rows of padding above the frame.
    pub pad_top: usize,
    /// The patch grid, top-left corners in the padded frame, in grid order.
    pub grid: Vec<PatchOrigin>,
    /// Per grid patch, its latest log-likelihood within the window; `None` outside it.
    pub scores: Vec<Option<f64>>,
    /// The scored frame's gray pixels, `width * height`, with [`EngineConfig::view_frame`];
    /// empty without.
    pub gray: Vec<u8>,
}

impl PatchView {
    /// The view as a [`ScoreReport`]-shaped picture source: the patches within the window and
    /// their worst region, e.g. for [`crate::imaging::heatmap::render`]. `None` before a result.
    pub fn scored_patches(&self) -> Option<(Vec<crate::quality::PatchScore>, Vec<usize>)> {
        let patches: Vec<crate::quality::PatchScore> = self
            .grid
            .iter()
            .zip(&self.scores)
            .filter_map(|(p, s)| Some(crate::quality::PatchScore { x: p.x, y: p.y, loglik: (*s)? }))
            .collect();
        let lls: Vec<f64> = patches.iter().map(|p| p.loglik).collect();
        let (_, worst) = crate::metrics::nrq::worst_region(&lls)?;
        Some((patches, worst))
    }

    /// The frame (with [`EngineConfig::view_frame`]) tinted by the window's patch scores, the
    /// worst region outlined, as [`crate::imaging::heatmap::render`] draws an offline score.
    /// `None` before a result or without the frame.
    pub fn heatmap(&self) -> Option<image::RgbImage> {
        let frame = GrayFrame::new(self.width, self.height, self.gray.clone()).ok()?;
        let (scores, worst) = self.scored_patches()?;
        let patches = crate::imaging::heatmap::Patches {
            scores: &scores,
            worst: &worst,
            pad_left: self.pad_left,
            pad_top: self.pad_top,
        };
        Some(crate::imaging::heatmap::render_patches(&frame, &patches))
    }
}

/// A running engine. Dropping it stops the worker.
pub struct Engine {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    results: Receiver<LiveResult>,
}

impl Engine {
    /// Starts the worker with this scorer's encoder and manifold set, after one warm-up run.
    /// A scorer with frame threads ([`Scorer::set_frame_threads`]) gives the worker as many
    /// helper encoders, each on its own thread: a frame's patches are encoded on that many
    /// cores at once, and the budget affords that many times the patches.
    pub fn start(scorer: Scorer, config: EngineConfig) -> Result<Engine> {
        let (encoders, manifolds) = scorer.into_encoders();
        let mut encoders = encoders.into_iter();
        let mut encoder = encoders.next().expect("a scorer has an encoder");
        let Some(manifolds) = manifolds else {
            crate::bail!(InvalidArgument, "the live engine needs a scorer with a manifold set");
        };
        check_batch(encoder.batch())?;
        config.check()?;
        let organ = match &config.organ {
            Some(name) => Some(manifolds.organs.iter().position(|o| &o.name == name).ok_or_else(|| {
                manifolds.organ(name).err().unwrap_or_else(|| Error::new(crate::ErrorKind::InvalidArgument, "organ"))
            })?),
            None => None,
        };
        let ring = Arc::new(FrameRing::new(config.ring_capacity, config.max_frame_bytes)?);
        // Warm-up: the first run pays for tract's lazy set-up; the second gives the budget its
        // first cost estimate.
        let zeros = vec![0f32; INPUT_SIDE * INPUT_SIDE];
        let batch_of_zeros: Vec<&[f32]> = vec![&zeros; encoder.batch()];
        encoder.run_with(&batch_of_zeros, |_, _| {})?;
        let t = Instant::now();
        encoder.run_with(&batch_of_zeros, |_, _| {})?;
        let warm_run_ms = t.elapsed().as_secs_f64() * 1e3;
        let frame = Arc::new(RwLock::new(SharedFrame::default()));
        let mut helpers = Vec::new();
        for (k, mut e) in encoders.enumerate() {
            e.run_with(&batch_of_zeros, |_, _| {})?;
            helpers.push(Helper::start(e, manifolds.clone(), organ, frame.clone(), format!("usq-engine-{}", k + 1))?);
        }
        let (tx, rx) = crossbeam_channel::bounded(config.result_capacity.max(1));
        let shared = Arc::new(Shared {
            ring,
            stop: AtomicBool::new(false),
            counters: Mutex::new(Counters {
                scored: 0,
                failed: 0,
                misses: 0,
                overflowed: 0,
                run_ms: 0.0,
                latencies: heapless::HistoryBuf::new(),
                last_error: None,
            }),
            view: Mutex::new(PatchView::default()),
        });
        let mut worker = Worker::new(encoder, helpers, frame, manifolds, organ, &config, shared.clone(), tx);
        worker.budget.observe_run(warm_run_ms);
        let handle = std::thread::Builder::new()
            .name("usq-engine".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::from_source(crate::ErrorKind::Io, &e).context("starting the engine thread"))?;
        shared.ring.set_consumer(handle.thread().clone());
        Ok(Engine { shared, worker: Some(handle), results: rx })
    }

    /// The producer side: the one way frames go in (copy or zero-copy, see [`Producer`]).
    /// One at a time: a second call fails with `Busy` until the first producer is dropped.
    pub fn producer(&self) -> Result<Producer> {
        self.shared.ring.producer()
    }

    /// Copies one frame in through a producer taken for this call only (`Busy` while
    /// another producer exists). Never blocks; never allocates.
    pub fn push(&self, data: &[u8], layout: FrameLayout, timestamp_us: u64) -> Result<u64> {
        self.producer()?.push(data, layout, timestamp_us)
    }

    /// Results, oldest first, for Rust consumers.
    pub fn results(&self) -> &Receiver<LiveResult> {
        &self.results
    }

    /// The counters and latency percentiles so far; briefly takes the lock the worker updates
    /// them under, once per frame.
    pub fn stats(&self) -> EngineStats {
        let ring = self.shared.ring.counters();
        let c = self.shared.counters.lock().unwrap_or_else(|e| e.into_inner());
        let (p50, p99) = percentiles(&c.latencies);
        EngineStats {
            frames_pushed: ring.pushed,
            frames_scored: c.scored,
            frames_dropped: ring.dropped,
            frames_skipped: ring.skipped,
            frames_failed: c.failed,
            deadline_misses: c.misses,
            results_overflowed: c.overflowed,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            run_ms: c.run_ms,
        }
    }

    /// The patch scores behind the latest result (a copy; allocates here, in the caller). The
    /// worker only ever tries the lock, so a caller holding it delays no frame: that frame's
    /// view is skipped instead.
    pub fn patch_view(&self) -> PatchView {
        self.shared.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last error the worker met on a frame, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.counters.lock().unwrap_or_else(|e| e.into_inner()).last_error.clone()
    }

    /// Stops the worker after the frame in progress and returns the final statistics.
    pub fn stop(mut self) -> EngineStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.worker.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// p50 and p99 of the recorded latencies, copied to the stack and selected in place.
fn percentiles(h: &heapless::HistoryBuf<f32, LATENCY_HISTORY>) -> (f32, f32) {
    let n = h.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mut v = [0f32; LATENCY_HISTORY];
    v[..n].copy_from_slice(h.as_slice());
    let v = &mut v[..n];
    let pick = |v: &mut [f32], q: f64| {
        let i = ((q * (n - 1) as f64).round() as usize).min(n - 1);
        *v.select_nth_unstable_by(i, f32::total_cmp).1
    };
    (pick(v, 0.5), pick(v, 0.99))
}

/// Everything the worker thread owns.
struct Worker {
    encoder: Encoder,
    /// More encoders, each on its own thread, sharing a frame's patches with this one.
    helpers: Vec<Helper>,
    /// The padded frame and its grid, published to the helpers.
    frame: Arc<RwLock<SharedFrame>>,
    manifolds: ManifoldSet,
    organ: Option<usize>,
    roi: Option<Roi>,
    budget: LatencyBudget,
    window_frames: u64,
    view_frame: bool,
    shared: Arc<Shared>,
    results: Sender<LiveResult>,
    gray: Vec<u8>,
    /// The previous scored frame's gray pixels, for the frozen-image check.
    previous: Vec<u8>,
    has_previous: bool,
    /// Each organ's log-likelihood of one patch, and each organ's median over the window.
    each_organ: Vec<f64>,
    organ_medians: Vec<f64>,
    inputs: Vec<Vec<f32>>,
    descriptor: Vec<f64>,
    loglik_scratch: Vec<f64>,
    chosen: Vec<usize>,
    layout: Option<(usize, usize)>,
    grid: Vec<PatchOrigin>,
    schedule: Option<PatchSchedule>,
    window: Option<WindowAggregate>,
    seq: u64,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    fn new(
        encoder: Encoder,
        helpers: Vec<Helper>,
        frame: Arc<RwLock<SharedFrame>>,
        manifolds: ManifoldSet,
        organ: Option<usize>,
        config: &EngineConfig,
        shared: Arc<Shared>,
        results: Sender<LiveResult>,
    ) -> Worker {
        let scratch = manifolds.organs.iter().map(|o| o.dim + o.components).max().unwrap_or(0);
        let organs = manifolds.organs.len();
        let batch = encoder.batch();
        Worker {
            budget: LatencyBudget::new(config.budget_ms, batch),
            encoder,
            helpers,
            frame,
            manifolds,
            organ,
            roi: config.roi,
            window_frames: config.window_frames,
            view_frame: config.view_frame,
            shared,
            results,
            gray: vec![0; config.max_frame_bytes],
            previous: vec![0; config.max_frame_bytes],
            has_previous: false,
            each_organ: vec![f64::NAN; organs],
            organ_medians: vec![f64::NAN; organs],
            inputs: vec![vec![0f32; INPUT_SIDE * INPUT_SIDE]; batch],
            descriptor: vec![0f64; DESCRIPTOR_LEN],
            loglik_scratch: Vec::with_capacity(scratch),
            chosen: Vec::new(),
            layout: None,
            grid: Vec::new(),
            schedule: None,
            window: None,
            seq: 0,
        }
    }

    fn run(&mut self) {
        let shared = self.shared.clone();
        while !shared.stop.load(Ordering::Acquire) {
            let Some(frame) = shared.ring.take_newest() else {
                std::thread::park_timeout(Duration::from_millis(20));
                continue;
            };
            let meta = frame.meta();
            let converted = self.convert(frame.data(), &meta.layout);
            drop(frame); // the slot is free again as soon as the frame is gray
            let outcome = converted.and_then(|(w, h)| self.score(w, h, meta));
            if let Err(e) = outcome {
                let mut c = shared.counters.lock().unwrap_or_else(|e| e.into_inner());
                c.failed += 1;
                c.last_error = Some(format!("frame {}: {e}", meta.id));
            }
        }
    }

    /// Gray (ROI applied) into `self.gray`; returns the gray size.
    fn convert(&mut self, data: &[u8], layout: &FrameLayout) -> Result<(usize, usize)> {
        let roi = self.roi.unwrap_or(Roi::whole(layout));
        pixel::to_gray(data, layout, &roi, &mut self.gray)?;
        Ok((roi.width, roi.height))
    }

    /// Rebuilds the grid, schedule and window for a new frame size (the only allocations).
    fn resize(&mut self, w: usize, h: usize) {
        let (pw, ph) = preprocess::padded_size(w, h);
        self.grid = preprocess::patch_grid(pw, ph);
        {
            let mut f = self.frame.write().unwrap_or_else(PoisonError::into_inner);
            f.padded.resize(pw * ph, 0);
            f.padded_width = pw;
            f.grid.clone_from(&self.grid);
        }
        for h in &self.helpers {
            h.reserve(self.grid.len(), self.manifolds.organs.len());
        }
        self.schedule = Some(PatchSchedule::new(&self.grid, pw, ph));
        self.window = Some(WindowAggregate::new(self.grid.len(), self.manifolds.organs.len(), self.window_frames));
        self.chosen = Vec::with_capacity(self.grid.len());
        self.layout = Some((w, h));
        // The view is resized here, with the rest, so that updating it per frame allocates nothing.
        let mut view = self.shared.view.lock().unwrap_or_else(|e| e.into_inner());
        *view = PatchView {
            frame_id: 0,
            width: w,
            height: h,
            pad_left: (pw - w) / 2,
            pad_top: (ph - h) / 2,
            grid: self.grid.clone(),
            scores: vec![None; self.grid.len()],
            gray: if self.view_frame { vec![0; w * h] } else { Vec::new() },
        };
        self.has_previous = false;
    }

    fn score(&mut self, w: usize, h: usize, meta: ring::FrameMeta) -> Result<()> {
        if self.layout != Some((w, h)) {
            self.resize(w, h);
        }
        preprocess::pad_into(
            &self.gray[..w * h],
            w,
            h,
            &mut self.frame.write().unwrap_or_else(PoisonError::into_inner).padded,
        );
        let measures = checks::measure(&self.gray, w, h);
        let frame_change =
            self.has_previous.then(|| checks::frame_change(&self.previous[..w * h], &self.gray[..w * h]));
        self.previous[..w * h].copy_from_slice(&self.gray[..w * h]);
        self.has_previous = true;
        self.seq += 1;
        let elapsed = meta.committed_at.elapsed().as_secs_f64() * 1e3;
        // The budget counts runs one after another; the helpers run theirs at the same time.
        let encoders = 1 + self.helpers.len();
        let n = (self.budget.patches_for(elapsed, self.grid.len()) * encoders).min(self.grid.len().max(1));
        let (schedule, window) = (self.schedule.as_mut().unwrap(), self.window.as_mut().unwrap());
        schedule.next_patches(n, &mut self.chosen);
        let organ = self.organ.map(|i| &self.manifolds.organs[i]);
        // Whole batches per encoder, the worker's share first, the helpers' next.
        let batch = self.encoder.batch();
        let per_encoder = (self.chosen.len().div_ceil(batch).div_ceil(encoders) * batch).max(1);
        let mut shares = self.chosen.chunks(per_encoder);
        let own = shares.next().unwrap_or(&[]);
        let (mut sent, mut failed) = (0, None);
        for (helper, share) in self.helpers.iter().zip(shares) {
            match helper.send(share) {
                Ok(()) => sent += 1,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let seq = self.seq;
        let mut encode_own = || -> Result<()> {
            let frame = self.frame.read().unwrap_or_else(PoisonError::into_inner);
            for chunk in own.chunks(batch) {
                let mut refs: heapless::Vec<&[f32], MAX_BATCH> = heapless::Vec::new();
                for (buf, &p) in self.inputs.iter_mut().zip(chunk) {
                    preprocess::crop_patch_from(&frame.padded, frame.padded_width, frame.grid[p], buf);
                }
                for buf in &self.inputs[..chunk.len()] {
                    let _ = refs.push(buf);
                }
                let t = Instant::now();
                let (descriptor, scratch, each, manifolds) =
                    (&mut self.descriptor, &mut self.loglik_scratch, &mut self.each_organ, &self.manifolds);
                self.encoder.run_with(&refs, |i, layers| {
                    crate::metrics::nrq::patch_descriptor_into(&layers, descriptor);
                    let ll = manifolds.loglik_each(organ, descriptor, scratch, each);
                    window.record(chunk[i], ll, each, seq);
                })?;
                self.budget.observe_run(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(())
        };
        let own_result = encode_own();
        // Every helper given a share is waited for, even after a failure, so that its reply
        // never answers the next frame.
        let organs = self.manifolds.organs.len();
        for helper in &self.helpers[..sent] {
            if let Err(e) = helper.wait(organs, |p, ll, each| window.record(p, ll, each, seq)) {
                failed.get_or_insert(e);
            }
        }
        own_result?;
        if let Some(e) = failed {
            // A helper whose thread ended is dropped: the next frames run on the others.
            self.helpers.retain(Helper::is_alive);
            return Err(e);
        }
        let tail = Instant::now();
        let (nrq, fresh) = window.score(self.seq).expect("at least one patch was scored");
        if !nrq.is_finite() {
            crate::bail!(NonFinite, "the frame's NRQ is not finite");
        }
        window.organ_medians(self.seq, &mut self.organ_medians);
        if let Ok(mut view) = self.shared.view.try_lock() {
            view.frame_id = meta.id;
            window.window_scores(self.seq, &mut view.scores);
            if self.view_frame {
                view.gray.copy_from_slice(&self.gray[..w * h]);
            }
        }
        let fit = self.manifolds.organ_fit(organ, &self.organ_medians);
        let covered = fresh as f64 >= crate::manifold::calibration::LIVE_MIN_COVERAGE * window.patches() as f64;
        let quality = organ.or(fit.map(|(o, _)| o)).filter(|_| covered).and_then(|o| {
            let i = self.manifolds.organs.iter().position(|x| std::ptr::eq(x, o))?;
            let scale = o.quality.as_ref()?;
            Some(scale.index(window.organ_score(i, self.seq)?))
        });
        let (checks, faults) =
            FrameChecks::judge(measures, fit.and_then(|(o, _)| o.clean.as_ref()), fit.map(|(_, g)| g), frame_change);
        let latency_ms = meta.committed_at.elapsed().as_secs_f64() * 1e3;
        let result = LiveResult {
            frame_id: meta.id,
            timestamp_us: meta.timestamp_us,
            nrq,
            patches_scored: self.chosen.len() as u32,
            coverage: fresh as f32 / window.patches() as f32,
            latency_ms: latency_ms as f32,
            deadline_missed: latency_ms > self.budget.budget_ms(),
            faults,
            checks,
            quality,
        };
        // Counters first, so that whoever receives the result sees statistics that include it.
        {
            let mut c = self.shared.counters.lock().unwrap_or_else(|e| e.into_inner());
            c.scored += 1;
            c.misses += result.deadline_missed as u64;
            c.run_ms = self.budget.run_ms().unwrap_or(0.0) as f32;
            c.latencies.write(result.latency_ms);
        }
        if let Err(TrySendError::Full(_)) = self.results.try_send(result) {
            self.shared.counters.lock().unwrap_or_else(|e| e.into_inner()).overflowed += 1;
        }
        self.budget.observe_tail(tail.elapsed().as_secs_f64() * 1e3);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes and counts a firmware's configuration may pass in: an error before anything is
    /// allocated, never an overflow or an allocation that aborts.
    #[test]
    fn configs_past_the_limits_are_errors() {
        assert!(EngineConfig::for_frames(800, 540).check().is_ok());
        for (w, h) in [(16384, 4096), (4097, 16379), (1, 16384)] {
            assert!(EngineConfig::for_frames(w, h).check().is_ok(), "{w}x{h}: a frame usq reads");
        }
        for (w, h) in [(u32::MAX as usize, u32::MAX as usize), (usize::MAX, 2), (16385, 16385), (0, 10)] {
            assert!(EngineConfig::for_frames(w, h).check().is_err(), "{w}x{h}");
        }
        let ok = EngineConfig::for_frames(640, 480);
        for bad in [
            EngineConfig { ring_capacity: 2, ..ok.clone() },
            EngineConfig { ring_capacity: u32::MAX as usize, ..ok.clone() },
            EngineConfig { ring_capacity: 64, ..EngineConfig::for_frames(16384, 4096) },
            EngineConfig { result_capacity: u32::MAX as usize, ..ok.clone() },
            EngineConfig { budget_ms: f64::NAN, ..ok.clone() },
        ] {
            assert_eq!(bad.check().unwrap_err().kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
        }
    }
}
