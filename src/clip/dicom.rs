//! Multi-frame DICOM cines (ultrasound multi-frame images) to play: frames are
//! decoded one at a time (native, JPEG baseline/lossless, RLE, deflate transfer syntaxes) and
//! turned to gray as still images are; the cine's own rate comes from Frame Time, else Cine
//! Rate, else Recommended Display Frame Rate.
//!
//! Gray levels: ultrasound pixel data is display-ready, and the metrics read frames as shown.
//! A window (or VOI LUT) in the object is applied; without one the stored values are used as
//! they are, never min-max stretched per frame (the decoder's default), which would change a
//! frame's gray levels with its content.

use super::dicom_frames::{self, FrameShape};
use crate::{Error, ErrorKind, GrayFrame};
use dicom_core::value::Value;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder};
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

/// An opened cine and the next frame to decode.
pub struct Cine {
    path: PathBuf,
    object: DefaultDicomObject,
    frames: u32,
    next: u32,
    fps: Option<f64>,
    convert: ConvertOptions,
    /// For a cine of compressed frames the registry's decoders trust, which of them and the
    /// frame each is checked against before it is decoded (`dicom_frames`).
    compressed: Option<(Compression, FrameShape)>,
}

#[derive(Debug, Clone, Copy)]
enum Compression {
    Rle,
    Jpeg,
}

impl Compression {
    fn of(syntax: &str) -> Option<Compression> {
        match syntax {
            uids::RLE_LOSSLESS => Some(Compression::Rle),
            uids::JPEG_BASELINE8_BIT | uids::JPEG_EXTENDED12_BIT | uids::JPEG_LOSSLESS | uids::JPEG_LOSSLESS_SV1 => {
                Some(Compression::Jpeg)
            }
            _ => None,
        }
    }
}

fn dicom_err(e: impl std::error::Error + 'static, what: String) -> Error {
    Error::from_source(ErrorKind::Image, &e).context(what)
}

/// The bits of a sample, checked before the decoder sees them: it sizes a lookup table by Bits
/// Stored (2^bits entries) and panics past 32 bits (dicom-pixeldata 0.10, `Lut::new_with_fn`;
/// found by fuzz/harness/dicom_cine.rs). Ultrasound stores 8 or 16 bits a sample.
fn check_sample_bits(allocated: Option<u16>, stored: Option<u16>, high: Option<u16>) -> Result<(), String> {
    let allocated = allocated.ok_or("no Bits Allocated")?;
    if allocated != 8 && allocated != 16 {
        return Err(format!("Bits Allocated {allocated}: usq reads 8 or 16 bits a sample"));
    }
    let stored = stored.unwrap_or(allocated);
    if stored == 0 || stored > allocated {
        return Err(format!("Bits Stored {stored} with Bits Allocated {allocated}"));
    }
    match high {
        Some(h) if h >= allocated || h + 1 < stored => {
            Err(format!("High Bit {h} with Bits Stored {stored} and Bits Allocated {allocated}"))
        }
        _ => Ok(()),
    }
}

/// The object in a DICOM stream that starts at its `DICM` marker, every declared length bounded
/// by the bytes there are (`dicom_lengths`): checked ahead, then again at each read of the data
/// set.
fn read_object(stream: &[u8]) -> crate::Result<DefaultDicomObject> {
    let data_set = super::dicom_lengths::check(stream)?;
    // The meta group as `check` read it: dicom-object's own reader of it sizes values from
    // their headers too.
    let uid = data_set.syntax.as_str();
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uid)
        .media_storage_sop_class_uid(data_set.sop_class.as_str())
        .media_storage_sop_instance_uid(data_set.sop_instance.as_str())
        .build()
        .map_err(|e| dicom_err(e, "file meta group".into()))?;
    let Some(syntax) = TransferSyntaxRegistry.get(uid) else {
        crate::bail!(Image, "unknown transfer syntax {uid:?}");
    };
    // A deflated data set is inflated already: its syntax's decoder reads the inflated bytes.
    Ok(super::dicom_lengths::read_data_set(&data_set.bytes, syntax)?.with_exact_meta(meta))
}

impl Cine {
    /// Reads the object and checks it holds pixel data of a size usq reads; frames are decoded
    /// later, one at a time.
    pub fn open(path: &Path) -> crate::Result<Cine> {
        let name = path.display();
        let bytes = std::fs::read(path).map_err(|e| dicom_err(e, format!("reading DICOM {name}")))?;
        // The stream starts at its DICM marker: after the 128-byte preamble, or at once.
        let start = if bytes.get(128..132) == Some(b"DICM") { 128 } else { 0 };
        let stream = &bytes[start..];
        let object = read_object(stream).map_err(|e| e.context(format!("DICOM {name}")))?;
        if object.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
            crate::bail!(Image, "DICOM {name} holds no pixel data");
        }
        let frames = match object.element_opt(tags::NUMBER_OF_FRAMES).ok().flatten() {
            Some(e) => e.to_int::<u32>().map_err(|e| dicom_err(e, format!("DICOM {name}: Number of Frames")))?,
            None => 1,
        };
        if frames == 0 {
            crate::bail!(Image, "DICOM {name} has 0 frames");
        }
        let side = |tag| object.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u32>().ok()).unwrap_or(0);
        let (rows, columns) = (side(tags::ROWS) as usize, side(tags::COLUMNS) as usize);
        crate::imaging::frame::check_frame_size(columns, rows).map_err(|e| e.context(format!("DICOM {name}")))?;
        let bits = |tag| object.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u16>().ok());
        check_sample_bits(bits(tags::BITS_ALLOCATED), bits(tags::BITS_STORED), bits(tags::HIGH_BIT))
            .map_err(|why| Error::new(ErrorKind::Image, format!("DICOM {name}: {why}")))?;
        let compressed = Compression::of(object.meta().transfer_syntax()).map(|c| {
            let samples = bits(tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize;
            let bytes = bits(tags::BITS_ALLOCATED).unwrap_or(8) as usize / 8;
            (c, FrameShape { rows, cols: columns, samples, bytes })
        });
        let float = |tag| object.element_opt(tag).ok().flatten().and_then(|e| e.to_float64().ok());
        let fps = float(tags::FRAME_TIME)
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            .map(|ms| 1000.0 / ms)
            .or_else(|| float(tags::CINE_RATE))
            .or_else(|| float(tags::RECOMMENDED_DISPLAY_FRAME_RATE))
            .filter(|f| f.is_finite() && *f > 0.0);
        let windowed = [tags::WINDOW_CENTER, tags::VOILUT_SEQUENCE]
            .iter()
            .any(|&t| object.element_opt(t).ok().flatten().is_some());
        let voi = if windowed { VoiLutOption::Default } else { VoiLutOption::Identity };
        let convert = ConvertOptions::new().with_voi_lut(voi);
        Ok(Cine { path: path.to_path_buf(), object, frames, next: 0, fps, convert, compressed })
    }

    /// The cine's frame rate, if it records one.
    pub fn fps(&self) -> Option<f64> {
        self.fps
    }

    /// The next frame in gray (looping at the end).
    pub fn next_frame(&mut self) -> crate::Result<GrayFrame> {
        let i = self.next;
        self.next = (self.next + 1) % self.frames;
        let what = || format!("DICOM {} frame {} of {}", self.path.display(), i + 1, self.frames);
        if let Some((compression, shape)) = self.compressed {
            let checked = match self.object.element(tags::PIXEL_DATA).map(|e| e.value()) {
                Ok(Value::PixelSequence(seq)) => match compression {
                    Compression::Rle => seq.fragments().get(i as usize).map(|f| dicom_frames::check_rle(f, shape)),
                    Compression::Jpeg => dicom_frames::jpeg_frame_data(
                        seq.fragments(),
                        seq.offset_table(),
                        self.frames as usize,
                        i as usize,
                    )
                    .map(|data| dicom_frames::check_jpeg(&data, shape)),
                },
                // Where there is no fragment for it, the decoder says so.
                _ => None,
            };
            if let Some(Err(why)) = checked {
                crate::bail!(Image, "{}: {why}", what());
            }
        }
        // The decoders are not ours: one that panics on a frame makes that frame an error, not
        // the end of the process (the panic hook has printed it).
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| self.object.decode_pixel_data_frame(i)))
            .map_err(|_| Error::new(ErrorKind::Image, format!("{}: the pixel data decoder panicked on it", what())))?
            .map_err(|e| dicom_err(e, what()))?;
        let image = decoded.to_dynamic_image_with_options(0, &self.convert).map_err(|e| dicom_err(e, what()))?;
        GrayFrame::from_image(image).map_err(|e| e.context(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::check_sample_bits;

    /// The bounded reading gives the object dicom-object's own reading gives, in every
    /// uncompressed syntax: the same elements, the same frames.
    #[test]
    fn the_bounded_reading_reads_what_dicom_object_reads() {
        use dicom_dictionary_std::uids;
        use dicom_object::OpenFileOptions;
        use dicom_object::file::ReadPreamble;
        use dicom_pixeldata::PixelDecoder;
        for syntax in [
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            "1.2.840.10008.1.2.2",
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        ] {
            let bytes = super::super::dicom_lengths::tests::cine(syntax);
            let stream = &bytes[128..];
            let ours = super::read_object(stream).unwrap_or_else(|e| panic!("{syntax}: {e}"));
            let theirs = OpenFileOptions::new().read_preamble(ReadPreamble::Never).from_reader(stream).unwrap();
            assert_eq!(ours.meta().transfer_syntax(), theirs.meta().transfer_syntax());
            let tags = |o: &dicom_object::DefaultDicomObject| o.iter().map(|e| e.header().tag).collect::<Vec<_>>();
            assert_eq!(tags(&ours), tags(&theirs), "{syntax}");
            for frame in 0..2 {
                let a = ours.decode_pixel_data_frame(frame).unwrap();
                let b = theirs.decode_pixel_data_frame(frame).unwrap();
                assert_eq!(a.data(), b.data(), "{syntax} frame {frame}");
            }
        }
    }

    #[test]
    fn sample_bits_past_what_ultrasound_stores_are_errors() {
        for ok in [(8, Some(8), Some(7)), (16, Some(12), Some(11)), (16, Some(16), Some(15)), (8, None, None)] {
            assert_eq!(check_sample_bits(Some(ok.0), ok.1, ok.2), Ok(()), "{ok:?}");
        }
        // The fuzz finding: Bits Stored past 32 made the decoder's lookup table panic.
        assert_eq!(
            check_sample_bits(Some(16), Some(53), Some(15)).unwrap_err(),
            "Bits Stored 53 with Bits Allocated 16"
        );
        for bad in [(32, Some(32), Some(31)), (1, Some(1), Some(0)), (8, Some(0), Some(7)), (8, Some(8), Some(8))] {
            assert!(check_sample_bits(Some(bad.0), bad.1, bad.2).is_err(), "{bad:?}");
        }
        assert_eq!(check_sample_bits(None, Some(8), Some(7)).unwrap_err(), "no Bits Allocated");
    }
}
