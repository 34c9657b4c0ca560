//! Gray frames: decoding image files into the 8-bit gray plane the metrics read.
//!
//! Conversion rules (the same as the reference implementation's):
//! - 8-bit gray as is; gray+alpha drops alpha;
//! - 16-bit gray scaled by the full 16-bit range: `round(v * 255 / 65535)`;
//! - colour (RGB/RGBA, alpha ignored) with OpenCV's fixed-point ITU-R 601 weights,
//!   `(9798 R + 19235 G + 3735 B + 16384) >> 15`, which is what `cv2.cvtColor(.., RGB2GRAY)`
//!   computes on 8-bit data (not Rec.709; measured on OpenCV 4.7 and 5.0). 16-bit colour is first scaled to 8 bits per channel.

use crate::error::{Context, Error, ErrorKind, Result};
use std::path::Path;

/// Largest frame side accepted from a stream source (y4m, raw, DICOM, MJPEG) or an image file,
/// in pixels: a 16K frame; scanner video outputs are at most 4K.
pub const MAX_SIDE: usize = 16384;
/// Largest frame accepted from a stream source or an image file, in pixels (a 64-megapixel plane).
pub const MAX_PIXELS: usize = 1 << 26;

/// Checks a frame size a stream's or an image's header declares before anything is allocated
/// for it: both sides at least 1 and at most [`MAX_SIDE`], at most [`MAX_PIXELS`] in all.
pub fn check_frame_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        crate::bail!(WrongSize, "frame size {width}x{height} is empty");
    }
    if width > MAX_SIDE || height > MAX_SIDE || width * height > MAX_PIXELS {
        crate::bail!(
            WrongSize,
            "frame size {width}x{height} is larger than usq reads (at most {MAX_SIDE} a side, {MAX_PIXELS} pixels)"
        );
    }
    Ok(())
}

/// An 8-bit gray image, row-major, no padding between rows.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayFrame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` gray values, row-major.
    pub pixels: Vec<u8>,
}

impl GrayFrame {
    /// Wraps packed gray pixels; fails on a zero size or a buffer that is not `width * height`.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<GrayFrame> {
        if width == 0 || height == 0 {
            crate::bail!(Image, "image has zero size ({width}x{height})");
        }
        if pixels.len() != width * height {
            crate::bail!(
                Image,
                "pixel buffer holds {} bytes, expected {width}x{height} = {}",
                pixels.len(),
                width * height
            );
        }
        Ok(GrayFrame { width, height, pixels })
    }

    /// Decodes an image file (PNG, JPEG, BMP, TIFF) to gray.
    pub fn open(path: impl AsRef<Path>) -> Result<GrayFrame> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("reading image {}", path.display()))?;
        GrayFrame::decode(&bytes).with_context(|| format!("decoding image {}", path.display()))
    }

    /// Decodes an encoded image held in memory; the format is guessed from its content.
    pub fn decode(bytes: &[u8]) -> Result<GrayFrame> {
        if bytes.is_empty() {
            crate::bail!(Image, "file is empty");
        }
        let Ok(format) = image::guess_format(bytes) else {
            crate::bail!(Image, "not a recognised image format (PNG, JPEG, BMP or TIFF)");
        };
        GrayFrame::from_image(decode_bounded(bytes, format)?)
    }

    /// Converts a decoded image to gray (OpenCV's colour weights, 16-bit scaled by the range).
    pub fn from_image(img: image::DynamicImage) -> Result<GrayFrame> {
        from_dynamic(img)
    }
}

/// Decodes `bytes` as `format` once the size its header declares passes [`check_frame_size`]:
/// a JPEG of 500 bytes can declare 9766x19750 and keep a decoder busy for seconds (fuzzing
/// found it), which a live gauge cannot afford.
pub(crate) fn decode_bounded(bytes: &[u8], format: image::ImageFormat) -> Result<image::DynamicImage> {
    let reader = |b| image::ImageReader::with_format(std::io::Cursor::new(b), format);
    let (width, height) = guard_decoder(|| reader(bytes).into_dimensions())?;
    check_frame_size(width as usize, height as usize)?;
    guard_decoder(|| reader(bytes).decode())
}

/// Runs an image decoder that is not ours. One that panics on some input (zune-jpeg, under
/// overflow checks, on a crafted JPEG: fuzz/Cargo.toml) makes that input an error, not the end
/// of the process; the panic hook has printed it.
pub(crate) fn guard_decoder<T>(decode: impl FnOnce() -> image::ImageResult<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(decoded) => decoded.map_err(|e| Error::from_source(ErrorKind::Image, &e)),
        Err(_) => Err(Error::new(ErrorKind::Image, "the image decoder panicked on this input")),
    }
}

fn from_dynamic(img: image::DynamicImage) -> Result<GrayFrame> {
    use image::DynamicImage as D;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        crate::bail!(Image, "image has zero size ({w}x{h})");
    }
    let pixels: Vec<u8> = match img {
        D::ImageLuma8(b) => b.into_raw(),
        D::ImageLumaA8(b) => b.into_raw().chunks_exact(2).map(|p| p[0]).collect(),
        D::ImageLuma16(b) => b.into_raw().into_iter().map(u16_to_u8).collect(),
        D::ImageLumaA16(b) => b.into_raw().chunks_exact(2).map(|p| u16_to_u8(p[0])).collect(),
        D::ImageRgb8(b) => b.into_raw().chunks_exact(3).map(|p| bt601(p[0], p[1], p[2])).collect(),
        D::ImageRgba8(b) => b.into_raw().chunks_exact(4).map(|p| bt601(p[0], p[1], p[2])).collect(),
        D::ImageRgb16(b) => {
            b.into_raw().chunks_exact(3).map(|p| bt601(u16_to_u8(p[0]), u16_to_u8(p[1]), u16_to_u8(p[2]))).collect()
        }
        D::ImageRgba16(b) => {
            b.into_raw().chunks_exact(4).map(|p| bt601(u16_to_u8(p[0]), u16_to_u8(p[1]), u16_to_u8(p[2]))).collect()
        }
        other => {
            crate::bail!(Image, "unsupported pixel layout {:?}: expected 8- or 16-bit gray or colour", other.color())
        }
    };
    GrayFrame::new(w, h, pixels)
}

/// 16-bit to 8-bit over the full range, rounded to nearest.
pub fn u16_to_u8(v: u16) -> u8 {
    ((v as u32 * 255 + 32767) / 65535) as u8
}

/// OpenCV's 8-bit RGB -> gray: ITU-R 601 weights in 15-bit fixed point, rounded.
pub fn bt601(r: u8, g: u8, b: u8) -> u8 {
    ((9798 * r as u32 + 19235 * g as u32 + 3735 * b as u32 + 16384) >> 15) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_are_bounded_before_allocation() {
        assert!(check_frame_size(800, 540).is_ok());
        assert!(check_frame_size(MAX_SIDE, MAX_PIXELS / MAX_SIDE).is_ok());
        for (w, h) in [
            (0, 10),
            (10, 0),
            (MAX_SIDE + 1, 1),
            (1, MAX_SIDE + 1),
            (MAX_SIDE, MAX_SIDE),
            (2_000_000_000, 2_000_000_000),
        ] {
            assert_eq!(check_frame_size(w, h).unwrap_err().kind(), ErrorKind::WrongSize, "{w}x{h}");
        }
    }

    #[test]
    fn bt601_matches_opencv_fixed_point() {
        assert_eq!(bt601(255, 255, 255), 255);
        assert_eq!(bt601(0, 0, 0), 0);
        // OpenCV: cvtColor([[255,0,0]], RGB2GRAY) = 76, pure green 150, pure blue 29.
        assert_eq!(bt601(255, 0, 0), 76);
        assert_eq!(bt601(0, 255, 0), 150);
        assert_eq!(bt601(0, 0, 255), 29);
        // Where a 14-bit table would round up, OpenCV's 15-bit one gives 28.
        assert_eq!(bt601(0, 0, 250), 28);
    }

    #[test]
    fn sixteen_bit_full_range() {
        assert_eq!(u16_to_u8(0), 0);
        assert_eq!(u16_to_u8(65535), 255);
        assert_eq!(u16_to_u8(257 * 100), 100);
        assert_eq!(u16_to_u8(257 * 100 + 128), 100);
        assert_eq!(u16_to_u8(257 * 100 + 129), 101);
    }

    #[test]
    fn a_panicking_decoder_is_an_error() {
        let e = guard_decoder::<()>(|| panic!("a decoder bug")).unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        assert!(guard_decoder(|| Ok(3)).is_ok_and(|v| v == 3));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(GrayFrame::decode(b"").unwrap_err().kind(), ErrorKind::Image);
        assert_eq!(GrayFrame::decode(b"not an image at all").unwrap_err().kind(), ErrorKind::Image);
        // A PNG signature followed by nothing: truncated.
        let e = GrayFrame::decode(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Image);
    }
}
