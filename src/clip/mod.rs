//! Recorded clips to play into the live engine without a capture card: a folder of images, a
//! raw GRAY8 file, a YUV4MPEG2 (.y4m) video, or a multi-frame DICOM cine. Each parser bounds
//! what a file may claim (frame size, header length) before allocating for it.

#[cfg(feature = "dicom")]
pub mod dicom;
#[cfg(feature = "dicom")]
pub mod dicom_frames;
#[cfg(feature = "dicom")]
pub mod dicom_lengths;
pub mod y4m;

use crate::imaging::pixel::{FrameLayout, PixelFormat};
use crate::{Context, GrayFrame};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// A frame to push: its gray pixels and layout.
pub struct Frame {
    /// Gray pixels, `layout.width * layout.height`.
    pub pixels: Vec<u8>,
    /// Their layout (packed GRAY8).
    pub layout: FrameLayout,
}

/// A clip, read one frame at a time and looped at its end.
pub enum Source {
    /// Images in name order, looped.
    #[allow(missing_docs)]
    Images { paths: Vec<PathBuf>, next: usize },
    /// Raw GRAY8 frames of a known size, looped.
    #[allow(missing_docs)]
    Raw { data: Vec<u8>, width: usize, height: usize, next: usize },
    /// A y4m stream; its luma plane is the gray frame. Looped by reopening.
    #[allow(missing_docs)]
    Y4m { path: PathBuf, reader: BufReader<std::fs::File>, header: y4m::Header },
    /// A DICOM cine, one frame decoded at a time, looped.
    #[cfg(feature = "dicom")]
    Dicom(Box<dicom::Cine>),
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

impl Source {
    /// Opens `path`: a folder of images, a `.y4m` file, or raw GRAY8 with `size`.
    /// Returns the source and the frame rate the file declares, if any.
    pub fn open(path: &Path, size: Option<(usize, usize)>) -> crate::Result<(Source, Option<f64>)> {
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
                crate::bail!(InvalidArgument, "{} holds no images", path.display());
            }
            return Ok((Source::Images { paths, next: 0 }, None));
        }
        if is_dicom(path) {
            #[cfg(feature = "dicom")]
            {
                let cine = dicom::Cine::open(path)?;
                let fps = cine.fps();
                return Ok((Source::Dicom(Box::new(cine)), fps));
            }
            #[cfg(not(feature = "dicom"))]
            crate::bail!(
                InvalidArgument,
                "{}: this usq was built without DICOM support (feature dicom)",
                path.display()
            );
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("y4m")) {
            let (reader, header) = open_y4m(path)?;
            let fps = header.fps;
            return Ok((Source::Y4m { path: path.to_path_buf(), reader, header }, fps));
        }
        let Some((width, height)) = size else {
            crate::bail!(
                InvalidArgument,
                "{}: raw input needs --size WxH (or give a folder of images or a .y4m)",
                path.display()
            );
        };
        crate::imaging::frame::check_frame_size(width, height)
            .with_context(|| format!("--size for {}", path.display()))?;
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if data.len() < width * height {
            crate::bail!(InvalidArgument, "{} holds no whole {width}x{height} GRAY8 frame", path.display());
        }
        Ok((Source::Raw { data, width, height, next: 0 }, None))
    }

    /// The next frame (looping at the end).
    pub fn next_frame(&mut self) -> crate::Result<Frame> {
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
            Source::Y4m { path, reader, header } => {
                let (w, h) = (header.width, header.height);
                let mut pixels = vec![0u8; w * h];
                if !y4m::read_frame(reader, &mut pixels, header.chroma_bytes)? {
                    // End of stream: loop from the first frame.
                    *reader = open_y4m(path)?.0;
                    if !y4m::read_frame(reader, &mut pixels, header.chroma_bytes)? {
                        crate::bail!(InvalidArgument, "{} holds no frame", path.display());
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

/// Opens a y4m file and reads its stream header.
fn open_y4m(path: &Path) -> crate::Result<(BufReader<std::fs::File>, y4m::Header)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let header = y4m::read_header(&mut reader).with_context(|| format!("reading {}", path.display()))?;
    Ok((reader, header))
}
