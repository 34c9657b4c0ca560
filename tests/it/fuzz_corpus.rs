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

#[test]
fn onnx_model() {
    corpus("onnx_model", onnx_model::run);
}
