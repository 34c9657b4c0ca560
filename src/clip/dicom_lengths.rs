//! Bounds on a DICOM file's declared lengths. dicom-parser sizes (and zero-fills) a value's
//! buffer from the length in the element's header before it reads the value, so an 864-byte
//! file whose header declares 2.4 GB took 2.4 GB of memory (found by the fuzz target
//! `dicom_cine`). Two bounds, so that neither rests on reading the file exactly as the other:
//! - [`check`] reads every element header (the file meta group, the data set, nested sequences
//!   and items, pixel data fragments) without reading any value, and refuses one that declares
//!   more bytes than are left, with the element named;
//! - [`Bounded`] is the decoder the data set is then parsed through: it refuses to read any value
//!   longer than what its source has left, whatever header the parser read it from.

use crate::Result;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::{DataElementHeader, HasLength, SequenceItemHeader};
use dicom_core::value::PrimitiveValue;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_parser::stateful::decode::{Error as DecodeError, StatefulDecode};
use std::borrow::Cow;
use std::io::{Read, Seek};

/// An undefined length: a sequence, an item or encapsulated pixel data closed by a delimiter.
const UNDEFINED: u32 = u32::MAX;
/// A deflated data set may inflate to at most this many bytes (and 1032 times its size, the
/// most deflate can compress).
const MAX_INFLATED: u64 = 1 << 30;

/// A DICOM stream's data set, its declared lengths checked: inflated when it was deflated.
#[derive(Debug)]
pub struct DataSet<'a> {
    /// The transfer syntax UID the file meta group names.
    pub syntax: String,
    /// The file meta group's Media Storage SOP Class UID (empty when absent).
    pub sop_class: String,
    /// Its Media Storage SOP Instance UID (empty when absent).
    pub sop_instance: String,
    /// The data set's bytes (inflated when its syntax is deflated).
    pub bytes: Cow<'a, [u8]>,
}

/// Checks the declared lengths of the DICOM stream that starts at its `DICM` marker, and returns
/// its data set.
pub fn check(stream: &[u8]) -> Result<DataSet<'_>> {
    if stream.get(..4) != Some(b"DICM") {
        crate::bail!(Image, "not a DICOM file (no DICM marker)");
    }
    let mut w = Walker { data: stream, pos: 4, explicit: true, big_endian: false };
    let [syntax, sop_class, sop_instance] = w.meta_group()?;
    let body = &stream[w.pos..];
    let (bytes, explicit, big_endian) = match syntax.as_str() {
        "1.2.840.10008.1.2" => (Cow::Borrowed(body), false, false),
        "1.2.840.10008.1.2.2" => (Cow::Borrowed(body), true, true),
        "1.2.840.10008.1.2.1.99" => {
            let cap = MAX_INFLATED.min(body.len() as u64 * 1032 + 1024);
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(body).take(cap + 1).read_to_end(&mut inflated)?;
            if inflated.len() as u64 > cap {
                crate::bail!(Image, "the deflated DICOM data set inflates past {cap} bytes");
            }
            (Cow::Owned(inflated), true, false)
        }
        // Explicit VR little endian, and every encapsulated (compressed pixel data) syntax.
        _ => (Cow::Borrowed(body), true, false),
    };
    Walker { data: &bytes, pos: 0, explicit, big_endian }.data_set()?;
    Ok(DataSet { syntax, sop_class, sop_instance, bytes })
}

/// The data set in `bytes` (inflated already when deflated), read in `syntax` through [`Bounded`].
pub fn read_data_set(bytes: &[u8], syntax: &dicom_encoding::TransferSyntax) -> Result<dicom_object::InMemDicomObject> {
    let decoder = dicom_parser::StatefulDecoder::new_with(bytes, syntax, Default::default(), 0).map_err(|e| {
        crate::Error::from_source(crate::ErrorKind::Image, &e).context(format!("transfer syntax {}", syntax.uid()))
    })?;
    let mut bounded = Bounded::new(decoder, bytes.len());
    let read = dicom_object::InMemDicomObject::read_dataset(&mut bounded);
    if let Some(why) = bounded.refused() {
        crate::bail!(Image, "{why}");
    }
    read.map_err(|e| crate::Error::from_source(crate::ErrorKind::Image, &e).context("data set".to_string()))
}

/// A data set decoder that reads no value longer than the bytes its source has left. The parser
/// sizes a value's buffer from the header before it reads it, so this is the bound at the point
/// of reading, whichever bytes the parser took the header from. A refusal reads as the parser's
/// own allocation error; [`Bounded::refused`] says what was refused.
pub struct Bounded<D> {
    inner: D,
    /// The source's length, in the decoder's positions.
    end: u64,
    refused: Option<String>,
}

impl<D: StatefulDecode> Bounded<D> {
    /// `inner` reads a source of `len` bytes from its position 0.
    pub fn new(inner: D, len: usize) -> Self {
        Bounded { inner, end: len as u64, refused: None }
    }

    /// Why a read was refused, if one was.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    fn allow(&mut self, len: u32) -> std::result::Result<(), DecodeError> {
        let at = self.inner.position();
        let left = self.end.saturating_sub(at);
        if u64::from(len) <= left {
            return Ok(());
        }
        self.refused.get_or_insert_with(|| {
            format!("a DICOM value at byte {at} of the data set declares {len} bytes, and only {left} are left")
        });
        Err(DecodeError::AllocateValueData { len })
    }

    fn allow_header(&mut self, header: &DataElementHeader) -> std::result::Result<(), DecodeError> {
        match header.length().get() {
            Some(len) => self.allow(len),
            // The parser refuses an undefined length where a value must have one.
            None => Ok(()),
        }
    }
}

impl<D: StatefulDecode> StatefulDecode for Bounded<D> {
    type Reader = D::Reader;

    fn decode_header(&mut self) -> std::result::Result<DataElementHeader, DecodeError> {
        self.inner.decode_header()
    }

    fn decode_item_header(&mut self) -> std::result::Result<SequenceItemHeader, DecodeError> {
        self.inner.decode_item_header()
    }

    fn read_value(&mut self, header: &DataElementHeader) -> std::result::Result<PrimitiveValue, DecodeError> {
        self.allow_header(header)?;
        self.inner.read_value(header)
    }

    fn read_value_preserved(&mut self, header: &DataElementHeader) -> std::result::Result<PrimitiveValue, DecodeError> {
        self.allow_header(header)?;
        self.inner.read_value_preserved(header)
    }

    fn read_value_bytes(&mut self, header: &DataElementHeader) -> std::result::Result<PrimitiveValue, DecodeError> {
        self.allow_header(header)?;
        self.inner.read_value_bytes(header)
    }

    fn read_to_vec(&mut self, length: u32, vec: &mut Vec<u8>) -> std::result::Result<(), DecodeError> {
        self.allow(length)?;
        self.inner.read_to_vec(length, vec)
    }

    fn read_u32_to_vec(&mut self, length: u32, vec: &mut Vec<u32>) -> std::result::Result<(), DecodeError> {
        self.allow(length)?;
        self.inner.read_u32_to_vec(length, vec)
    }

    fn read_to<W: std::io::Write>(&mut self, length: u32, out: W) -> std::result::Result<(), DecodeError> {
        self.allow(length)?;
        self.inner.read_to(length, out)
    }

    fn skip_bytes(&mut self, length: u32) -> std::result::Result<(), DecodeError> {
        self.allow(length)?;
        self.inner.skip_bytes(length)
    }

    fn seek(&mut self, position: u64) -> std::result::Result<(), DecodeError>
    where
        Self::Reader: Seek,
    {
        self.inner.seek(position)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

struct Walker<'a> {
    data: &'a [u8],
    pos: usize,
    explicit: bool,
    big_endian: bool,
}

impl Walker<'_> {
    fn u16(&self, at: usize) -> u16 {
        let b = [self.data[at], self.data[at + 1]];
        if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
    }

    fn u32(&self, at: usize) -> u32 {
        let b = [self.data[at], self.data[at + 1], self.data[at + 2], self.data[at + 3]];
        if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    }

    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    /// One element header at `pos`: its tag, VR and declared length; `pos` moves past it.
    /// `None` when fewer bytes than a header are left (the parser reports that itself).
    fn header(&mut self) -> Option<(Tag, VR, u32)> {
        if self.left() < 8 {
            return None;
        }
        let tag = Tag(self.u16(self.pos), self.u16(self.pos + 2));
        if tag.0 == 0xFFFE {
            // Items and delimiters have no VR in any syntax.
            let len = self.u32(self.pos + 4);
            self.pos += 8;
            return Some((tag, VR::UN, len));
        }
        if !self.explicit {
            let len = self.u32(self.pos + 4);
            self.pos += 8;
            let vr = match StandardDataDictionary.by_tag(tag).map(|e| e.vr()) {
                Some(VirtualVr::Exact(vr)) => vr,
                _ => VR::UN,
            };
            return Some((tag, vr, len));
        }
        let vr = VR::from_binary([self.data[self.pos + 4], self.data[self.pos + 5]]).unwrap_or(VR::UN);
        use VR::*;
        if matches!(vr, OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV) {
            if self.left() < 12 {
                return None;
            }
            let len = self.u32(self.pos + 8);
            self.pos += 12;
            Some((tag, vr, len))
        } else {
            let len = self.u16(self.pos + 6) as u32;
            self.pos += 8;
            Some((tag, vr, len))
        }
    }

    fn check_length(&self, tag: Tag, vr: VR, len: u32) -> Result<()> {
        // The parser reads binary values whole: 5 bytes of OW are read as 4, and the next
        // header is then read one byte early, where this reading would not look (a fuzz
        // finding: a 4 GB length read from pixel bytes).
        use VR::*;
        let width = match vr {
            OW | US | SS => 2,
            OL | OF | UL | SL | FL | AT => 4,
            OD | OV | FD | SV | UV => 8,
            _ => 1,
        };
        if len != UNDEFINED && !len.is_multiple_of(width) {
            crate::bail!(
                Image,
                "DICOM element ({:04X},{:04X}) of VR {vr:?} declares {len} bytes, not a whole number of {width}-byte values",
                tag.0,
                tag.1
            );
        }
        if len != UNDEFINED && len as usize > self.left() {
            crate::bail!(
                Image,
                "DICOM element ({:04X},{:04X}) declares {len} bytes, and only {} are left in the file",
                tag.0,
                tag.1,
                self.left()
            );
        }
        Ok(())
    }

    /// The file meta group (explicit VR little endian); returns the transfer syntax, Media
    /// Storage SOP Class and Instance UIDs.
    fn meta_group(&mut self) -> Result<[String; 3]> {
        let mut uids: [String; 3] = Default::default();
        // Where the group's length says it ends: the parser reads the data set from there, so
        // a group that ends elsewhere would be read here and there from different places (a
        // fuzz finding: a 2.8 GB length read from the middle of an element).
        let mut declared_end = None;
        while self.left() >= 8 && self.u16(self.pos) == 0x0002 {
            let Some((tag, vr, len)) = self.header() else { break };
            self.check_length(tag, vr, len)?;
            if len == UNDEFINED {
                crate::bail!(Image, "DICOM file meta element ({:04X},{:04X}) has an undefined length", tag.0, tag.1);
            }
            let value = &self.data[self.pos..self.pos + len as usize];
            if tag == Tag(0x0002, 0x0000) && len == 4 {
                declared_end =
                    Some(self.pos + 4 + u32::from_le_bytes([value[0], value[1], value[2], value[3]]) as usize);
            }
            let slot = match tag {
                Tag(0x0002, 0x0010) => Some(0),
                Tag(0x0002, 0x0002) => Some(1),
                Tag(0x0002, 0x0003) => Some(2),
                _ => None,
            };
            if let Some(i) = slot {
                uids[i] = String::from_utf8_lossy(value).trim_end_matches(['\0', ' ']).to_string();
            }
            self.pos += len as usize;
        }
        if let Some(end) = declared_end.filter(|&end| end != self.pos) {
            crate::bail!(
                Image,
                "DICOM file meta group: its length says it ends at byte {end}, and its elements end at byte {}",
                self.pos
            );
        }
        Ok(uids)
    }

    /// The data set, headers only: sequences and items are entered, values and pixel data
    /// fragments skipped once their length is checked.
    fn data_set(mut self) -> Result<()> {
        // Inside encapsulated pixel data, items are fragments of bytes, not data sets.
        let mut in_fragments = false;
        while let Some((tag, vr, len)) = self.header() {
            self.check_length(tag, vr, len)?;
            match (tag, len) {
                (Tag(0xFFFE, 0xE000), UNDEFINED) => {}
                (Tag(0xFFFE, 0xE000), n) if in_fragments => self.pos += n as usize,
                // A defined-length item of a sequence: its elements follow.
                (Tag(0xFFFE, 0xE000), _) => {}
                (Tag(0xFFFE, 0xE0DD), _) => in_fragments = false,
                (Tag(0xFFFE, _), _) => {}
                (Tag(0x7FE0, 0x0010), UNDEFINED) => in_fragments = true,
                // Sequences (and undefined-length values) are entered: their elements follow.
                (_, UNDEFINED) => {}
                _ if vr == VR::SQ => {}
                (_, n) => self.pos += n as usize,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    /// A 2-frame 8-bit 16x8 cine with a sequence, in `syntax`, as its file's bytes.
    pub(in crate::clip) fn cine(syntax: &str) -> Vec<u8> {
        let mut obj = InMemDicomObject::new_empty();
        let mut put = |tag, vr, value: PrimitiveValue| {
            obj.put(DataElement::new(tag, vr, value));
        };
        put(tags::SOP_CLASS_UID, VR::UI, uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE.into());
        put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.7".into());
        put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
        put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
        put(tags::NUMBER_OF_FRAMES, VR::IS, "2".into());
        put(tags::ROWS, VR::US, PrimitiveValue::from(8u16));
        put(tags::COLUMNS, VR::US, PrimitiveValue::from(16u16));
        put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16));
        put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16));
        put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
        put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
        put(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from((0..256u32).map(|i| i as u8).collect::<Vec<u8>>()));
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(tags::CODE_VALUE, VR::SH, "T-D0001"));
        obj.put(DataElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        ));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(syntax)
            .media_storage_sop_class_uid(uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE)
            .media_storage_sop_instance_uid("2.25.7");
        let mut out = Vec::new();
        obj.with_meta(meta).unwrap().write_all(&mut out).unwrap();
        out
    }

    #[test]
    fn well_formed_cines_pass_in_every_uncompressed_syntax() {
        for syntax in [
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            "1.2.840.10008.1.2.2", // explicit VR big endian (retired, still read)
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        ] {
            let bytes = cine(syntax);
            let start = if bytes.get(128..132) == Some(b"DICM") { 128 } else { 0 };
            check(&bytes[start..]).unwrap_or_else(|e| panic!("{syntax}: {e}"));
        }
    }

    #[test]
    fn a_binary_value_of_part_of_a_value_is_an_error() {
        let mut bytes = cine(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        // Rows (0028,0010) US: 3 bytes, then one more so the total length does not change.
        let rows = bytes.windows(6).position(|w| w == [0x28, 0, 0x10, 0, b'U', b'S']).unwrap();
        bytes[rows + 6..rows + 8].copy_from_slice(&3u16.to_le_bytes());
        let start = if bytes.get(128..132) == Some(b"DICM") { 128 } else { 0 };
        let e = check(&bytes[start..]).unwrap_err().to_string();
        assert!(e.contains("(0028,0010) of VR US declares 3 bytes, not a whole number of 2-byte values"), "{e}");
    }

    #[test]
    fn a_meta_group_length_that_is_not_the_group_is_an_error() {
        let mut bytes = cine(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let start = if bytes.get(128..132) == Some(b"DICM") { 128 } else { 0 };
        // (0002,0000) UL, 4 bytes: the group's length, made shorter by 70.
        let at = start + 4 + 8;
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        bytes[at..at + 4].copy_from_slice(&(len - 70).to_le_bytes());
        let e = check(&bytes[start..]).unwrap_err().to_string();
        assert!(e.contains("file meta group: its length says it ends at byte"), "{e}");
    }

    #[test]
    fn a_length_past_the_end_is_an_error() {
        let mut bytes = cine(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        // Rows (0028,0010) US: its 2-byte length, then Pixel Data's 4-byte one, made huge.
        let rows = bytes.windows(6).position(|w| w == [0x28, 0, 0x10, 0, b'U', b'S']).unwrap();
        let mut at_rows = bytes.clone();
        at_rows[rows + 6..rows + 8].copy_from_slice(&0xFFF0u16.to_le_bytes());
        let e = check(&at_rows[128..]).unwrap_err();
        assert!(e.to_string().contains("(0028,0010) declares 65520 bytes"), "{e}");
        let px = bytes.windows(6).position(|w| w == [0xE0, 0x7F, 0x10, 0, b'O', b'B']).unwrap();
        bytes[px + 8..px + 12].copy_from_slice(&3_000_000_000u32.to_le_bytes());
        let e = check(&bytes[128..]).unwrap_err();
        assert!(e.to_string().contains("(7FE0,0010) declares 3000000000 bytes"), "{e}");
        assert!(check(b"DICX").is_err());
    }

    #[test]
    fn the_parser_reads_no_value_past_the_end_whatever_header_it_reads() {
        use dicom_encoding::TransferSyntaxIndex;
        use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
        // Pixel Data declares 3e9 bytes: `check` refuses it; here the data set goes straight to
        // the parser, as a header `check` did not read would.
        let mut bytes = cine(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let px = bytes.windows(6).position(|w| w == [0xE0, 0x7F, 0x10, 0, b'O', b'B']).unwrap();
        bytes[px + 8..px + 12].copy_from_slice(&3_000_000_000u32.to_le_bytes());
        let mut w = Walker { data: &bytes[128..], pos: 4, explicit: true, big_endian: false };
        w.meta_group().unwrap();
        let data_set = &bytes[128 + w.pos..];
        let syntax = TransferSyntaxRegistry.get(uids::EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        let why = read_data_set(data_set, syntax).unwrap_err().to_string();
        let left = data_set.len() - (px + 12 - 128 - w.pos);
        assert_eq!(
            why,
            format!(
                "a DICOM value at byte {} of the data set declares 3000000000 bytes, and only {left} are left",
                px + 12 - 128 - w.pos
            )
        );
        // The same file, well formed, reads through the same decoder.
        let good = cine(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let object = read_data_set(&good[128 + w.pos..], syntax).unwrap();
        assert_eq!(object.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().len(), 256);
    }
}
