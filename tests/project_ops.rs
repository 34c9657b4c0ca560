//! The project's own tract ops (src/ops/) against the tract ops they replace: same values on
//! edge cases, and the int8 encoder with and without the rewrite (casts, fused quantisation)
//! gives identical features.

mod common;

use common::*;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::EvalOp;
use tract_onnx::tract_core::ops::cast::cast;
use usq::ops::cast::SimdCast;
use usq::ops::quantize::QuantizeI8;
use usq::{Encoder, EncoderOptions, GrayFrame};

fn eval<T: Datum + Copy>(op: &dyn EvalOp, input: Tensor) -> Vec<T> {
    let out = op.eval_out_of_plan(tvec!(input.into_tvalue())).unwrap().unwrap().remove(0).into_tensor();
    out.try_as_plain_ram().unwrap().as_slice::<T>().unwrap().to_vec()
}

#[test]
fn f32_to_i8_matches_tract_cast() {
    let mut values = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e10,
        -1e10,
        -128.5,
        -128.0,
        -127.9,
        127.9,
        128.0,
        300.0,
        -0.7,
        0.3,
        -0.0,
        0.5,
        -1.5,
    ];
    let mut rng = fastrand::Rng::with_seed(3);
    values.extend((0..1037).map(|_| (rng.f32() - 0.5) * 400.0));
    let input = tensor1(&values);
    assert_eq!(eval::<i8>(&SimdCast::F32ToI8, input.clone()), eval::<i8>(&cast(DatumType::I8), input));
}

#[test]
fn i32_to_f32_matches_tract_cast() {
    let mut values = vec![i32::MAX, i32::MIN, 16_777_217, -16_777_217, 0, 1, -1];
    let mut rng = fastrand::Rng::with_seed(4);
    values.extend((0..1021).map(|_| rng.i32(..)));
    let input = tensor1(&values);
    assert_eq!(eval::<f32>(&SimdCast::I32ToF32, input.clone()), eval::<f32>(&cast(DatumType::F32), input));
}

#[test]
fn quantize_matches_the_float_ops_and_cast_it_replaces() {
    let q = QuantizeI8 { mul: 1.0 / 0.0123, add: 12_582_912.0, sub: 12_582_912.0, lo: -127.0, hi: 127.0 };
    let mut values = vec![f32::INFINITY, f32::NEG_INFINITY, 1e10, -1e10, 0.0, -0.0, 0.0123 * 0.5, -0.0123 * 2.5];
    let mut rng = fastrand::Rng::with_seed(5);
    values.extend((0..1029).map(|_| (rng.f32() - 0.5) * 4.0));
    let mut ours = vec![0i8; values.len()];
    q.run(&values, &mut ours);
    // The exported graph's maths, op by op in f32, then tract's cast (Rust's `as`).
    let expected: Vec<i8> = values
        .iter()
        .map(|&x| {
            let t = x * q.mul;
            let t = t + q.add;
            let t = t - q.sub;
            t.max(q.lo).min(q.hi) as i8
        })
        .collect();
    assert_eq!(ours, expected);
}

#[test]
fn int8_encoder_is_identical_with_and_without_project_ops() {
    let bytes = std::fs::read(repo().join("models/tinyusfm-int8.onnx")).unwrap();
    let options = EncoderOptions::batch(1);
    let mut ours = Encoder::from_bytes_with(&bytes, options).unwrap();
    let mut tracts = Encoder::from_bytes_tract_ops_only(&bytes, options).unwrap();
    let frame = GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    let input = usq::preprocess::ulpips_input(&frame);
    let a = ours.run(&[&input]).unwrap();
    let b = tracts.run(&[&input]).unwrap();
    assert_eq!(a, b, "the rewrite changed the int8 encoder's features");
    // And the rewrite did happen: the profiles differ in op names.
    let names = |e: &mut Encoder| e.profile(1).unwrap().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    let ours_ops = names(&mut ours);
    assert!(ours_ops.iter().any(|n| n == "UsqSimdCast"), "{ours_ops:?}");
    assert!(ours_ops.iter().any(|n| n == "UsqQuantizeI8"), "{ours_ops:?}");
    assert!(!names(&mut tracts).iter().any(|n| n == "UsqSimdCast"));
}
