//! Frames from a capture card. [`format`](mod@format) maps what a V4L2 device delivers onto the engine's
//! pixel layouts and decodes MJPEG (pure, testable without a device); `v4l2` (feature
//! `v4l2`, Linux) negotiates a format and streams memory-mapped buffers (the driver's side in
//! `mapped_stream`, the driver's source-change events in `source_change`); [`status`] is what a
//! live view shows of its source (lost, skipped frames, stalls) as it happens.

pub mod format;
#[cfg(feature = "v4l2")]
mod mapped_stream;
#[cfg(feature = "v4l2")]
mod source_change;
pub mod status;
#[cfg(feature = "v4l2")]
pub mod v4l2;

pub use format::{CaptureFormat, CapturedFrame};
