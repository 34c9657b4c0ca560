//! Capture pixel formats: which V4L2 FourCCs usq reads, how a delivered buffer maps onto a
//! [`FrameLayout`], and MJPEG decoding. No device here, so all of it is unit-tested.

use crate::error::{Context, Result};
use crate::imaging::frame::GrayFrame;
use crate::imaging::pixel::{FrameLayout, PixelFormat};

/// The V4L2 formats usq reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// `GREY`: 8-bit gray, one byte per pixel.
    Grey,
    /// `YUYV`: packed 4:2:2, 2 bytes per pixel; gray is the Y bytes.
    Yuyv,
    /// `NV12`: a luma plane then interleaved chroma; only the luma plane is read.
    Nv12,
    /// `RGB3`: packed 8-bit RGB, 3 bytes per pixel.
    Rgb24,
    /// `BGR3`: packed 8-bit BGR, 3 bytes per pixel.
    Bgr24,
    /// Motion JPEG: each buffer is a JPEG image, decoded to gray.
    Mjpeg,
}

impl CaptureFormat {
    /// Preferred first when the device offers several: the cheapest to turn into gray, and
    /// MJPEG last (decoding costs CPU and the compression blurs speckle).
    pub const PREFERENCE: [CaptureFormat; 6] = [
        CaptureFormat::Grey,
        CaptureFormat::Yuyv,
        CaptureFormat::Nv12,
        CaptureFormat::Rgb24,
        CaptureFormat::Bgr24,
        CaptureFormat::Mjpeg,
    ];

    /// The V4L2 FourCC code, as the driver spells it (`YUYV`, `RGB3`, ...).
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            CaptureFormat::Grey => *b"GREY",
            CaptureFormat::Yuyv => *b"YUYV",
            CaptureFormat::Nv12 => *b"NV12",
            CaptureFormat::Rgb24 => *b"RGB3",
            CaptureFormat::Bgr24 => *b"BGR3",
            CaptureFormat::Mjpeg => *b"MJPG",
        }
    }

    /// The format with this FourCC; `None` for one usq does not read.
    pub fn from_fourcc(fourcc: &[u8; 4]) -> Option<CaptureFormat> {
        Self::PREFERENCE.into_iter().find(|f| &f.fourcc() == fourcc)
    }

    /// Parses a user's choice: a FourCC (`YUYV`, `GREY`, `NV12`, `RGB3`, `BGR3`, `MJPG`) or a
    /// common name (`gray`, `rgb24`, `bgr24`, `mjpeg`), case-insensitive.
    pub fn parse(s: &str) -> Result<CaptureFormat> {
        let up = s.trim().to_ascii_uppercase();
        let alias = match up.as_str() {
            "GRAY" | "GRAY8" | "GREY" => Some(CaptureFormat::Grey),
            "RGB24" | "RGB" => Some(CaptureFormat::Rgb24),
            "BGR24" | "BGR" => Some(CaptureFormat::Bgr24),
            "MJPEG" | "JPEG" => Some(CaptureFormat::Mjpeg),
            _ => None,
        };
        if let Some(f) = alias {
            return Ok(f);
        }
        match <[u8; 4]>::try_from(up.as_bytes()).ok().and_then(|b| Self::from_fourcc(&b)) {
            Some(f) => Ok(f),
            None => crate::bail!(
                InvalidArgument,
                "unknown capture format {s:?}: expected one of GREY, YUYV, NV12, RGB3, BGR3, MJPG"
            ),
        }
    }

    /// The engine's layout for raw formats; `None` for MJPEG, which is decoded first.
    pub fn pixel_format(self) -> Option<PixelFormat> {
        match self {
            CaptureFormat::Grey => Some(PixelFormat::Gray8),
            CaptureFormat::Yuyv => Some(PixelFormat::Yuyv),
            // Gray is the luma plane, which comes first: the chroma plane is never read, and
            // some layers (PipeWire's) report only the luma plane's bytes as used.
            CaptureFormat::Nv12 => Some(PixelFormat::Gray8),
            CaptureFormat::Rgb24 => Some(PixelFormat::Rgb24),
            CaptureFormat::Bgr24 => Some(PixelFormat::Bgr24),
            CaptureFormat::Mjpeg => None,
        }
    }

    /// The FourCC as text, for messages and for [`CaptureFormat::parse`].
    pub fn name(self) -> &'static str {
        std::str::from_utf8(match self {
            CaptureFormat::Grey => b"GREY",
            CaptureFormat::Yuyv => b"YUYV",
            CaptureFormat::Nv12 => b"NV12",
            CaptureFormat::Rgb24 => b"RGB3",
            CaptureFormat::Bgr24 => b"BGR3",
            CaptureFormat::Mjpeg => b"MJPG",
        })
        .unwrap_or("?")
    }

    /// The layout of the frames this format hands to the engine: the device's rows (with its
    /// stride; 0 = packed) for raw formats, packed gray for MJPEG.
    pub fn engine_layout(self, width: usize, height: usize, stride: usize) -> Result<FrameLayout> {
        let layout = match self.pixel_format() {
            Some(pf) => {
                let packed = FrameLayout::packed(width, height, pf);
                FrameLayout { stride: if stride == 0 { packed.stride } else { stride }, ..packed }
            }
            None => FrameLayout::packed(width, height, PixelFormat::Gray8),
        };
        layout.required_bytes().with_context(|| format!("{} {width}x{height} stride {stride}", self.name()))?;
        Ok(layout)
    }
}

/// A frame as the engine takes it: borrowed device memory for raw formats, or the decoded
/// gray plane of an MJPEG buffer.
pub struct CapturedFrame<'a> {
    /// The frame's bytes, laid out as `layout` says (at least its required bytes).
    pub data: &'a [u8],
    /// Size, pixel format and row stride of `data`.
    pub layout: FrameLayout,
    /// Capture time from the driver, in microseconds.
    pub timestamp_us: u64,
    /// The driver's frame counter.
    pub sequence: u32,
}

/// Checks one delivered buffer against the negotiated layout (raw formats), or decodes it
/// into `decoded` (MJPEG). An error means the buffer is unusable and is skipped.
///
/// An MJPEG frame is taken at its own size, which may differ from the negotiated one: a
/// capture card whose source switches resolution keeps the negotiated format and sends JPEG
/// images of the new size. The returned layout says which; the stream reports the change.
pub fn frame_from_buffer<'a>(
    format: CaptureFormat,
    layout: FrameLayout,
    buffer: &'a [u8],
    decoded: &'a mut Option<GrayFrame>,
) -> Result<(&'a [u8], FrameLayout)> {
    if format == CaptureFormat::Mjpeg {
        let frame = decoded.insert(decode_mjpeg(buffer)?);
        let own = if (frame.width, frame.height) == (layout.width, layout.height) {
            layout
        } else {
            CaptureFormat::Mjpeg.engine_layout(frame.width, frame.height, 0)?
        };
        return Ok((&frame.pixels, own));
    }
    let need = layout.required_bytes()?;
    if buffer.len() < need {
        crate::bail!(
            InvalidArgument,
            "short {:?} buffer: {} bytes, a {}x{} frame needs {need}",
            layout.format,
            buffer.len(),
            layout.width,
            layout.height
        );
    }
    Ok((buffer, layout))
}

/// Decodes one MJPEG buffer into gray. Capture cards send bare JPEG images (often without
/// Huffman tables, which the decoder supplies), sometimes with padding after the end marker.
pub fn decode_mjpeg(buffer: &[u8]) -> Result<GrayFrame> {
    if buffer.len() < 4 || buffer[..2] != [0xFF, 0xD8] {
        crate::bail!(Image, "corrupt MJPEG frame: no JPEG start marker ({} bytes)", buffer.len());
    }
    // A frame cut short on the wire lacks its end marker; the decoder would fill the rest
    // with gray and score an image that was never on the screen.
    let end = buffer.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if end < 2 || buffer[end - 2..end] != [0xFF, 0xD9] {
        crate::bail!(Image, "corrupt MJPEG frame: truncated (no JPEG end marker, {} bytes)", buffer.len());
    }
    let img = crate::imaging::frame::decode_bounded(buffer, image::ImageFormat::Jpeg).context("corrupt MJPEG frame")?;
    GrayFrame::from_image(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::GrayImage::from_fn(width, height, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn fourccs_round_trip_and_parse() {
        for f in CaptureFormat::PREFERENCE {
            assert_eq!(CaptureFormat::from_fourcc(&f.fourcc()), Some(f));
            assert_eq!(CaptureFormat::parse(f.name()).unwrap(), f);
        }
        assert_eq!(CaptureFormat::parse("mjpeg").unwrap(), CaptureFormat::Mjpeg);
        assert_eq!(CaptureFormat::parse("gray").unwrap(), CaptureFormat::Grey);
        assert!(CaptureFormat::parse("H264").unwrap_err().to_string().contains("unknown capture format"));
        assert_eq!(CaptureFormat::from_fourcc(b"H264"), None);
    }

    #[test]
    fn layouts_follow_the_device_stride() {
        let l = CaptureFormat::Yuyv.engine_layout(640, 480, 1344).unwrap();
        assert_eq!((l.format, l.stride), (PixelFormat::Yuyv, 1344));
        let l = CaptureFormat::Yuyv.engine_layout(640, 480, 0).unwrap();
        assert_eq!(l.stride, 1280);
        let l = CaptureFormat::Nv12.engine_layout(640, 480, 704).unwrap();
        assert_eq!((l.format, l.stride, l.required_bytes().unwrap()), (PixelFormat::Gray8, 704, 704 * 479 + 640));
        let l = CaptureFormat::Mjpeg.engine_layout(640, 480, 0).unwrap();
        assert_eq!((l.format, l.stride), (PixelFormat::Gray8, 640));
        // A stride shorter than a row is the device lying: refused.
        assert!(CaptureFormat::Rgb24.engine_layout(640, 480, 640).is_err());
        assert!(CaptureFormat::Grey.engine_layout(0, 480, 0).is_err());
    }

    #[test]
    fn short_raw_buffers_are_refused() {
        let layout = CaptureFormat::Grey.engine_layout(32, 8, 0).unwrap();
        let mut none = None;
        let buf = vec![7u8; 32 * 8];
        let (data, l) = frame_from_buffer(CaptureFormat::Grey, layout, &buf, &mut none).unwrap();
        assert_eq!((data.len(), l), (256, layout));
        let err = frame_from_buffer(CaptureFormat::Grey, layout, &buf[..100], &mut none).err().unwrap();
        assert!(err.to_string().contains("short"), "{err}");
    }

    #[test]
    fn mjpeg_decodes_and_corrupt_frames_are_errors() {
        let good = jpeg(48, 32);
        let layout = CaptureFormat::Mjpeg.engine_layout(48, 32, 0).unwrap();
        let mut decoded = None;
        let (data, l) = frame_from_buffer(CaptureFormat::Mjpeg, layout, &good, &mut decoded).unwrap();
        assert_eq!((data.len(), l.format), (48 * 32, PixelFormat::Gray8));
        // The decoded gray matches the project's still-image decoder.
        assert_eq!(data, &GrayFrame::decode(&good).unwrap().pixels[..]);

        // Truncated in the entropy-coded data, garbage, empty, no start marker: errors, no panic.
        let mut decoded = None;
        for bad in [&good[..good.len() / 2], &good[..3], &[][..], &[0u8; 64][..]] {
            let err = frame_from_buffer(CaptureFormat::Mjpeg, layout, bad, &mut decoded).err();
            assert!(err.is_some_and(|e| e.to_string().contains("corrupt MJPEG")), "{} bytes", bad.len());
        }
        let mut flipped = good.clone();
        for b in flipped[good.len() / 3..good.len() / 3 + 40].iter_mut() {
            *b = 0xFF;
        }
        let _ = frame_from_buffer(CaptureFormat::Mjpeg, layout, &flipped, &mut decoded); // no panic
        // A frame of another size than negotiated is taken at its own size.
        let other = jpeg(40, 24);
        let (data, l) = frame_from_buffer(CaptureFormat::Mjpeg, layout, &other, &mut decoded).unwrap();
        assert_eq!((l.width, l.height, l.format, data.len()), (40, 24, PixelFormat::Gray8, 40 * 24));
        assert_eq!(l, CaptureFormat::Mjpeg.engine_layout(40, 24, 0).unwrap());
    }

    /// `jpeg` with the size its frame header (SOF0) declares rewritten.
    fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
        let mut bytes = jpeg(16, 8);
        let sof = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).expect("a baseline JPEG");
        bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        bytes
    }

    #[test]
    fn oversize_mjpeg_frames_are_refused_before_decoding() {
        // Fuzzing's slow inputs declared 57472x258 and 9766x19750 in about 500 bytes; decoding
        // one took 14 s. The header's size is checked against the stream limits first.
        let layout = CaptureFormat::Mjpeg.engine_layout(640, 480, 0).unwrap();
        let mut decoded = None;
        for (w, h) in [(57472, 258), (9766, 19750), (16384, 4097)] {
            let err =
                frame_from_buffer(CaptureFormat::Mjpeg, layout, &jpeg_declaring(w, h), &mut decoded).err().unwrap();
            assert_eq!(err.kind(), ErrorKind::WrongSize, "{w}x{h}: {err}");
            assert!(err.to_string().contains("corrupt MJPEG frame"), "{err}");
            assert!(err.to_string().contains("larger than usq reads"), "{err}");
            assert_eq!(GrayFrame::decode(&jpeg_declaring(w, h)).unwrap_err().kind(), ErrorKind::WrongSize);
        }
        // The same rewrite within the limits passes the check and reaches the decoder.
        let small = jpeg_declaring(32, 8);
        let within = frame_from_buffer(CaptureFormat::Mjpeg, layout, &small, &mut decoded);
        assert!(!within.is_err_and(|e| e.kind() == ErrorKind::WrongSize));
    }
}
