//! V4L2 capture through the `v4l` crate: open a device, negotiate format, size and frame
//! rate, and stream memory-mapped buffers to a callback until told to stop.
//!
//! The streaming loop is ours (`mapped_stream`, on the crate's ioctl wrappers and types)
//! rather than the crate's `mmap::Stream`, whose `next()` re-queues its last buffer before
//! every dequeue (so a dequeue that finds nothing loses track of which buffers are queued)
//! and whose `Drop` panics when the device is gone with anything but ENODEV.
//!
//! What a capture card may do and what happens then:
//! - EAGAIN or a poll that says ready with no buffer (userspace V4L2 layers do this): no frame
//!   yet; wait and dequeue again.
//! - No frame for `no_frame_timeout`: the device stopped sending (unplugged, source switched
//!   off): a clear error, and the stream is stopped.
//! - ENODEV, EIO and other errors from the driver: the device is gone; a clear error.
//! - A corrupt MJPEG frame or a short raw buffer: skipped and counted.
//! - Only unusable buffers for `no_frame_timeout` (a source that switched to a size or format
//!   the negotiated one cannot hold, or sends garbage): as a silent device, the stream is
//!   stopped with a clear error, so that supervision opens the device again and negotiates
//!   what it now sends.
//! - MJPEG frames of another size than negotiated (the source switched resolution, the card
//!   kept its format): taken at their own size, and the change is reported.
//! - A source-change event (V4L2_EVENT_SOURCE_CHANGE, from drivers that can tell: HDMI and
//!   SDI bridges): the stream ends with [`StopReason::SourceChanged`], and supervision opens
//!   the device again at once and negotiates what it now sends (not a loss).
//!
//! [`Camera::stream_supervised`] adds the policy for losing the device: with
//! [`OnLoss::Reconnect`] it reopens the device (same path, same request: the format and size
//! are negotiated again, so a source that comes back with another size or format is taken as
//! it is) until it sends frames again or the stop flag is set; with [`OnLoss::Exit`] the loss
//! is the stream's error, as with [`Camera::stream`].

use super::format::{CaptureFormat, CapturedFrame, frame_from_buffer};
use super::mapped_stream::{Dequeued, MappedStream};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::imaging::pixel::FrameLayout;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use v4l::video::Capture;
use v4l::{Device, FourCC};

/// What to ask the device for; anything left `None` is the device's current setting.
#[derive(Debug, Clone, Default)]
pub struct CaptureRequest {
    /// Pixel format; `None` picks the first the device offers in [`CaptureFormat::PREFERENCE`].
    pub format: Option<CaptureFormat>,
    /// Frame size as (width, height) in pixels; the device may answer with another.
    pub size: Option<(usize, usize)>,
    /// Frame rate in frames per second; if the device refuses it, its own rate is kept.
    pub fps: Option<f64>,
}

/// How the stream is run.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Driver buffers to map.
    pub buffers: u32,
    /// Give up when no frame arrives for this long.
    pub no_frame_timeout: Duration,
    /// How often the stop flag is looked at while waiting for a frame.
    pub poll_interval: Duration,
    /// A gap between frames at least this long is counted as a stall.
    pub stall_after: Duration,
    /// How often a lost device is tried again.
    pub reopen_interval: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            buffers: 4,
            no_frame_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            stall_after: Duration::from_secs(1),
            reopen_interval: Duration::from_millis(250),
        }
    }
}

/// Why a stream ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The stop flag was set.
    Requested,
    /// The callback asked to stop.
    Consumer,
    /// The driver announced that its source changed resolution or format: the negotiated
    /// format no longer holds, and the device is to be opened again.
    SourceChanged,
}

/// Counters of one stream.
#[derive(Debug, Clone, Default)]
pub struct CaptureStats {
    /// Frames handed to the callback.
    pub frames: u64,
    /// Buffers that could not be used (corrupt MJPEG, short raw buffers).
    pub skipped: u64,
    /// The last reason a buffer was skipped.
    pub last_skip: Option<String>,
    /// Times the device said "no frame yet" (EAGAIN, poll timeouts).
    pub retries: u64,
    /// Gaps between frames of at least [`StreamOptions::stall_after`] that the stream survived.
    pub stalls: u64,
    /// The longest gap between two frames of one stream.
    pub longest_gap: Duration,
    /// Times the frames changed size within a stream (MJPEG frames of another size), or the
    /// driver announced a new source format and the device was negotiated again.
    pub resizes: u64,
    /// Times the device was lost.
    pub losses: u64,
    /// Times it sent frames again after a loss.
    pub reconnects: u64,
    /// Time spent without the device: from the last frame before each loss to the first
    /// frame back.
    pub time_lost: Duration,
}

/// What to do when the device is lost: unplugged, failing, or silent for
/// [`StreamOptions::no_frame_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLoss {
    /// Reopen it until it sends frames again (or the stop flag is set).
    Reconnect,
    /// End the stream with the loss as its error.
    Exit,
}

/// What happened to the capture, reported as it happens, for people watching (the same
/// facts are counted in [`CaptureStats`]).
#[derive(Debug)]
pub enum CaptureEvent<'a> {
    /// A buffer could not be used (a corrupt MJPEG frame, a short raw buffer), for this reason.
    Skipped(&'a str),
    /// Frames again after a gap of at least [`StreamOptions::stall_after`].
    Stalled(Duration),
    /// The frames changed size within the stream, `from` (width, height) `to` another; the
    /// frames are taken at their new size.
    Resized {
        /// The size until now.
        from: (usize, usize),
        /// The size of the frames from now on.
        to: (usize, usize),
    },
    /// The driver announced a new source format, and the device was opened and negotiated
    /// again: as it described itself before and as it does now ([`Camera::describe`]).
    SourceChanged {
        /// The device before the change.
        from: &'a str,
        /// The device now.
        to: &'a str,
    },
    /// The device was lost; reopening follows with [`OnLoss::Reconnect`].
    Lost(&'a Error),
    /// Frames again, `after` the last frame before the loss, from the device as it now
    /// describes itself.
    Back {
        /// Time since the loss.
        after: Duration,
        /// The device as it now describes itself ([`Camera::describe`]).
        device: &'a str,
    },
}

/// An opened device with its negotiated format.
pub struct Camera {
    path: PathBuf,
    device: Device,
    card: String,
    format: CaptureFormat,
    layout: FrameLayout,
    fps: Option<f64>,
}

fn io_error(e: io::Error, what: String) -> Error {
    let hint = match e.raw_os_error() {
        Some(2) => " (no such device: is the capture card plugged in?)",
        Some(13) => " (permission denied: is this user in the video group?)",
        Some(19) => " (the device is gone: unplugged?)",
        Some(5) => " (I/O error: the device was unplugged or failed)",
        Some(25) => " (not a V4L2 device)",
        Some(16) => " (the device is busy: another program is capturing from it)",
        _ => "",
    };
    Error::from_source(ErrorKind::Io, &e).context(format!("{what}{hint}"))
}

impl Camera {
    /// Opens `path`, checks it captures video by streaming, and negotiates the format.
    pub fn open(path: &Path, request: &CaptureRequest) -> Result<Camera> {
        let name = path.display().to_string();
        let device = Device::with_path(path).map_err(|e| io_error(e, format!("opening {name}")))?;
        let caps = device.query_caps().map_err(|e| io_error(e, format!("{name}: VIDIOC_QUERYCAP")))?;
        use v4l::capability::Flags;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
            crate::bail!(InvalidArgument, "{name} ({}) is not a single-planar video capture device", caps.card);
        }
        if !caps.capabilities.contains(Flags::STREAMING) {
            crate::bail!(InvalidArgument, "{name} ({}) does not support streaming I/O", caps.card);
        }
        let offered: Vec<[u8; 4]> = device
            .enum_formats()
            .map_err(|e| io_error(e, format!("{name}: VIDIOC_ENUM_FMT")))?
            .into_iter()
            .map(|d| d.fourcc.repr)
            .collect();
        let offered_names = || offered.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect::<Vec<_>>();
        let wanted = match request.format {
            Some(f) if offered.is_empty() || offered.contains(&f.fourcc()) => f,
            Some(f) => crate::bail!(
                InvalidArgument,
                "{name} does not offer {} (it offers {})",
                f.name(),
                offered_names().join(", ")
            ),
            None => match CaptureFormat::PREFERENCE.into_iter().find(|f| offered.contains(&f.fourcc())) {
                Some(f) => f,
                None if offered.is_empty() => CaptureFormat::Yuyv,
                None => crate::bail!(
                    InvalidArgument,
                    "{name} offers {}, none of which usq reads (GREY, YUYV, NV12, RGB3, BGR3, MJPG)",
                    offered_names().join(", ")
                ),
            },
        };
        let mut fmt = device.format().map_err(|e| io_error(e, format!("{name}: VIDIOC_G_FMT")))?;
        if let Some((w, h)) = request.size {
            fmt.width = w as u32;
            fmt.height = h as u32;
        }
        fmt.fourcc = FourCC::new(&wanted.fourcc());
        let got = device.set_format(&fmt).map_err(|e| io_error(e, format!("{name}: VIDIOC_S_FMT")))?;
        // Drivers answer with what they can do, which may differ from what was asked.
        let Some(format) = CaptureFormat::from_fourcc(&got.fourcc.repr) else {
            crate::bail!(
                InvalidArgument,
                "{name} answered format {} to a request for {}; usq reads GREY, YUYV, NV12, RGB3, BGR3, MJPG",
                String::from_utf8_lossy(&got.fourcc.repr),
                wanted.name()
            );
        };
        if let Some((w, h)) = request.size
            && (got.width as usize, got.height as usize) != (w, h)
        {
            log::warn!("{name}: asked for {w}x{h}, the device gives {}x{}", got.width, got.height);
        }
        let stride = if format == CaptureFormat::Mjpeg { 0 } else { got.stride as usize };
        let layout = format
            .engine_layout(got.width as usize, got.height as usize, stride)
            .with_context(|| format!("{name}: the negotiated format is unusable"))?;
        if let Some(fps) = request.fps {
            let den = (fps * 1000.0).round().max(1.0) as u32;
            let params = v4l::video::capture::Parameters::new(v4l::Fraction::new(1000, den));
            if let Err(e) = device.set_params(&params) {
                log::warn!("{name}: cannot set {fps} fps ({e}); using the device's rate");
            }
        }
        let fps = device
            .params()
            .ok()
            .map(|p| p.interval)
            .filter(|i| i.numerator > 0 && i.denominator > 0)
            .map(|i| i.denominator as f64 / i.numerator as f64);
        Ok(Camera { path: path.to_path_buf(), device, card: caps.card, format, layout, fps })
    }

    /// The pixel format the device agreed to.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// The layout of the frames handed to the callback.
    pub fn layout(&self) -> FrameLayout {
        self.layout
    }

    /// The frame rate the device reports, if it does.
    pub fn fps(&self) -> Option<f64> {
        self.fps
    }

    /// One line for people: path, card, format, size.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}) {} {}x{}",
            self.path.display(),
            self.card,
            self.format.name(),
            self.layout.width,
            self.layout.height
        )
    }

    /// Streams until `stop` is set, `on_frame` returns `Ok(false)`, or the device fails.
    /// Unusable buffers are skipped and counted in `stats`, which is filled in either way;
    /// `on_event` hears of each skip and each stall as it happens.
    pub fn stream(
        &self,
        options: &StreamOptions,
        stop: &AtomicBool,
        stats: &mut CaptureStats,
        mut on_frame: impl FnMut(CapturedFrame<'_>) -> Result<bool>,
        mut on_event: impl FnMut(CaptureEvent<'_>),
    ) -> Result<StopReason> {
        let name = self.path.display().to_string();
        let count = options.buffers.max(2);
        let mut stream = MappedStream::new(self.device.handle(), count)
            .map_err(|e| io_error(e, format!("{name}: requesting and mapping {count} buffers")))?;
        stream.start().map_err(|e| io_error(e, format!("{name}: starting the stream")))?;
        let poll_ms = options.poll_interval.as_millis().clamp(1, i32::MAX as u128) as i32;
        // Gaps are between frames of this stream: the wait for its first frame is the device
        // starting (or coming back), not a stall.
        let (started, mut last_frame) = (Instant::now(), None::<Instant>);
        // The last frame that could be used, and the unusable buffers since.
        let (mut last_usable, mut unusable_run) = (None::<Instant>, 0u64);
        // The size of the frames as they come (MJPEG frames may change it).
        let mut size = (self.layout.width, self.layout.height);
        let mut decoded = None;
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(StopReason::Requested);
            }
            let (index, meta) = match stream.dequeue(poll_ms) {
                Ok(Dequeued::Frame(index, meta)) => (index, meta),
                Ok(Dequeued::SourceChanged) => return Ok(StopReason::SourceChanged),
                Ok(Dequeued::Nothing) => {
                    stats.retries += 1;
                    let silent = last_frame.unwrap_or(started).elapsed();
                    if silent >= options.no_frame_timeout {
                        crate::bail!(
                            Io,
                            "{name}: capture stopped: no frame for {:.1} s (unplugged, or no signal?)",
                            silent.as_secs_f64()
                        );
                    }
                    continue;
                }
                Err(e) => return Err(io_error(e, format!("{name}: capture stopped"))),
            };
            if let Some(gap) = last_frame.map(|t| t.elapsed()) {
                stats.longest_gap = stats.longest_gap.max(gap);
                if gap >= options.stall_after {
                    stats.stalls += 1;
                    on_event(CaptureEvent::Stalled(gap));
                }
            }
            last_frame = Some(Instant::now());
            let outcome = match frame_from_buffer(self.format, self.layout, stream.data(index, &meta), &mut decoded) {
                Ok((data, layout)) => {
                    stats.frames += 1;
                    (last_usable, unusable_run) = (Some(Instant::now()), 0);
                    if (layout.width, layout.height) != size {
                        let from = std::mem::replace(&mut size, (layout.width, layout.height));
                        stats.resizes += 1;
                        on_event(CaptureEvent::Resized { from, to: size });
                    }
                    #[allow(clippy::useless_conversion)] // time_t is 32-bit on armv7
                    let timestamp_us = (i64::from(meta.timestamp.tv_sec) * 1_000_000
                        + i64::from(meta.timestamp.tv_usec))
                    .max(0) as u64;
                    on_frame(CapturedFrame { data, layout, timestamp_us, sequence: meta.sequence })
                }
                Err(e) => {
                    stats.skipped += 1;
                    unusable_run += 1;
                    let reason = stats.last_skip.insert(e.to_string());
                    on_event(CaptureEvent::Skipped(reason));
                    let without = last_usable.unwrap_or(started).elapsed();
                    if without >= options.no_frame_timeout {
                        crate::bail!(
                            Io,
                            "{name}: capture stopped: no usable frame for {:.1} s ({unusable_run} unusable buffers in a \
                             row, the last: {reason})",
                            without.as_secs_f64()
                        );
                    }
                    Ok(true)
                }
            };
            stream.queue(index).map_err(|e| io_error(e, format!("{name}: capture stopped (VIDIOC_QBUF)")))?;
            if !outcome? {
                return Ok(StopReason::Consumer);
            }
        }
    }
}

impl Camera {
    /// As [`Camera::stream`], with `on_loss` deciding what a lost device means. The request
    /// is what reopening asks for; `on_event` hears of each loss and each return, and of each
    /// source change the driver announced (the device is then opened again at once, whatever
    /// `on_loss` says: a change is not a loss). Errors of `on_frame` end the stream whatever
    /// the policy: they are not the device's.
    #[allow(clippy::too_many_arguments)] // the stream's parts, each used once
    pub fn stream_supervised(
        self,
        request: &CaptureRequest,
        options: &StreamOptions,
        on_loss: OnLoss,
        stop: &AtomicBool,
        stats: &mut CaptureStats,
        mut on_frame: impl FnMut(CapturedFrame<'_>) -> Result<bool>,
        on_event: impl FnMut(CaptureEvent<'_>),
    ) -> Result<StopReason> {
        // Heard from the stream's frames (a return) and from the stream itself (skips,
        // stalls), never both at once.
        let on_event = std::cell::RefCell::new(on_event);
        let event = |e: CaptureEvent<'_>| (on_event.borrow_mut())(e);
        let path = self.path.clone();
        let mut opened = Some(self);
        // The loss dates from the last frame before it: that is when the picture stopped.
        let (mut lost_at, mut last_frame): (Option<Instant>, Option<Instant>) = (None, None);
        loop {
            // The device as it is open, or opened again until it opens or the stop flag is set.
            let cam = match opened.take() {
                Some(cam) => cam,
                None => match reopen(&path, request, options, stop, None) {
                    Ok(Some(cam)) => cam,
                    // Without a deadline only the stop flag ends the wait.
                    _ => {
                        stats.time_lost += lost_at.map_or(Duration::ZERO, |t| t.elapsed());
                        return Ok(StopReason::Requested);
                    }
                },
            };
            let (mut consumer_error, mut back) = (None, None);
            let description = cam.describe();
            let ended = cam.stream(
                options,
                stop,
                stats,
                |f| {
                    last_frame = Some(Instant::now());
                    if let Some(t) = lost_at.take() {
                        let after = t.elapsed();
                        back = Some(after);
                        event(CaptureEvent::Back { after, device: &description });
                    }
                    on_frame(f).or_else(|e| {
                        consumer_error = Some(e);
                        Ok(false)
                    })
                },
                event,
            );
            if let Some(after) = back {
                stats.reconnects += 1;
                stats.time_lost += after;
            }
            if let Some(e) = consumer_error {
                return Err(e);
            }
            let e = match ended {
                Ok(StopReason::SourceChanged) => {
                    // Close it (its buffers hold the old format), then open it again and
                    // negotiate what the source sends now.
                    drop(cam);
                    // A source still switching (a bridge without a signal lock refuses the
                    // format) gets the no-frame timeout.
                    match reopen(&path, request, options, stop, Some(options.no_frame_timeout)) {
                        Ok(Some(c)) => {
                            stats.resizes += 1;
                            event(CaptureEvent::SourceChanged { from: &description, to: &c.describe() });
                            opened = Some(c);
                            continue;
                        }
                        Ok(None) => return Ok(StopReason::Requested),
                        // It did not open again: lost, as any device that fails.
                        Err(e) => e,
                    }
                }
                Ok(reason) => return Ok(reason),
                Err(e) => e,
            };
            // Reopened but still silent or failing: the same loss goes on.
            if lost_at.is_none() {
                stats.losses += 1;
                event(CaptureEvent::Lost(&e));
                if on_loss == OnLoss::Exit {
                    return Err(e);
                }
                lost_at = Some(last_frame.unwrap_or_else(Instant::now));
            }
            // The lost device (its buffers and handle) is closed here, before it is reopened.
        }
    }
}

/// Opens `path` again, trying every reopen interval until it opens, the stop flag is set
/// (`None`) or `within` has passed (the last error, with context).
fn reopen(
    path: &Path,
    request: &CaptureRequest,
    options: &StreamOptions,
    stop: &AtomicBool,
    within: Option<Duration>,
) -> Result<Option<Camera>> {
    let since = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match Camera::open(path, request) {
            Ok(c) => return Ok(Some(c)),
            Err(e) if within.is_some_and(|w| since.elapsed() >= w) => {
                return Err(e.context(format!(
                    "{}: the source changed, and the device did not open again within {:.1} s",
                    path.display(),
                    since.elapsed().as_secs_f64()
                )));
            }
            Err(_) => std::thread::sleep(options.reopen_interval),
        }
    }
}
