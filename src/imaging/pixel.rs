//! Pixel formats a frame grabber delivers, and their conversion to the 8-bit gray plane the
//! metrics read. Conversion writes into a caller's buffer and never allocates.

use crate::error::Result;
use crate::imaging::frame::{bt601, u16_to_u8};

/// Layouts of incoming frames. Multi-byte samples are little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PixelFormat {
    /// 8-bit gray.
    Gray8 = 1,
    /// 16-bit gray, scaled by the full 16-bit range.
    Gray16 = 2,
    /// 8-bit R, G, B.
    Rgb24 = 3,
    /// 8-bit B, G, R.
    Bgr24 = 4,
    /// 8-bit R, G, B, A (alpha ignored).
    Rgba = 5,
    /// Packed 4:2:2 Y0 U Y1 V; gray is the luma.
    Yuyv = 6,
    /// Planar luma followed by interleaved U/V at half resolution; gray is the luma plane.
    Nv12 = 7,
}

impl PixelFormat {
    /// Every format, in number order.
    pub const ALL: [PixelFormat; 7] = {
        use PixelFormat::*;
        [Gray8, Gray16, Rgb24, Bgr24, Rgba, Yuyv, Nv12]
    };

    /// The format with this number (the C API's pixel-format value); `None` for an unknown one.
    pub fn from_u32(v: u32) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| *f as u32 == v)
    }

    /// Bytes per pixel in the first (or only) plane.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Gray8 | PixelFormat::Nv12 => 1,
            PixelFormat::Gray16 | PixelFormat::Yuyv => 2,
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => 3,
            PixelFormat::Rgba => 4,
        }
    }
}

/// Geometry of one frame in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels (of the luma plane for NV12).
    pub height: usize,
    /// Bytes from the start of one row to the next (of the luma plane for NV12).
    pub stride: usize,
    /// How each pixel is stored.
    pub format: PixelFormat,
}

impl FrameLayout {
    /// A tightly packed layout.
    pub fn packed(width: usize, height: usize, format: PixelFormat) -> FrameLayout {
        FrameLayout { width, height, stride: width * format.bytes_per_pixel(), format }
    }

    /// Bytes a buffer must hold for this layout.
    pub fn required_bytes(&self) -> Result<usize> {
        if self.width == 0 || self.height == 0 {
            crate::bail!(InvalidArgument, "frame has zero size ({}x{})", self.width, self.height);
        }
        let row = self.width.checked_mul(self.format.bytes_per_pixel());
        if self.format == PixelFormat::Yuyv && !self.width.is_multiple_of(2) {
            crate::bail!(InvalidArgument, "YUYV frames need an even width, got {}", self.width);
        }
        match row {
            Some(row) if row <= self.stride => {}
            _ => crate::bail!(
                InvalidArgument,
                "stride {} is shorter than a row of {} {:?} pixels",
                self.stride,
                self.width,
                self.format
            ),
        }
        // Checked: a caller's width, height and stride may describe more bytes than exist.
        let row = self.width * self.format.bytes_per_pixel();
        let bytes = match self.format {
            // The chroma plane follows the luma plane; gray does not read it, but a frame is whole.
            PixelFormat::Nv12 => self
                .stride
                .checked_mul(self.height)
                .and_then(|luma| luma.checked_add(self.stride.checked_mul(self.height.div_ceil(2) - 1)?))
                .and_then(|b| b.checked_add(self.width)),
            _ => self.stride.checked_mul(self.height - 1).and_then(|b| b.checked_add(row)),
        };
        match bytes {
            Some(b) => Ok(b),
            None => crate::bail!(
                InvalidArgument,
                "a {}x{} {:?} frame with stride {} is larger than memory",
                self.width,
                self.height,
                self.format,
                self.stride
            ),
        }
    }
}

/// A rectangle of interest in frame pixels (the image sector, without text and UI overlays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    /// Left edge, in pixels from the frame's left.
    pub x: usize,
    /// Top edge, in pixels from the frame's top.
    pub y: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Roi {
    /// The whole frame of `layout`.
    pub fn whole(layout: &FrameLayout) -> Roi {
        Roi { x: 0, y: 0, width: layout.width, height: layout.height }
    }

    /// Fails unless the region is non-empty and lies inside a frame of `layout`.
    pub fn check_within(&self, layout: &FrameLayout) -> Result<()> {
        let inside = |start: usize, len: usize, total: usize| start.checked_add(len).is_some_and(|end| end <= total);
        if self.width == 0
            || self.height == 0
            || !inside(self.x, self.width, layout.width)
            || !inside(self.y, self.height, layout.height)
        {
            crate::bail!(
                InvalidArgument,
                "region of interest {}x{} at ({}, {}) is empty or leaves the {}x{} frame",
                self.width,
                self.height,
                self.x,
                self.y,
                layout.width,
                layout.height
            );
        }
        Ok(())
    }
}

/// Fails unless `src` holds a whole frame of `layout`.
fn check_source(src: &[u8], layout: &FrameLayout) -> Result<()> {
    let need = layout.required_bytes()?;
    if src.len() < need {
        crate::bail!(WrongSize, "the frame buffer holds {} bytes, its layout needs {need}", src.len());
    }
    Ok(())
}

/// A whole frame in any supported layout as an owned gray frame (offline use: allocates).
pub fn gray_frame(src: &[u8], layout: &FrameLayout) -> Result<crate::GrayFrame> {
    // The buffer first: the frame allocated below is then no larger than the bytes given.
    check_source(src, layout)?;
    let mut pixels = vec![0u8; layout.width * layout.height];
    to_gray(src, layout, &Roi::whole(layout), &mut pixels)?;
    crate::GrayFrame::new(layout.width, layout.height, pixels)
}

/// Converts the region `roi` of a frame to 8-bit gray, row-major into `out[..w*h]`.
pub fn to_gray(src: &[u8], layout: &FrameLayout, roi: &Roi, out: &mut [u8]) -> Result<()> {
    check_source(src, layout)?;
    roi.check_within(layout)?;
    if out.len() < roi.width * roi.height {
        crate::bail!(InvalidArgument, "gray buffer holds {} bytes, needs {}", out.len(), roi.width * roi.height);
    }
    let bpp = layout.format.bytes_per_pixel();
    for y in 0..roi.height {
        let row = &src[(roi.y + y) * layout.stride + roi.x * bpp..][..roi.width * bpp];
        let dst = &mut out[y * roi.width..(y + 1) * roi.width];
        match layout.format {
            PixelFormat::Gray8 | PixelFormat::Nv12 => dst.copy_from_slice(row),
            PixelFormat::Gray16 => {
                for (d, s) in dst.iter_mut().zip(row.chunks_exact(2)) {
                    *d = u16_to_u8(u16::from_le_bytes([s[0], s[1]]));
                }
            }
            PixelFormat::Rgb24 => {
                dst.iter_mut().zip(row.chunks_exact(3)).for_each(|(d, s)| *d = bt601(s[0], s[1], s[2]))
            }
            PixelFormat::Bgr24 => {
                dst.iter_mut().zip(row.chunks_exact(3)).for_each(|(d, s)| *d = bt601(s[2], s[1], s[0]))
            }
            PixelFormat::Rgba => {
                dst.iter_mut().zip(row.chunks_exact(4)).for_each(|(d, s)| *d = bt601(s[0], s[1], s[2]))
            }
            // Y0 U Y1 V: luma at every even byte. An odd ROI start lands on the pair's second Y.
            PixelFormat::Yuyv => dst.iter_mut().zip(row.chunks_exact(2)).for_each(|(d, s)| *d = s[0]),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes a caller (the C API, a capture header) may pass: an error, never an overflow
    /// panic or an allocation the buffer does not back.
    #[test]
    fn hostile_layouts_are_errors() {
        let big = usize::MAX / 2;
        for format in PixelFormat::ALL {
            for (width, height, stride) in
                [(2, big, big), (2, 3, usize::MAX), (big, 2, usize::MAX), (1 << 20, 1 << 20, 1 << 22)]
            {
                let layout = FrameLayout { width, height, stride, format };
                let _ = layout.required_bytes(); // no panic
                assert!(gray_frame(&[0u8; 64], &layout).is_err(), "{layout:?}");
            }
        }
        let layout = FrameLayout::packed(4, 4, PixelFormat::Gray8);
        let roi = Roi { x: usize::MAX, y: 0, width: 2, height: 2 };
        assert!(roi.check_within(&layout).is_err());
        let mut out = [0u8; 16];
        assert!(to_gray(&[0u8; 16], &layout, &roi, &mut out).is_err());
    }

    #[test]
    fn formats_agree_on_gray_content() {
        let (w, h) = (6, 3);
        let gray: Vec<u8> = (0..w * h).map(|i| (i * 13 % 256) as u8).collect();
        let roi = Roi { x: 0, y: 0, width: w, height: h };
        let stride_pad = 5;
        let mut out = vec![0u8; w * h];
        for format in PixelFormat::ALL {
            let bpp = format.bytes_per_pixel();
            let layout = FrameLayout { width: w, height: h, stride: w * bpp + stride_pad, format };
            let mut buf = vec![0xAAu8; layout.required_bytes().unwrap()];
            for y in 0..h {
                for x in 0..w {
                    let g = gray[y * w + x];
                    let p = &mut buf[y * layout.stride + x * bpp..][..bpp];
                    match format {
                        PixelFormat::Gray8 | PixelFormat::Nv12 => p[0] = g,
                        PixelFormat::Gray16 => p.copy_from_slice(&(g as u16 * 257).to_le_bytes()),
                        PixelFormat::Rgb24 | PixelFormat::Bgr24 => p.copy_from_slice(&[g, g, g]),
                        PixelFormat::Rgba => p.copy_from_slice(&[g, g, g, 7]),
                        PixelFormat::Yuyv => p.copy_from_slice(&[g, 128]),
                    }
                }
            }
            to_gray(&buf, &layout, &roi, &mut out).unwrap();
            assert_eq!(out, gray, "{format:?}");
        }
    }

    #[test]
    fn bgr_swaps_channels_and_roi_crops() {
        let layout = FrameLayout::packed(2, 2, PixelFormat::Bgr24);
        let buf = [0, 0, 255, 255, 0, 0, 0, 255, 0, 1, 2, 3];
        let mut out = [0u8; 4];
        to_gray(&buf, &layout, &Roi::whole(&layout), &mut out).unwrap();
        assert_eq!(&out[..3], &[bt601(255, 0, 0), bt601(0, 0, 255), bt601(0, 255, 0)]);
        to_gray(&buf, &layout, &Roi { x: 1, y: 1, width: 1, height: 1 }, &mut out).unwrap();
        assert_eq!(out[0], bt601(3, 2, 1));
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut out = [0u8; 64];
        let l = FrameLayout { width: 4, height: 4, stride: 3, format: PixelFormat::Gray8 };
        assert!(to_gray(&[0; 64], &l, &Roi::whole(&l), &mut out).is_err(), "stride shorter than a row");
        let l = FrameLayout::packed(4, 4, PixelFormat::Rgb24);
        assert!(to_gray(&[0; 47], &l, &Roi::whole(&l), &mut out).is_err(), "short buffer");
        assert!(to_gray(&[0; 48], &l, &Roi { x: 2, y: 0, width: 3, height: 1 }, &mut out).is_err(), "roi outside");
        let l = FrameLayout::packed(3, 2, PixelFormat::Yuyv);
        assert!(l.required_bytes().is_err(), "odd YUYV width");
        let l = FrameLayout::packed(0, 2, PixelFormat::Gray8);
        assert!(l.required_bytes().is_err(), "zero size");
        assert_eq!(PixelFormat::from_u32(6), Some(PixelFormat::Yuyv));
        assert_eq!(PixelFormat::from_u32(0), None);
    }
}
