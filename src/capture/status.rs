//! What a live view shows of its frame source beside the engine's counters, as it happens:
//! the capture's state (a sonographer must see that the picture stopped, not a frozen gauge)
//! and what went wrong with it. The thread feeding the engine keeps it from the capture's
//! events (`v4l2::CaptureEvent`); `usq live` draws it on its gauge and serves it to its page
//! (`/stats.json`, under `source`).

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether frames come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Frames arrive (or a clip plays).
    Playing,
    /// The capture device was lost: no frames until it comes back.
    Lost,
    /// The source ended (the clip's end, the frame limit, a stop), or its thread stopped.
    Ended,
}

/// The source as the user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// Whether frames come.
    pub state: SourceState,
    /// Seconds since the loss was reported, while the device is lost (a silent device is
    /// reported after the stream's no-frame timeout, 5 s).
    pub lost_for_s: Option<f64>,
    /// The last thing that went wrong with the source, in words.
    pub last_fault: Option<String>,
    /// Buffers that could not be used (corrupt MJPEG, short raw buffers).
    pub skipped: u64,
    /// Gaps between frames that the stream survived.
    pub stalls: u64,
    /// The longest of them, in seconds.
    pub longest_stall_s: f64,
    /// Times the frames changed size within a stream, or the source its format (announced
    /// by the driver).
    pub resizes: u64,
    /// Times the device was lost.
    pub losses: u64,
    /// Times it came back.
    pub reconnects: u64,
}

/// The status shared between the feeder thread (writes) and the gauge and page (read).
#[derive(Clone)]
pub struct SharedSource(Arc<Mutex<(SourceStatus, Option<Instant>)>>);

impl Default for SharedSource {
    fn default() -> SharedSource {
        let status = SourceStatus {
            state: SourceState::Playing,
            lost_for_s: None,
            last_fault: None,
            skipped: 0,
            stalls: 0,
            longest_stall_s: 0.0,
            resizes: 0,
            losses: 0,
            reconnects: 0,
        };
        SharedSource(Arc::new(Mutex::new((status, None))))
    }
}

impl SharedSource {
    fn with<T>(&self, f: impl FnOnce(&mut SourceStatus, &mut Option<Instant>) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (status, lost_since) = &mut *g;
        f(status, lost_since)
    }

    /// A snapshot, with the time lost so far.
    pub fn get(&self) -> SourceStatus {
        self.with(|s, since| SourceStatus { lost_for_s: since.map(|t| t.elapsed().as_secs_f64()), ..s.clone() })
    }

    /// A buffer could not be used, for `reason`.
    pub fn skipped(&self, reason: &str) {
        self.with(|s, _| {
            s.skipped += 1;
            s.last_fault = Some(format!("unusable frame skipped: {reason}"));
        });
    }

    /// Frames again after a gap of `gap`.
    pub fn stalled(&self, gap: Duration) {
        self.with(|s, _| {
            s.stalls += 1;
            s.longest_stall_s = s.longest_stall_s.max(gap.as_secs_f64());
            s.last_fault = Some(format!("no frame for {:.1} s, then frames again", gap.as_secs_f64()));
        });
    }

    /// The frames changed size within the stream, `from` (width, height) `to` another.
    pub fn resized(&self, from: (usize, usize), to: (usize, usize)) {
        self.with(|s, _| {
            s.resizes += 1;
            s.last_fault = Some(format!("frame size changed: {}x{} -> {}x{}", from.0, from.1, to.0, to.1));
        });
    }

    /// The driver announced a new source format and the device was negotiated again: as it
    /// described itself `from` and as it does now, `to` (counted with the size changes).
    pub fn source_changed(&self, from: &str, to: &str) {
        self.with(|s, _| {
            s.resizes += 1;
            s.last_fault = Some(format!("source changed: {from} -> {to}"));
        });
    }

    /// The device was lost, for `why`.
    pub fn lost(&self, why: &str) {
        self.with(|s, since| {
            s.state = SourceState::Lost;
            s.losses += 1;
            s.last_fault = Some(format!("capture lost: {why}"));
            *since = Some(Instant::now());
        });
    }

    /// Frames again, `after` the last frame before the loss (as the library counts it).
    pub fn back(&self, after: Duration, device: &str) {
        self.with(|s, since| {
            s.state = SourceState::Playing;
            s.reconnects += 1;
            *since = None;
            s.last_fault = Some(format!("capture back after {:.1} s: {device}", after.as_secs_f64()));
        });
    }

    /// The source ended: no more frames will come.
    pub fn ended(&self) {
        self.with(|s, since| {
            s.state = SourceState::Ended;
            *since = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_and_its_return_as_the_page_sees_them() {
        let src = SharedSource::default();
        assert_eq!(src.get().state, SourceState::Playing);
        src.skipped("corrupt MJPEG frame: truncated");
        src.stalled(Duration::from_millis(3100));
        src.resized((800, 540), (640, 480));
        assert_eq!(src.get().last_fault.unwrap(), "frame size changed: 800x540 -> 640x480");
        src.source_changed("/dev/video0 (card) YUYV 640x480", "/dev/video0 (card) YUYV 1280x720");
        assert_eq!(
            src.get().last_fault.unwrap(),
            "source changed: /dev/video0 (card) YUYV 640x480 -> /dev/video0 (card) YUYV 1280x720"
        );
        src.lost("/dev/video0: no frame for 5.0 s");
        let s = src.get();
        assert_eq!(
            (s.state, s.skipped, s.stalls, s.resizes, s.losses, s.reconnects),
            (SourceState::Lost, 1, 1, 2, 1, 0)
        );
        assert_eq!(s.longest_stall_s, 3.1);
        assert!(s.lost_for_s.is_some_and(|t| t >= 0.0));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "lost");
        assert_eq!(json["last_fault"], "capture lost: /dev/video0: no frame for 5.0 s");
        src.back(Duration::from_millis(8200), "/dev/video0 (camera) YUYV 640x480");
        let s = src.get();
        assert_eq!((s.state, s.reconnects, s.lost_for_s), (SourceState::Playing, 1, None));
        assert_eq!(s.last_fault.unwrap(), "capture back after 8.2 s: /dev/video0 (camera) YUYV 640x480");
        src.ended();
        assert_eq!(serde_json::to_value(src.get()).unwrap()["state"], "ended");
    }
}
