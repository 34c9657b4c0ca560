//! Pixel-format conversion to gray with an arbitrary layout (width, height, stride, format)
//! and region of interest, as the C API and capture devices hand them over, on arbitrary bytes.
use usq::imaging::pixel::{FrameLayout, PixelFormat, Roi, gray_frame, to_gray};

fn word(data: &[u8], i: usize) -> usize {
    let b = data.get(i * 4..i * 4 + 4).unwrap_or(&[0; 4]);
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

pub fn run(data: &[u8]) {
    // Header: format, width, height, stride, roi x, y, width, height; then the frame's bytes.
    if data.len() < 32 {
        return;
    }
    let Some(format) = PixelFormat::from_u32(word(data, 0) as u32 % 8) else { return };
    // Sizes wide open (u32 each, so stride x height can pass 2^64): the conversion must refuse
    // what the bytes do not back, never overflow or allocate for it.
    let layout = FrameLayout { width: word(data, 1), height: word(data, 2), stride: word(data, 3), format };
    let roi = Roi { x: word(data, 4), y: word(data, 5), width: word(data, 6), height: word(data, 7) };
    let bytes = &data[32..];
    if let Ok(f) = gray_frame(bytes, &layout) {
        assert_eq!((f.width, f.height), (layout.width, layout.height));
    }
    let mut out = vec![0u8; 1 << 16];
    if to_gray(bytes, &layout, &roi, &mut out).is_ok() {
        assert!(roi.width * roi.height <= out.len());
    }
}
