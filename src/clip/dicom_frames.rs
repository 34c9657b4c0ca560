//! Compressed frames checked before dicom-transfer-syntax-registry's decoders (0.10) see them:
//! they trust what a frame declares, and panic or allocate on it (found by the fuzz target
//! `dicom_encapsulated`).
//! - RLE: the decoder trusts the fragment's header and segments. Here the header is read and
//!   what each segment decodes to counted, without storing it, as that decoder reads them.
//! - JPEG: the decoder decodes at the size the JPEG's own frame header (SOF) declares, up to
//!   65535 x 65535, then copies that into a buffer of the DICOM frame's size. Here the JPEG's
//!   markers are walked and every SOF must declare the DICOM frame's size and samples.

/// What a frame must be: its rows, columns, samples a pixel and bytes a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
    /// Rows (height).
    pub rows: usize,
    /// Columns (width).
    pub cols: usize,
    /// Samples a pixel (1 gray, 3 colour).
    pub samples: usize,
    /// Bytes a sample (1 or 2).
    pub bytes: usize,
}

/// DICOM RLE allows at most 15 segments (PS3.5 G.5).
const MAX_SEGMENTS: u32 = 15;

/// Checks one frame's RLE fragment: a header the decoder can read, and every segment it will
/// use decoding to at least a byte a pixel.
pub fn check_rle(fragment: &[u8], shape: FrameShape) -> Result<(), String> {
    let FrameShape { rows, cols, samples, bytes } = shape;
    let word = |i: usize| fragment.get(4 * i..4 * i + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    let count =
        word(0).ok_or_else(|| format!("an RLE fragment of {} bytes, shorter than its header", fragment.len()))?;
    let wanted = samples * bytes;
    if count > MAX_SEGMENTS || count as usize != wanted {
        return Err(format!("an RLE header of {count} segments, for {samples} samples of {bytes} bytes"));
    }
    // The decoder reads the offsets, then takes each segment to the next offset (the last to the
    // fragment's end).
    let mut offsets =
        (1..=count as usize).map(word).collect::<Option<Vec<u32>>>().ok_or("an RLE header past its fragment")?;
    offsets.push(fragment.len() as u32);
    let pixels = rows * cols;
    for (i, pair) in offsets.windows(2).enumerate() {
        let Some(segment) = fragment.get(pair[0] as usize..pair[1] as usize) else {
            return Err(format!(
                "RLE segment {i} at bytes {}..{} of a {}-byte fragment",
                pair[0],
                pair[1],
                fragment.len()
            ));
        };
        let decoded = packbits_len(segment).ok_or(format!("RLE segment {i} ends inside a run"))?;
        if decoded < pixels {
            return Err(format!("RLE segment {i} decodes to {decoded} bytes, for {pixels} pixels"));
        }
    }
    Ok(())
}

/// The bytes a PackBits segment decodes to, read as the decoder reads it (a literal run cut by
/// the segment's end counts the bytes there are); `None` where a header or a repeated byte is
/// missing.
fn packbits_len(segment: &[u8]) -> Option<usize> {
    let (mut at, mut out) = (0, 0usize);
    while at < segment.len() {
        let h = segment[at] as i8;
        at += 1;
        match h {
            -127..=-1 => {
                segment.get(at)?;
                at += 1;
                out += (1 - h as isize) as usize;
            }
            0.. => {
                let n = h as usize + 1;
                out += n.min(segment.len() - at);
                at += n;
            }
            -128 => {}
        }
    }
    Some(out)
}

/// The bytes the JPEG decoder is given for `frame`, gathered as it gathers them: the frame's
/// fragment when there is one a frame (or only one), else the fragments from the frame's entry
/// in the basic offset table to the next one's.
pub fn jpeg_frame_data<'a>(
    fragments: &'a [Vec<u8>],
    offsets: &[u32],
    frames: usize,
    frame: usize,
) -> Option<std::borrow::Cow<'a, [u8]>> {
    if fragments.len() == 1 || fragments.len() == frames {
        return fragments.get(frame).map(|f| std::borrow::Cow::Borrowed(&f[..]));
    }
    let base = match offsets.get(frame) {
        Some(&o) => o as usize,
        None if frame == 0 => 0,
        None => return None,
    };
    let next = offsets.get(frame + 1).map(|&o| o as usize);
    let (mut offset, mut data) = (0usize, Vec::new());
    for fragment in fragments {
        if offset >= base {
            data.extend_from_slice(fragment);
        }
        // Each fragment is an item: an 8-byte header, then its bytes.
        offset += fragment.len() + 8;
        if next.is_some_and(|n| offset >= n) {
            break;
        }
    }
    Some(std::borrow::Cow::Owned(data))
}

/// Checks the frame data the JPEG decoder will be given: a JPEG whose every frame header (SOF)
/// declares `shape`'s rows, columns and samples, at 8 bits a sample or, for 2-byte samples, at
/// most 16.
pub fn check_jpeg(data: &[u8], shape: FrameShape) -> Result<(), String> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err("a JPEG frame that does not start with SOI".into());
    }
    let (mut at, mut frames) = (2, 0);
    while at < data.len() {
        // A marker: 0xFF, fill bytes, then its code.
        if data[at] != 0xFF {
            return Err(format!("a JPEG frame with no marker at byte {at}"));
        }
        while data.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&code) = data.get(at) else { break };
        at += 1;
        match code {
            0xD9 => break, // EOI
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = match data.get(at..at + 2) {
            Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
            None => break,
        };
        if len < 2 || at + len > data.len() {
            return Err(format!(
                "a JPEG segment (marker FF{code:02X}) of {len} bytes at byte {at}, past the frame's end"
            ));
        }
        let segment = &data[at + 2..at + len];
        at += len;
        // SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC).
        if matches!(code, 0xC0..=0xCF) && !matches!(code, 0xC4 | 0xC8 | 0xCC) {
            let [precision, h0, h1, w0, w1, components, ..] = *segment else {
                return Err("a JPEG frame header shorter than its fields".into());
            };
            let (h, w) = (u16::from_be_bytes([h0, h1]) as usize, u16::from_be_bytes([w0, w1]) as usize);
            let precision_fits = if shape.bytes == 1 { precision <= 8 } else { precision <= 16 };
            if (h, w, components as usize) != (shape.rows, shape.cols, shape.samples) || !precision_fits {
                return Err(format!(
                    "a JPEG of {w}x{h}, {components} components of {precision} bits, in a DICOM frame of {}x{}, {} samples of {} bits",
                    shape.cols,
                    shape.rows,
                    shape.samples,
                    shape.bytes * 8
                ));
            }
            frames += 1;
        }
        if code == 0xDA {
            // SOS: entropy-coded data to the next marker that is not a stuffed byte or a restart.
            let marker = |i: usize| data[i] == 0xFF && !matches!(data[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF);
            while at + 1 < data.len() && !marker(at) {
                at += 1;
            }
            if at + 1 >= data.len() {
                break;
            }
        }
    }
    if frames == 0 {
        return Err("a JPEG frame without a frame header (SOF)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(rows: usize, cols: usize) -> FrameShape {
        FrameShape { rows, cols, samples: 1, bytes: 1 }
    }

    /// A frame of `pixels` gray 8-bit pixels: the header, then one segment of literal runs.
    fn frame(pixels: &[u8]) -> Vec<u8> {
        let mut out = 1u32.to_le_bytes().to_vec();
        out.extend_from_slice(&64u32.to_le_bytes());
        out.resize(64, 0);
        for run in pixels.chunks(128) {
            out.push(run.len() as u8 - 1);
            out.extend_from_slice(run);
        }
        out
    }

    #[test]
    fn a_well_formed_frame_passes() {
        assert_eq!(check_rle(&frame(&[7; 300]), gray(10, 30)), Ok(()));
        assert_eq!(packbits_len(&[0xFE, 9, 0x80, 1, 1, 2]), Some(5));
    }

    #[test]
    fn what_made_the_decoder_panic_or_allocate_is_an_error() {
        // Header shorter than its count (the fuzz finding: a slice past the fragment's end).
        assert!(check_rle(&[1, 0, 0, 0], gray(1, 1)).unwrap_err().contains("past its fragment"));
        assert!(check_rle(&[1, 0], gray(1, 1)).unwrap_err().contains("shorter than its header"));
        // A count of 2^30 segments, which the decoder allocated before reading them.
        let mut huge = frame(&[7; 10]);
        huge[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(check_rle(&huge, gray(1, 10)).unwrap_err().contains("1073741824 segments"));
        // A segment decoding to fewer bytes than pixels: the decoder indexed past it.
        assert!(check_rle(&frame(&[7; 10]), gray(2, 10)).unwrap_err().contains("decodes to 10 bytes, for 20 pixels"));
        // Offsets out of order, a repeat without its byte.
        let mut back = frame(&[7; 10]);
        back[4..8].copy_from_slice(&900u32.to_le_bytes());
        assert!(check_rle(&back, gray(1, 10)).is_err());
        assert_eq!(packbits_len(&[0xFE]), None);
    }

    fn jpeg(width: u32, height: u32, colour: bool) -> Vec<u8> {
        let (kind, n) = if colour { (image::ExtendedColorType::Rgb8, 3) } else { (image::ExtendedColorType::L8, 1) };
        let pixels: Vec<u8> = (0..width * height * n).map(|i| (i * 37 % 251) as u8).collect();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode(&pixels, width, height, kind).unwrap();
        out
    }

    #[test]
    fn a_jpeg_of_the_frames_size_passes() {
        assert_eq!(check_jpeg(&jpeg(40, 24, false), gray(24, 40)), Ok(()));
        let colour = FrameShape { rows: 24, cols: 40, samples: 3, bytes: 1 };
        assert_eq!(check_jpeg(&jpeg(40, 24, true), colour), Ok(()));
    }

    #[test]
    fn a_jpeg_of_another_size_or_none_is_an_error() {
        // The fuzz finding: a JPEG larger than the DICOM frame, which the decoder copied past
        // the frame's buffer.
        let e = check_jpeg(&jpeg(40, 24, false), gray(8, 16)).unwrap_err();
        assert_eq!(e, "a JPEG of 40x24, 1 components of 8 bits, in a DICOM frame of 16x8, 1 samples of 8 bits");
        assert!(check_jpeg(&jpeg(40, 24, true), gray(24, 40)).is_err());
        assert!(check_jpeg(b"not a jpeg", gray(1, 1)).unwrap_err().contains("SOI"));
        // Cut inside its header: a segment past the end.
        let cut = &jpeg(40, 24, false)[..30];
        assert!(check_jpeg(cut, gray(24, 40)).is_err());
        assert!(check_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9], gray(1, 1)).unwrap_err().contains("without a frame header"));
    }
}
