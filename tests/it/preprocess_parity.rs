//! INTER_AREA resizing and BORDER_REFLECT_101 padding against values OpenCV produced
//! (tests/golden/inter_area, made by models/reference/make_goldens.py).

use crate::common::at;
use ndarray::{Array2, Ix2};
use usq::GrayFrame;
use usq::contract::INPUT_SIDE;
use usq::imaging::preprocess::{pad_to_input, resize_area};

#[test]
fn inter_area_matches_opencv() {
    for (w, h) in [(800, 540), (448, 448), (672, 224), (300, 200), (100, 80), (225, 1000), (640, 480)] {
        let frame = GrayFrame::open(at(&format!("tests/golden/inter_area/{w}x{h}_in.png"))).unwrap();
        assert_eq!((frame.width, frame.height), (w, h));
        let unit: Vec<f32> = frame.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        let got = resize_area(&unit, w, h, INPUT_SIDE, INPUT_SIDE);
        let want: Array2<f32> = ndarray_npy::read_npy(at(&format!("tests/golden/inter_area/{w}x{h}_out.npy"))).unwrap();
        assert_eq!(want.dim(), (INPUT_SIDE, INPUT_SIDE));
        let max = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 2e-6, "{w}x{h}: max abs difference {max}");
    }
}

#[test]
fn reflect101_padding_matches_opencv() {
    let frame = GrayFrame::open(at("tests/golden/inter_area/reflect_150x100_in.png")).unwrap();
    let want: ndarray::Array<u8, Ix2> =
        ndarray_npy::read_npy(at("tests/golden/inter_area/reflect_150x100_out.npy")).unwrap();
    let got = pad_to_input(&frame);
    assert_eq!((got.height, got.width), want.dim());
    assert!(got.pixels.iter().eq(want.iter()), "padding differs from cv2.copyMakeBorder");
}
