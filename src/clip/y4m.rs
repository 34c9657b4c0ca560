//! YUV4MPEG2 (.y4m) streams: the header's size, rate and colour space, and each frame's luma
//! plane as the gray frame (chroma skipped). Reads from any buffered reader, so the parser is
//! tested and fuzzed on bytes.

use crate::Result;
use std::io::{BufRead, Read};

/// Longest y4m stream header or FRAME line read (real ones are under 100 bytes).
const MAX_LINE: u64 = 4096;

/// What a stream header says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Bytes of chroma after each frame's luma plane.
    pub chroma_bytes: usize,
    /// The stream's frame rate, if it declares a valid one.
    pub fps: Option<f64>,
}

/// Parses the stream header: `YUV4MPEG2 W<w> H<h> F<n>:<d> ... C<colourspace>`. A size past
/// the library's frame limits is an error, before anything is allocated for it.
pub fn read_header(reader: &mut impl BufRead) -> Result<Header> {
    let mut line = String::new();
    // A header is one short line; a file without a newline must not be read whole into it.
    reader.by_ref().take(MAX_LINE).read_line(&mut line)?;
    let mut words = line.split_whitespace();
    if words.next() != Some("YUV4MPEG2") {
        crate::bail!(InvalidArgument, "not a YUV4MPEG2 stream");
    }
    let (mut w, mut h, mut fps, mut colour) = (0usize, 0usize, None, "420jpeg");
    for word in words {
        let Some(tag) = word.chars().next() else { continue };
        let value = &word[tag.len_utf8()..];
        match tag {
            'W' => w = value.parse().unwrap_or(0),
            'H' => h = value.parse().unwrap_or(0),
            'F' => {
                fps = value.split_once(':').and_then(|(n, d)| {
                    let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
                    let f = n / d;
                    (d > 0.0 && f.is_finite() && f > 0.0).then_some(f)
                })
            }
            'C' => colour = value,
            _ => {}
        }
    }
    if w == 0 || h == 0 {
        crate::bail!(InvalidArgument, "the y4m header has no size");
    }
    crate::imaging::frame::check_frame_size(w, h).map_err(|e| e.context("the y4m header"))?;
    let chroma_bytes = match colour {
        c if c.starts_with("420") => 2 * w.div_ceil(2) * h.div_ceil(2),
        "422" => 2 * w.div_ceil(2) * h,
        "444" => 2 * w * h,
        "mono" => 0,
        other => crate::bail!(InvalidArgument, "y4m colour space {other} is not supported"),
    };
    Ok(Header { width: w, height: h, chroma_bytes, fps })
}

/// Reads one `FRAME` into `luma` (`width * height` bytes) and skips its chroma; `false` at the
/// end of the stream.
pub fn read_frame(reader: &mut impl BufRead, luma: &mut [u8], chroma_bytes: usize) -> Result<bool> {
    let mut line = String::new();
    if reader.by_ref().take(MAX_LINE).read_line(&mut line)? == 0 {
        return Ok(false);
    }
    if !line.starts_with("FRAME") {
        crate::bail!(InvalidArgument, "corrupt y4m stream: expected FRAME, found {:?}", line.trim_end());
    }
    reader
        .read_exact(luma)
        .map_err(|e| crate::Error::from_source(crate::ErrorKind::Io, &e).context("truncated y4m frame"))?;
    std::io::copy(&mut reader.by_ref().take(chroma_bytes as u64), &mut std::io::sink())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frames_and_their_luma() {
        let mut bytes = b"YUV4MPEG2 W4 H2 F25:1 Ip A1:1 C420jpeg\n".to_vec();
        for v in [10u8, 20] {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend(std::iter::repeat_n(v, 8));
            bytes.extend(std::iter::repeat_n(128, 4)); // 2x1 U and V
        }
        let mut r = std::io::Cursor::new(bytes);
        let h = read_header(&mut r).unwrap();
        assert_eq!(h, Header { width: 4, height: 2, chroma_bytes: 4, fps: Some(25.0) });
        let mut luma = [0u8; 8];
        assert!(read_frame(&mut r, &mut luma, h.chroma_bytes).unwrap());
        assert_eq!(luma, [10; 8]);
        assert!(read_frame(&mut r, &mut luma, h.chroma_bytes).unwrap());
        assert_eq!(luma, [20; 8]);
        assert!(!read_frame(&mut r, &mut luma, h.chroma_bytes).unwrap());
    }

    #[test]
    fn hostile_headers_are_errors() {
        for header in [
            &b"YUV4MPEG2 W2000000000 H2000000000 C420\n"[..],
            b"YUV4MPEG2 W0 H10\n",
            b"YUV4MPEG2 W10 H10 Cxyz\n",
            b"YUV4MPEG2 W10 H10 F1:0 C\xc3\xa9\n",
            b"MPEG W10 H10\n",
            b"",
        ] {
            let r = read_header(&mut std::io::Cursor::new(header));
            assert!(r.is_err(), "{:?} was accepted", String::from_utf8_lossy(header));
        }
        // A rate of 0:1 is no rate, and a word that starts with a multi-byte character is an
        // unknown tag: neither is a stream error.
        let h = read_header(&mut std::io::Cursor::new("YUV4MPEG2 W4 H2 F0:1 éx\n".as_bytes())).unwrap();
        assert_eq!(h.fps, None);
    }
}
