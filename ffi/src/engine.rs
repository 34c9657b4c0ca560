//! The live engine over C: configuration, frames in (copy or zero-copy), results out.

use crate::{
    boundary, check_opt_ptr, check_ptr, check_struct_size, fail, from_error, load_scorer, opt_str, try_mut, try_out,
    try_ref, try_status, try_take, usq_checks, usq_status,
};
use std::ffi::c_char;
use std::time::Duration;
use usq_core::ModelSource;
use usq_core::engine::{Engine, EngineConfig, Producer};
use usq_core::imaging::pixel::{FrameLayout, PixelFormat, Roi};

/// Pixel formats of `usq_frame_desc::format` (values of `usq_pixel_format`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum usq_pixel_format {
    USQ_PIXEL_GRAY8 = 1,
    /// 16-bit little-endian gray, scaled by the full 16-bit range.
    USQ_PIXEL_GRAY16 = 2,
    USQ_PIXEL_RGB24 = 3,
    USQ_PIXEL_BGR24 = 4,
    /// Alpha ignored.
    USQ_PIXEL_RGBA = 5,
    /// Packed 4:2:2; gray is the luma.
    USQ_PIXEL_YUYV = 6,
    /// Luma plane then interleaved chroma; gray is the luma. `stride` is the luma stride.
    USQ_PIXEL_NV12 = 7,
}

// The C enum mirrors the library's formats value for value (`layout_of` maps through
// `PixelFormat::from_u32`); a change on either side stops the build here.
const _: () = {
    use usq_pixel_format as C;
    assert!(C::USQ_PIXEL_GRAY8 as u32 == PixelFormat::Gray8 as u32);
    assert!(C::USQ_PIXEL_GRAY16 as u32 == PixelFormat::Gray16 as u32);
    assert!(C::USQ_PIXEL_RGB24 as u32 == PixelFormat::Rgb24 as u32);
    assert!(C::USQ_PIXEL_BGR24 as u32 == PixelFormat::Bgr24 as u32);
    assert!(C::USQ_PIXEL_RGBA as u32 == PixelFormat::Rgba as u32);
    assert!(C::USQ_PIXEL_YUYV as u32 == PixelFormat::Yuyv as u32);
    assert!(C::USQ_PIXEL_NV12 as u32 == PixelFormat::Nv12 as u32);
};

/// Geometry of one frame in memory.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct usq_frame_desc {
    /// `sizeof(usq_frame_desc)`.
    pub struct_size: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next; 0 = tightly packed.
    pub stride: u32,
    /// A `usq_pixel_format` value.
    pub format: u32,
}

pub(crate) unsafe fn layout_of(desc: *const usq_frame_desc) -> Result<FrameLayout, usq_status> {
    let d = unsafe { try_ref(desc, "desc") }?;
    check_struct_size::<usq_frame_desc>(d.struct_size, "desc")?;
    let format = PixelFormat::from_u32(d.format)
        .ok_or_else(|| fail(usq_status::USQ_ERR_INVALID_ARGUMENT, format!("unknown pixel format {}", d.format)))?;
    let (w, h) = (d.width as usize, d.height as usize);
    let layout = FrameLayout {
        width: w,
        height: h,
        stride: if d.stride == 0 { w * format.bytes_per_pixel() } else { d.stride as usize },
        format,
    };
    layout.required_bytes().map_err(from_error)?;
    Ok(layout)
}

/// Engine settings. Fill with `usq_engine_config_default`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct usq_engine_config {
    /// `sizeof(usq_engine_config)`, checked so a mismatched header is caught.
    pub struct_size: u32,
    /// Largest frame, in pixels; the ring's slots are sized for it (4 bytes per pixel, rows
    /// padded to 64 bytes).
    pub max_width: u32,
    pub max_height: u32,
    /// Frame slots, at least 3.
    pub ring_capacity: u32,
    /// Latency budget from commit to result, in milliseconds.
    pub budget_ms: f64,
    /// Frames over which patch scores are aggregated.
    pub window_frames: u32,
    /// Region of interest in frame pixels; `roi_width == 0` means the whole frame.
    pub roi_x: u32,
    pub roi_y: u32,
    pub roi_width: u32,
    pub roi_height: u32,
    /// Encoder batch, 1..8.
    pub batch: u32,
    /// Results kept until read.
    pub result_capacity: u32,
    /// Encoders, 1..64, each on its own thread, sharing each frame's patches (1: the worker
    /// thread alone): the budget affords about that many times the patches per frame. Each
    /// encoder holds its own run state (about 10 MB with the int8 model); more than the CPU's
    /// cores only adds memory.
    pub threads: u32,
}

/// One scored frame.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct usq_result {
    /// Set by the caller to `sizeof(usq_result)`.
    pub struct_size: u32,
    pub frame_id: u64,
    /// The timestamp given with the frame.
    pub timestamp_us: u64,
    /// Worst-region NRQ over the window; higher is better.
    pub nrq: f64,
    pub patches_scored: u32,
    /// Share of the frame's patch grid covered by the window, 0..1.
    pub coverage: f32,
    /// From commit to result.
    pub latency_ms: f32,
    /// 1 if the latency exceeded the budget.
    pub deadline_missed: u32,
    /// The acquisition checks: faults and their measured values, beside NRQ. A program built
    /// against a header from before the checks sets the shorter `struct_size` (48) and gets
    /// the fields above only.
    pub checks: usq_checks,
    /// The calibrated quality index beside NRQ, 0-100 (see `usq_score_report.quality`), of the
    /// window's NRQ against the organ scored or, with all organs, the one the frame fits best.
    /// NaN without a scale, and while the window holds less than half the frame's patch grid
    /// (a few patches read higher than the whole frames the scale is made of). Programs built
    /// against an earlier header set a shorter
    /// `struct_size` and get the fields above only.
    pub quality: f64,
}

/// `sizeof(usq_result)` in headers from before `checks`: still accepted.
const RESULT_V02_SIZE: usize = std::mem::offset_of!(usq_result, checks);
/// `sizeof(usq_result)` in headers from before `quality`: still accepted.
const RESULT_V03_SIZE: usize = std::mem::offset_of!(usq_result, quality);

/// Engine statistics.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct usq_engine_stats {
    /// Set by the caller to `sizeof(usq_engine_stats)`.
    pub struct_size: u32,
    pub frames_pushed: u64,
    pub frames_scored: u64,
    /// Unscored frames overwritten because the ring was full.
    pub frames_dropped: u64,
    /// Unscored frames passed over for a newer one.
    pub frames_skipped: u64,
    pub frames_failed: u64,
    pub deadline_misses: u64,
    pub results_overflowed: u64,
    pub latency_p50_ms: f32,
    pub latency_p99_ms: f32,
    /// The engine's current estimate of one encoder run.
    pub run_ms: f32,
}

/// A running live engine: a worker thread that owns the encoder and scores the newest frame.
///
/// Underneath: a `Box` holding the engine and the producer's pending slot. Created by
/// `usq_engine_start`, freed by `usq_engine_free`.
///
/// Threads: frames go in through the engine's one `usq_producer` (`usq_engine_producer_new`),
/// used by one thread at a time. Results and statistics may be read from any thread
/// (`usq_engine_next_result`, `usq_engine_wait_result`, `usq_engine_get_stats`). No call may
/// race with `usq_engine_free`.
pub struct usq_engine {
    engine: Engine,
}

/// Fills `config` with defaults for frames up to `max_width` x `max_height`: 4 slots, 33 ms
/// budget (30 fps), a 30-frame window, whole frame, batch 1. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_engine_config_default(
    config: *mut usq_engine_config,
    max_width: u32,
    max_height: u32,
) -> usq_status {
    boundary(|| {
        let config = try_status!(try_out(config, "config"));
        let d = EngineConfig::for_frames(max_width as usize, max_height as usize);
        config.write(usq_engine_config {
            struct_size: std::mem::size_of::<usq_engine_config>() as u32,
            max_width,
            max_height,
            ring_capacity: d.ring_capacity as u32,
            budget_ms: d.budget_ms,
            window_frames: d.window_frames as u32,
            roi_x: 0,
            roi_y: 0,
            roi_width: 0,
            roi_height: 0,
            batch: 1,
            result_capacity: d.result_capacity as u32,
            threads: 1,
        });
        usq_status::USQ_OK
    })
}

/// Starts an engine. `model_path` and `manifold_dir` may be NULL for the shipped defaults
/// (for the model: the faster of the shipped two on this CPU, the int8 one where it has
/// integer dot products (x86 VNNI, ARM), else the fp32 one: see docs/c-api.md); `organ` may be NULL to combine all organs. Loads and optimises the model, runs it twice to
/// warm up, and starts the worker: the only call that takes long. On success `*out` holds the
/// engine. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_engine_start(
    model_path: *const c_char,
    manifold_dir: *const c_char,
    organ: *const c_char,
    config: *const usq_engine_config,
    out: *mut *mut usq_engine,
) -> usq_status {
    boundary(|| {
        let out = try_status!(try_out(out, "out"));
        let c = *try_status!(unsafe { try_ref(config, "config") });
        try_status!(check_struct_size::<usq_engine_config>(c.struct_size, "config"));
        if c.max_width == 0 || c.max_height == 0 {
            return fail(usq_status::USQ_ERR_INVALID_ARGUMENT, "max_width and max_height must be positive");
        }
        let organ = try_status!(unsafe { opt_str(organ, "organ") });
        let options = usq_core::EncoderOptions { batch: c.batch as usize, threads: c.threads as usize };
        // Checked before the model loads (seconds), so a bad config fails at once.
        try_status!(options.check().and_then(|_| usq_core::engine::check_batch(options.batch)).map_err(from_error));
        let mut cfg = EngineConfig::for_frames(c.max_width as usize, c.max_height as usize);
        cfg.ring_capacity = c.ring_capacity as usize;
        cfg.budget_ms = c.budget_ms;
        cfg.window_frames = c.window_frames as u64;
        cfg.result_capacity = c.result_capacity as usize;
        cfg.organ = organ.map(String::from);
        if c.roi_width != 0 {
            cfg.roi = Some(Roi {
                x: c.roi_x as usize,
                y: c.roi_y as usize,
                width: c.roi_width as usize,
                height: c.roi_height as usize,
            });
        }
        try_status!(cfg.check().map_err(from_error));
        // Whole patches on separate cores (frame threads), not tract's executor: see
        // usq::Scorer::with_threads.
        let single = usq_core::EncoderOptions { threads: 1, ..options };
        let mut scorer = try_status!(unsafe { load_scorer(model_path, manifold_dir, single, ModelSource::Live) });
        try_status!(scorer.set_frame_threads(options.threads).map_err(from_error));
        let engine = try_status!(Engine::start(scorer, cfg).map_err(from_error));
        let handle = Box::new(usq_engine { engine });
        out.write(Box::into_raw(handle));
        usq_status::USQ_OK
    })
}

/// The producer side of an engine: the one way frames go in.
///
/// Underneath: a `Box` holding the library's `Producer` (which shares the engine's frame ring).
/// Created by `usq_engine_producer_new`, freed by `usq_producer_free`. An engine has at most
/// one producer at a time (a second `usq_engine_producer_new` gets `USQ_ERR_BUSY` until the
/// first is freed). One thread at a time per producer: typically the frame grabber's.
pub struct usq_producer {
    producer: Producer,
}

/// Creates the engine's producer into `*out`. `USQ_ERR_BUSY` if it already has one. Any
/// thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_engine_producer_new(engine: *const usq_engine, out: *mut *mut usq_producer) -> usq_status {
    boundary(|| {
        let e = try_status!(unsafe { try_ref(engine, "engine") });
        let out = try_status!(try_out(out, "out"));
        let producer = try_status!(e.engine.producer().map_err(from_error));
        out.write(Box::into_raw(Box::new(usq_producer { producer })));
        usq_status::USQ_OK
    })
}

/// Frees a producer; a slot still acquired is given back. NULL is accepted. The engine may be
/// freed before or after its producer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_producer_free(producer: *mut usq_producer) {
    boundary(|| drop(unsafe { try_take(producer, "producer") }));
}

/// Copies a frame into the engine's ring; `len` must cover the frame described by `desc`.
/// `frame_id` may be NULL. Never blocks, never allocates. `USQ_ERR_WRONG_STATE` while a slot
/// is acquired.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_producer_push(
    producer: *mut usq_producer,
    data: *const u8,
    len: usize,
    desc: *const usq_frame_desc,
    timestamp_us: u64,
    frame_id: *mut u64,
) -> usq_status {
    boundary(|| {
        let p = try_status!(unsafe { try_mut(producer, "producer") });
        try_status!(check_ptr(data, "data"));
        try_status!(check_opt_ptr(frame_id, "frame_id"));
        let layout = try_status!(unsafe { layout_of(desc) });
        // SAFETY: the caller vouches for `len` readable bytes at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        let id = try_status!(p.producer.push(bytes, layout, timestamp_us).map_err(from_error));
        write_opt(frame_id, id);
        usq_status::USQ_OK
    })
}

/// Zero-copy input: takes a frame slot and gives its buffer (`*capacity` bytes) to fill, e.g.
/// by the capture DMA; only `usq_producer_commit` or `usq_producer_abandon` (or freeing the
/// producer) gives it back. `USQ_ERR_WRONG_STATE` if a slot is already acquired.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_producer_acquire(
    producer: *mut usq_producer,
    buffer: *mut *mut u8,
    capacity: *mut usize,
) -> usq_status {
    boundary(|| {
        let p = try_status!(unsafe { try_mut(producer, "producer") });
        let buffer = try_status!(try_out(buffer, "buffer"));
        let capacity = try_status!(try_out(capacity, "capacity"));
        let buf = try_status!(p.producer.acquire().map_err(from_error));
        buffer.write(buf.as_mut_ptr());
        capacity.write(buf.len());
        usq_status::USQ_OK
    })
}

/// Publishes the acquired slot as a frame described by `desc`. A `desc` the slot cannot hold
/// (`USQ_ERR_WRONG_SIZE`) or that is malformed gives the slot back and the frame is lost.
/// `frame_id` may be NULL. `USQ_ERR_WRONG_STATE` if no slot is acquired.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_producer_commit(
    producer: *mut usq_producer,
    desc: *const usq_frame_desc,
    timestamp_us: u64,
    frame_id: *mut u64,
) -> usq_status {
    boundary(|| {
        let p = try_status!(unsafe { try_mut(producer, "producer") });
        try_status!(check_opt_ptr(frame_id, "frame_id"));
        let layout = match unsafe { layout_of(desc) } {
            Ok(l) => l,
            Err(s) => {
                // The slot is not published; give it back (a no-op when none is acquired).
                let _ = p.producer.abandon();
                return s;
            }
        };
        let id = try_status!(p.producer.commit(layout, timestamp_us).map_err(from_error));
        write_opt(frame_id, id);
        usq_status::USQ_OK
    })
}

/// Gives the acquired slot back without publishing it. `USQ_ERR_WRONG_STATE` if none is
/// acquired.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_producer_abandon(producer: *mut usq_producer) -> usq_status {
    boundary(|| {
        let p = try_status!(unsafe { try_mut(producer, "producer") });
        try_status!(p.producer.abandon().map_err(from_error));
        usq_status::USQ_OK
    })
}

/// Writes an optional out-argument already checked with `check_opt_ptr`.
fn write_opt<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: checked non-null and aligned by the caller.
        unsafe { p.write(value) };
    }
}

fn write_result(out: crate::Out<usq_result>, r: &usq_core::engine::LiveResult) {
    // SAFETY: checked pointer (`result_out`); the caller set struct_size.
    let size = unsafe { (*out.as_ptr()).struct_size } as usize;
    out.write_prefix(
        usq_result {
            struct_size: size as u32,
            frame_id: r.frame_id,
            timestamp_us: r.timestamp_us,
            nrq: r.nrq,
            patches_scored: r.patches_scored,
            coverage: r.coverage,
            latency_ms: r.latency_ms,
            deadline_missed: r.deadline_missed as u32,
            checks: usq_checks::of(&r.checks, r.faults),
            quality: r.quality.unwrap_or(f64::NAN),
        },
        size,
    );
}

fn result_out(out: *mut usq_result) -> Result<crate::Out<usq_result>, usq_status> {
    let out = try_out(out, "result")?;
    // SAFETY: checked pointer; the caller set struct_size.
    let size = unsafe { (*out.as_ptr()).struct_size };
    if size as usize != RESULT_V02_SIZE && size as usize != RESULT_V03_SIZE {
        check_struct_size::<usq_result>(size, "result")?;
    }
    Ok(out)
}

/// The oldest unread result, without waiting: `USQ_OK` and `*result` filled, or `USQ_EMPTY`.
/// Never allocates. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_engine_next_result(engine: *const usq_engine, result: *mut usq_result) -> usq_status {
    boundary(|| {
        let e = try_status!(unsafe { try_ref(engine, "engine") });
        let result = try_status!(result_out(result));
        match e.engine.results().try_recv() {
            Ok(r) => {
                write_result(result, &r);
                usq_status::USQ_OK
            }
            Err(_) => usq_status::USQ_EMPTY,
        }
    })
}

/// As `usq_engine_next_result`, waiting up to `timeout_ms` for a result. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_engine_wait_result(
    engine: *const usq_engine,
    timeout_ms: u32,
    result: *mut usq_result,
) -> usq_status {
    boundary(|| {
        let e = try_status!(unsafe { try_ref(engine, "engine") });
        let result = try_status!(result_out(result));
        match e.engine.results().recv_timeout(Duration::from_millis(timeout_ms as u64)) {
            Ok(r) => {
                write_result(result, &r);
                usq_status::USQ_OK
            }
            Err(_) => usq_status::USQ_EMPTY,
        }
    })
}

/// Fills `stats` (whose `struct_size` the caller sets). Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_engine_get_stats(engine: *const usq_engine, stats: *mut usq_engine_stats) -> usq_status {
    boundary(|| {
        let e = try_status!(unsafe { try_ref(engine, "engine") });
        let stats = try_status!(try_out(stats, "stats"));
        // SAFETY: checked pointer; the caller set struct_size.
        try_status!(check_struct_size::<usq_engine_stats>(unsafe { (*stats.as_ptr()).struct_size }, "stats"));
        let s = e.engine.stats();
        stats.write(usq_engine_stats {
            struct_size: std::mem::size_of::<usq_engine_stats>() as u32,
            frames_pushed: s.frames_pushed,
            frames_scored: s.frames_scored,
            frames_dropped: s.frames_dropped,
            frames_skipped: s.frames_skipped,
            frames_failed: s.frames_failed,
            deadline_misses: s.deadline_misses,
            results_overflowed: s.results_overflowed,
            latency_p50_ms: s.latency_p50_ms,
            latency_p99_ms: s.latency_p99_ms,
            run_ms: s.run_ms,
        });
        usq_status::USQ_OK
    })
}

/// Stops the worker (after the frame in progress) and frees the engine. NULL is accepted. The handle must not be used afterwards, nor
/// concurrently with this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_engine_free(engine: *mut usq_engine) {
    boundary(|| {
        drop(unsafe { try_take(engine, "engine") });
    })
}
