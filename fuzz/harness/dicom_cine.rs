//! A DICOM cine as `usq live --input` plays it: opened, then its first frames decoded to gray.
//! An error or gray frames, never a panic or an abort.
//!
//! Random bytes rarely get past a DICOM preamble, so each input builds a well-formed cine from
//! its first bytes (size, frame count, bit depth, samples, transfer syntax, window), takes the
//! pixel data from the next ones, writes it, then overwrites bytes of the written file at the
//! positions the last bytes name: the parser and the pixel decoders both see hostile data.
//! Two targets: `run` (fuzz target `dicom_cine`) writes native pixel data in the four
//! uncompressed syntaxes; `run_encapsulated` (`dicom_encapsulated`) writes each frame as a
//! JPEG baseline or RLE fragment, so the overwrites land in the compressed streams and their
//! headers as well.
#![allow(dead_code)] // each fuzz target uses one of the two entries
use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use usq::clip::dicom::Cine;

const SYNTAXES: [&str; 4] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.2", // explicit VR big endian (retired, still read)
    uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
];

fn cine(p: &[u8; 8], pixels: &[u8], encapsulated: bool) -> Option<Vec<u8>> {
    let (rows, cols, frames) = (p[0] as u16 % 48 + 1, p[1] as u16 % 48 + 1, p[2] % 4 + 1);
    let jpeg = encapsulated && p[7].is_multiple_of(2);
    let bits: u16 = if p[3] & 1 == 0 || jpeg { 8 } else { 16 };
    let samples: u16 = if p[3] & 2 == 0 { 1 } else { 3 };
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, value));
    };
    put(tags::SOP_CLASS_UID, VR::UI, uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1".into());
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(samples));
    let photometric = if samples == 3 && jpeg {
        "YBR_FULL_422"
    } else if samples == 3 {
        "RGB"
    } else if p[3] & 4 == 0 {
        "MONOCHROME2"
    } else {
        "MONOCHROME1"
    };
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric.into());
    put(tags::NUMBER_OF_FRAMES, VR::IS, frames.to_string().into());
    put(tags::FRAME_TIME, VR::DS, (p[4] as f64 * 3.7).to_string().into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(rows));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(cols));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(bits - (p[5] as u16 % 4)));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(bits - 1 - (p[5] as u16 % 4)));
    put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from((p[5] >> 4) as u16 & 1));
    if p[6] & 1 == 1 {
        put(tags::WINDOW_CENTER, VR::DS, (p[6] as f64 * 2.0).to_string().into());
        put(tags::WINDOW_WIDTH, VR::DS, (p[7] as f64 * 4.0 - 100.0).to_string().into());
    }
    // Pixel data of the size the header implies, from the input (repeated), or shorter.
    let want = rows as usize * cols as usize * frames as usize * samples as usize * (bits as usize / 8);
    let n = if p[6] & 2 == 0 { want } else { want / 2 };
    let data: Vec<u8> = if pixels.is_empty() { vec![0; n] } else { pixels.iter().copied().cycle().take(n).collect() };
    let syntax = if encapsulated {
        let frame_len = want / frames as usize;
        // One fragment a frame; a short cine lacks its last ones.
        let fragments: Vec<Vec<u8>> = data
            .chunks_exact(frame_len)
            .map(|f| {
                if jpeg {
                    jpeg_frame(f, cols, rows, samples, p[4])
                } else {
                    Some(rle_frame(f, rows, cols, samples, bits))
                }
            })
            .collect::<Option<_>>()?;
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(PixelFragmentSequence::new(Vec::<u32>::new(), fragments)),
        ));
        if jpeg { uids::JPEG_BASELINE8_BIT } else { uids::RLE_LOSSLESS }
    } else {
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            if bits == 8 { VR::OB } else { VR::OW },
            PrimitiveValue::from(data),
        ));
        SYNTAXES[p[7] as usize % SYNTAXES.len()]
    };
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(syntax)
        .media_storage_sop_class_uid(uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE)
        .media_storage_sop_instance_uid("2.25.1");
    let mut out = Vec::new();
    obj.with_meta(meta).ok()?.write_all(&mut out).ok()?;
    Some(out)
}

/// One frame as a baseline JPEG (quality from the input).
fn jpeg_frame(frame: &[u8], cols: u16, rows: u16, samples: u16, quality: u8) -> Option<Vec<u8>> {
    use image::ExtendedColorType::{L8, Rgb8};
    let mut out = Vec::new();
    let colour = if samples == 3 { Rgb8 } else { L8 };
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality % 100 + 1)
        .encode(frame, cols as u32, rows as u32, colour)
        .ok()?;
    Some(out)
}

/// One frame as DICOM RLE: a 64-byte header of segment offsets, then one PackBits segment per
/// byte plane (each sample's most significant byte first), written as literal runs.
fn rle_frame(frame: &[u8], rows: u16, cols: u16, samples: u16, bits: u16) -> Vec<u8> {
    let (pixels, bytes) = (rows as usize * cols as usize, bits as usize / 8);
    let mut segments = Vec::new();
    for s in 0..samples as usize {
        for b in (0..bytes).rev() {
            // Sample-interleaved, little-endian input: this plane's byte of each pixel.
            let plane: Vec<u8> = (0..pixels).map(|i| frame[(i * samples as usize + s) * bytes + b]).collect();
            let mut seg = Vec::new();
            for run in plane.chunks(128) {
                seg.push(run.len() as u8 - 1);
                seg.extend_from_slice(run);
            }
            if seg.len() % 2 == 1 {
                seg.push(0x80); // padding: PackBits' no-op
            }
            segments.push(seg);
        }
    }
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    let mut offset = 64u32;
    for i in 0..15 {
        out.extend_from_slice(&(if i < segments.len() { offset } else { 0 }).to_le_bytes());
        offset += segments.get(i).map_or(0, |s| s.len() as u32);
    }
    segments.iter().for_each(|s| out.extend_from_slice(s));
    out
}

pub fn run(data: &[u8]) {
    run_with(data, false)
}

pub fn run_encapsulated(data: &[u8]) {
    run_with(data, true)
}

/// The file an input makes: the cine its first bytes describe, then overwritten where its last
/// bytes say.
pub fn file(data: &[u8], encapsulated: bool) -> Option<Vec<u8>> {
    if data.len() < 9 {
        return None;
    }
    let params: [u8; 8] = data[..8].try_into().unwrap();
    let patches = (data[8] as usize % 16).min((data.len() - 9) / 3);
    let (pixels, tail) = data[9..].split_at(data.len() - 9 - 3 * patches);
    let mut file = cine(&params, pixels, encapsulated)?;
    for p in tail.chunks_exact(3) {
        let at = u16::from_le_bytes([p[0], p[1]]) as usize;
        if let Some(b) = file.get_mut(at) {
            *b = p[2];
        }
    }
    Some(file)
}

fn run_with(data: &[u8], encapsulated: bool) {
    let Some(file) = file(data, encapsulated) else { return };
    // dicom-object opens files by path.
    let path = std::env::temp_dir().join(format!("usq-fuzz-dicom-{}.dcm", std::process::id()));
    if std::fs::write(&path, &file).is_err() {
        return;
    }
    if let Ok(mut c) = Cine::open(&path) {
        for _ in 0..2 {
            if let Ok(f) = c.next_frame() {
                assert_eq!(f.pixels.len(), f.width * f.height);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}
