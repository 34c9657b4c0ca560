//! One capture buffer as `usq live --device` gets it: MJPEG decoding (bare JPEG, padding,
//! truncation) and the raw formats' buffer checks against a negotiated layout.
use usq::capture::format::{CaptureFormat, frame_from_buffer};

const FORMATS: [&[u8; 4]; 6] = [b"GREY", b"YUYV", b"NV12", b"RGB3", b"BGR3", b"MJPG"];

pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Some(format) = CaptureFormat::from_fourcc(FORMATS[sel as usize % FORMATS.len()]) else { return };
    // The negotiated size the buffer is checked against: a common one, picked by the byte.
    let (w, h) = [(640, 480), (800, 600), (16, 8), (1920, 1080)][(sel as usize / 8) % 4];
    let Ok(layout) = format.engine_layout(w, h, 0) else { return };
    let mut decoded = None;
    if let Ok((bytes, l)) = frame_from_buffer(format, layout, rest, &mut decoded) {
        assert!(bytes.len() >= l.required_bytes().unwrap());
    }
}
