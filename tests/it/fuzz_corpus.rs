//! The committed fuzz corpora (fuzz/corpus/<target>/: the project's own seeds and the inputs
//! fuzzing kept for new coverage) through the very harnesses libFuzzer runs (fuzz/harness/),
//! so a regression on any of them fails `cargo test` without the nightly, instrumented build
//! that fuzz/run.sh needs. The C API sequences run in ffi/tests/fuzz_corpus.rs.

use crate::common::repo;

#[cfg(feature = "dicom")]
#[path = "../../fuzz/harness/dicom_cine.rs"]
mod dicom_cine;
#[path = "../../fuzz/harness/image_decode.rs"]
mod image_decode;
#[path = "../../fuzz/harness/mjpeg_frame.rs"]
mod mjpeg_frame;
#[path = "../../fuzz/harness/npz_manifold.rs"]
mod npz_manifold;
#[path = "../../fuzz/harness/onnx_model.rs"]
mod onnx_model;
#[path = "../../fuzz/harness/pixel_convert.rs"]
mod pixel_convert;
#[path = "../../fuzz/harness/replay.rs"]
mod replay;
#[path = "../../fuzz/harness/ulpips_weights.rs"]
mod ulpips_weights;
#[path = "../../fuzz/harness/y4m_clip.rs"]
mod y4m_clip;

fn corpus(target: &str, harness: fn(&[u8])) {
    replay::replay(repo(), target, harness);
}

#[test]
fn npz_manifold() {
    corpus("npz_manifold", npz_manifold::run);
}

#[test]
fn image_decode() {
    corpus("image_decode", image_decode::run);
}

#[test]
fn ulpips_weights() {
    corpus("ulpips_weights", ulpips_weights::run);
}

#[test]
fn pixel_convert() {
    corpus("pixel_convert", pixel_convert::run);
}

#[test]
fn mjpeg_frame() {
    corpus("mjpeg_frame", mjpeg_frame::run);
}

#[test]
fn y4m_clip() {
    corpus("y4m_clip", y4m_clip::run);
}

#[cfg(feature = "dicom")]
#[test]
fn dicom_cine() {
    corpus("dicom_cine", dicom_cine::run);
}

#[cfg(feature = "dicom")]
#[test]
fn dicom_encapsulated() {
    corpus("dicom_encapsulated", dicom_cine::run_encapsulated);
}

/// The findings of `dicom_encapsulated`, each a panic in dicom-transfer-syntax-registry's
/// decoders: an RLE frame whose header declares 2.6 million segments, read past its 844-byte
/// fragment; a JPEG larger than its DICOM frame, copied past the frame's buffer. The checks
/// before the decoders (`usq::clip::dicom_frames`) refuse each frame with a reason; the
/// decoder is not reached, so the panic backstop around it is not what answers.
#[cfg(feature = "dicom")]
#[test]
fn compressed_frames_the_decoders_panicked_on_are_refused_before_them() {
    for (input, why) in [
        ("rle_header_past_fragment", "frame 1 of 2: an RLE header of 2621446 segments, for 3 samples of 2 bytes"),
        ("jpeg_larger_than_frame", "frame 1 of 2: a JPEG of"),
    ] {
        let input = std::fs::read(repo().join("fuzz/corpus/dicom_encapsulated").join(input)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cine.dcm");
        std::fs::write(&path, dicom_cine::file(&input, true).unwrap()).unwrap();
        let mut cine = usq::clip::dicom::Cine::open(&path).unwrap();
        let errors: Vec<String> = (0..2).filter_map(|_| cine.next_frame().err()).map(|e| e.to_string()).collect();
        assert!(errors.first().is_some_and(|e| e.contains(why)), "{errors:?}");
        assert!(errors.iter().all(|e| !e.contains("panicked")), "{errors:?}");
    }
}

#[test]
fn onnx_model() {
    corpus("onnx_model", onnx_model::run);
}
