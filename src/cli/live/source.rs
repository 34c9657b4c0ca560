//! Frame sources for `usq live` without a capture card: a folder of images, a raw GRAY8
//! file, a YUV4MPEG2 (.y4m) video, or a multi-frame DICOM cine, played at a frame rate.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use usq::imaging::pixel::{FrameLayout, PixelFormat};
use usq::{Context, GrayFrame};

/// A frame to push: its gray pixels and layout.
pub struct Frame {
    pub pixels: Vec<u8>,
    pub layout: FrameLayout,
}

pub enum Source {
    /// Images in name order, looped.
    Images { paths: Vec<PathBuf>, next: usize },
    /// Raw GRAY8 frames of a known size, looped.
    Raw { data: Vec<u8>, width: usize, height: usize, next: usize },
    /// A y4m stream; its luma plane is the gray frame. Looped by reopening.
    Y4m { path: PathBuf, reader: BufReader<std::fs::File>, width: usize, height: usize, chroma_bytes: usize },
    /// A DICOM cine, one frame decoded at a time, looped.
    #[cfg(feature = "dicom")]
    Dicom(Box<super::dicom::Cine>),
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

impl Source {
    /// Opens `path`: a folder of images, a `.y4m` file, or raw GRAY8 with `size`.
    /// Returns the source and the frame rate the file declares, if any.
    pub fn open(path: &Path, size: Option<(usize, usize)>) -> usq::Result<(Source, Option<f64>)> {
        if path.is_dir() {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("listing {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            paths.sort();
            if paths.is_empty() {
                usq::bail!(InvalidArgument, "{} holds no images", path.display());
            }
            return Ok((Source::Images { paths, next: 0 }, None));
        }
        if is_dicom(path) {
            #[cfg(feature = "dicom")]
            {
                let cine = super::dicom::Cine::open(path)?;
                let fps = cine.fps();
                return Ok((Source::Dicom(Box::new(cine)), fps));
            }
            #[cfg(not(feature = "dicom"))]
            usq::bail!(InvalidArgument, "{}: this usq was built without DICOM support (feature dicom)", path.display());
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("y4m")) {
            let (reader, width, height, chroma_bytes, fps) = open_y4m(path)?;
            return Ok((Source::Y4m { path: path.to_path_buf(), reader, width, height, chroma_bytes }, fps));
        }
        let Some((width, height)) = size else {
            usq::bail!(
                InvalidArgument,
                "{}: raw input needs --size WxH (or give a folder of images or a .y4m)",
                path.display()
            );
        };
        usq::imaging::frame::check_frame_size(width, height)
            .with_context(|| format!("--size for {}", path.display()))?;
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if data.len() < width * height {
            usq::bail!(InvalidArgument, "{} holds no whole {width}x{height} GRAY8 frame", path.display());
        }
        Ok((Source::Raw { data, width, height, next: 0 }, None))
    }

    /// The next frame (looping at the end).
    pub fn next_frame(&mut self) -> usq::Result<Frame> {
        match self {
            Source::Images { paths, next } => {
                let f = GrayFrame::open(&paths[*next])?;
                *next = (*next + 1) % paths.len();
                let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
                Ok(Frame { pixels: f.pixels, layout })
            }
            Source::Raw { data, width, height, next } => {
                let n = *width * *height;
                let count = data.len() / n;
                let pixels = data[*next * n..(*next + 1) * n].to_vec();
                *next = (*next + 1) % count;
                Ok(Frame { pixels, layout: FrameLayout::packed(*width, *height, PixelFormat::Gray8) })
            }
            #[cfg(feature = "dicom")]
            Source::Dicom(cine) => {
                let f = cine.next_frame()?;
                let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
                Ok(Frame { pixels: f.pixels, layout })
            }
            Source::Y4m { path, reader, width, height, chroma_bytes } => {
                let (w, h, c) = (*width, *height, *chroma_bytes);
                let mut pixels = vec![0u8; w * h];
                match read_y4m_frame(reader, &mut pixels, c)? {
                    true => {}
                    false => {
                        // End of stream: loop from the first frame.
                        let (r, ..) = open_y4m(path)?;
                        *reader = r;
                        if !read_y4m_frame(reader, &mut pixels, c)? {
                            usq::bail!(InvalidArgument, "{} holds no frame", path.display());
                        }
                    }
                }
                Ok(Frame { pixels, layout: FrameLayout::packed(w, h, PixelFormat::Gray8) })
            }
        }
    }
}

/// A `.dcm`/`.dicom` file, or any file with the DICOM preamble's `DICM` marker.
fn is_dicom(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom")) {
        return true;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..] == b"DICM"
}

type Y4mHeader = (BufReader<std::fs::File>, usize, usize, usize, Option<f64>);

/// Longest y4m stream header or FRAME line read (real ones are under 100 bytes).
const MAX_Y4M_LINE: u64 = 4096;

/// Parses the stream header: `YUV4MPEG2 W<w> H<h> F<n>:<d> ... C<colourspace>`.
fn open_y4m(path: &Path) -> usq::Result<Y4mHeader> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut header = String::new();
    // A header is one short line; a file without a newline must not be read whole into it.
    reader.by_ref().take(MAX_Y4M_LINE).read_line(&mut header).with_context(|| format!("reading {}", path.display()))?;
    let mut words = header.split_whitespace();
    if words.next() != Some("YUV4MPEG2") {
        usq::bail!(InvalidArgument, "{} is not a YUV4MPEG2 stream", path.display());
    }
    let (mut w, mut h, mut fps, mut colour) = (0usize, 0usize, None, "420jpeg".to_string());
    for word in words {
        let (tag, value) = word.split_at(1);
        match tag {
            "W" => w = value.parse().unwrap_or(0),
            "H" => h = value.parse().unwrap_or(0),
            "F" => {
                fps = value.split_once(':').and_then(|(n, d)| {
                    let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
                    (d > 0.0).then_some(n / d)
                })
            }
            "C" => colour = value.to_string(),
            _ => {}
        }
    }
    if w == 0 || h == 0 {
        usq::bail!(InvalidArgument, "{}: the y4m header has no size", path.display());
    }
    usq::imaging::frame::check_frame_size(w, h).with_context(|| format!("{}: the y4m header", path.display()))?;
    let chroma_bytes = match colour.as_str() {
        c if c.starts_with("420") => 2 * w.div_ceil(2) * h.div_ceil(2),
        "422" => 2 * w.div_ceil(2) * h,
        "444" => 2 * w * h,
        "mono" => 0,
        other => usq::bail!(InvalidArgument, "{}: y4m colour space {other} is not supported", path.display()),
    };
    Ok((reader, w, h, chroma_bytes, fps))
}

/// Reads one `FRAME` into `luma` and skips its chroma; `false` at the end of the stream.
fn read_y4m_frame(reader: &mut BufReader<std::fs::File>, luma: &mut [u8], chroma_bytes: usize) -> usq::Result<bool> {
    let mut line = String::new();
    if reader.by_ref().take(MAX_Y4M_LINE).read_line(&mut line)? == 0 {
        return Ok(false);
    }
    if !line.starts_with("FRAME") {
        usq::bail!(InvalidArgument, "corrupt y4m stream: expected FRAME, found {:?}", line.trim_end());
    }
    reader
        .read_exact(luma)
        .map_err(|e| usq::Error::from_source(usq::ErrorKind::Io, &e).context("truncated y4m frame"))?;
    std::io::copy(&mut reader.by_ref().take(chroma_bytes as u64), &mut std::io::sink())?;
    Ok(true)
}
