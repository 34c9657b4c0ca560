//! The project's own tract ops against the tract ops they replace: same values on
//! edge cases; the int8 encoder with and without the rewrite after optimisation (casts, fused
//! quantisation) gives identical features; the attention op agrees with its definition (f64)
//! and the encoders with it agree with tract's ops to float rounding.

use crate::ops::attention::{Attention, Kernel};
use crate::ops::cast::SimdCast;
use crate::ops::linear::{self, LinearI8};
use crate::ops::linear_f32::{self, LinearF32};
use crate::ops::quantize::QuantizeI8;
use crate::ops::workers::Workers;
use crate::{Encoder, EncoderOptions, GrayFrame};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::EvalOp;
use tract_onnx::tract_core::ops::cast::cast;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn at(rel: &str) -> PathBuf {
    repo().join(rel)
}

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

/// The int8 model through tract, optimised, with or without the rewrite that runs after
/// optimisation (casts, fused quantisation); all four outputs.
fn int8_outputs(rewrite: bool, input: &[f32]) -> (Vec<Vec<f32>>, Vec<String>) {
    let mut model = tract_onnx::onnx().model_for_path(repo().join("models/tinyusfm-int8.onnx")).unwrap();
    model.set_input_fact(0, f32::fact([1, 1, 224, 224]).into()).unwrap();
    let mut typed = model.into_typed().unwrap();
    if rewrite {
        let linear = crate::ops::fuse_linear(&mut typed).unwrap();
        assert_eq!(linear > 0, LinearI8::available(), "{linear} linear layers swapped");
    }
    let mut typed = typed.into_optimized().unwrap();
    if rewrite {
        assert!(crate::ops::rewrite(&mut typed).unwrap() > 0);
    }
    let ops = typed.nodes().iter().map(|n| n.op.name().to_string()).collect();
    let plan = typed.into_runnable().unwrap();
    let x = Tensor::from_shape(&[1, 1, 224, 224], input).unwrap();
    let outputs = plan.run(tvec!(x.into_tvalue())).unwrap();
    let values = outputs.iter().map(|t| t.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()).collect();
    (values, ops)
}

#[test]
fn int8_encoder_is_identical_with_and_without_the_linear_cast_and_quantise_ops() {
    let frame = GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    let input = crate::imaging::preprocess::ulpips_input(&frame);
    let (ours, ours_ops) = int8_outputs(true, &input);
    let (tracts, tract_ops) = int8_outputs(false, &input);
    assert_eq!(ours, tracts, "the rewrite changed the int8 encoder's features");
    // And the rewrite did happen.
    assert!(ours_ops.iter().any(|n| n == "UsqSimdCast"), "{ours_ops:?}");
    // Every QuantizeI8 of this graph (before fc2) goes on into the GELU epilogue; where the
    // linear op runs, it takes the dequantisations and GELU epilogues in as its own.
    let epilogues_apart = !LinearI8::available();
    assert_eq!(ours_ops.iter().any(|n| n == "UsqDequantizeI32"), epilogues_apart, "{ours_ops:?}");
    assert!(ours_ops.iter().any(|n| n == "UsqAffineQuantizeI8"), "{ours_ops:?}");
    assert_eq!(ours_ops.iter().any(|n| n == "UsqDequantizeGeluQuantizeI8"), epilogues_apart, "{ours_ops:?}");
    assert!(!ours_ops.iter().any(|n| n == "GeluExact"), "{ours_ops:?}");
    // Every linear layer the outputs need (4 in each of the 11 blocks before the last
    // output) runs as the project's op wherever the CPU has its kernel.
    let linear = ours_ops.iter().filter(|n| *n == "UsqLinearI8").count();
    assert_eq!(linear, if LinearI8::available() { 44 } else { 0 }, "{ours_ops:?}");
    // Of them, each block's two output projections add the residual stream themselves: the
    // Add left is the position embedding's.
    let adds = |ops: &[String]| ops.iter().filter(|n| *n == "OptAddUnicast").count();
    let fused_adds = if LinearI8::available() { 22 } else { 0 };
    assert_eq!(adds(&tract_ops) - adds(&ours_ops), fused_adds, "{ours_ops:?}\n{tract_ops:?}");
    assert!(!tract_ops.iter().any(|n| n.starts_with("Usq")));
}

/// Rows of every length the op may see, against the ops tract lowers LayerNorm to (its
/// Reduce, the scalar product and subtraction, its RmsNorm): the same values to float
/// rounding (another summation order), within 1e-5 of outputs of unit variance.
#[test]
fn layer_norm_rows_match_tracts_ops() {
    use crate::ops::layer_norm::Normalize;
    use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};
    let mut rng = fastrand::Rng::with_seed(11);
    for columns in [1usize, 3, 4, 5, 17, 33, 192, 200] {
        let rows = 7;
        let x: Vec<f32> = (0..rows * columns).map(|_| (rng.f32() - 0.3) * 8.0).collect();
        let (recip, eps) = (1.0 / columns as f32, 1e-6f32);
        let op = Normalize { recip, eps };
        let mut ours = vec![0f32; x.len()];
        op.run(&x, columns, &mut ours).unwrap();
        let input = Tensor::from_shape(&[rows, columns], &x).unwrap();
        let sum = eval::<f32>(&Reduce::new(tvec!(1), Reducer::Sum), input.clone());
        let centred: Vec<f32> = x.iter().enumerate().map(|(i, &v)| v - sum[i / columns] * recip).collect();
        let rms = RmsNorm { axis: 1, eps: rctensor0(eps) };
        let expected = eval::<f32>(&rms, Tensor::from_shape(&[rows, columns], &centred).unwrap());
        let worst = ours.iter().zip(&expected).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-5, "rows of {columns}: max |diff| {worst}");
        // Evaluated as an op, on a tensor, the same.
        let out = eval::<f32>(&op, input);
        assert_eq!(ours, out);
    }
}

/// softmax(scale·Q·Kᵀ)·V per head in f64, straight from the definition.
fn attention_reference(a: &Attention, qkv: &[f32], batch: usize, tokens: usize) -> Vec<f64> {
    let (h_n, d, w) = (a.heads, a.head_dim, a.width());
    let at = |b: usize, t: usize, part: usize, h: usize, i: usize| {
        qkv[(b * tokens + t) * 3 * w + part * w + h * d + i] as f64
    };
    let mut out = vec![0.0; batch * tokens * w];
    for b in 0..batch {
        for h in 0..h_n {
            for t in 0..tokens {
                let s: Vec<f64> = (0..tokens)
                    .map(|j| (0..d).map(|i| at(b, t, 0, h, i) * at(b, j, 1, h, i)).sum::<f64>() * a.scale as f64)
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for i in 0..d {
                    out[(b * tokens + t) * w + h * d + i] =
                        (0..tokens).map(|j| e[j] * at(b, j, 2, h, i)).sum::<f64>() / z;
                }
            }
        }
    }
    out
}

#[test]
fn attention_kernels_match_the_definition() {
    let mut rng = fastrand::Rng::with_seed(6);
    // (heads, head_dim, batch, tokens): the model's shape, token counts off the blocks of 4
    // and 16, a head dim with half a 16-lane step (24) and one the vector kernel leaves to the
    // portable code (12), a single token; for the AVX-512 kernel, its general body (D = 32)
    // and token counts that fill the last 16-key block exactly (32, 208).
    for (heads, head_dim, batch, tokens) in [
        (12, 16, 1, 197),
        (12, 16, 2, 197),
        (3, 24, 2, 37),
        (2, 12, 1, 19),
        (4, 16, 1, 1),
        (1, 8, 3, 5),
        (2, 32, 1, 40),
        (3, 16, 2, 32),
        (2, 16, 1, 208),
    ] {
        let a = Attention { heads, head_dim, scale: (head_dim as f32).powf(-0.5) };
        // Large logits too: rows where one key takes almost all the weight.
        let spread = if tokens == 197 { 3.0 } else { 12.0 };
        let qkv: Vec<f32> = (0..batch * tokens * 3 * a.width()).map(|_| (rng.f32() - 0.5) * spread).collect();
        let expected = attention_reference(&a, &qkv, batch, tokens);
        for kernel in [Kernel::Auto, Kernel::Avx2, Kernel::Portable] {
            let mut out = vec![f32::NAN; batch * tokens * a.width()];
            a.run_with(kernel, &qkv, &mut out, batch, tokens);
            let worst = out.iter().zip(&expected).map(|(&x, &y)| (x as f64 - y).abs()).fold(0.0, f64::max);
            assert!(worst < 5e-5, "{kernel:?} {heads}x{head_dim} batch {batch} tokens {tokens}: max |diff| {worst}");
        }
    }
}

/// The heads split over a pool's threads (an encoder with threads) give the single thread's
/// output bit for bit, whichever kernel, including more threads than heads.
#[cfg(feature = "multithread")]
#[test]
fn attention_heads_on_several_threads_match_one() {
    use tract_linalg::multithread::Executor;
    let mut rng = fastrand::Rng::with_seed(7);
    for (heads, head_dim, batch, tokens) in [(12, 16, 1, 197), (3, 24, 2, 37), (1, 8, 1, 5)] {
        let a = Attention { heads, head_dim, scale: (head_dim as f32).powf(-0.5) };
        let qkv: Vec<f32> = (0..batch * tokens * 3 * a.width()).map(|_| (rng.f32() - 0.5) * 6.0).collect();
        for kernel in [Kernel::Auto, Kernel::Avx2, Kernel::Portable] {
            let mut one = vec![f32::NAN; batch * tokens * a.width()];
            a.run_with(kernel, &qkv, &mut one, batch, tokens);
            for threads in [2, 3, 5] {
                let pool = Workers::Pool(std::sync::Arc::new(Executor::multithread(threads)));
                let mut many = vec![f32::NAN; one.len()];
                a.run_on(kernel, &qkv, &mut many, batch, tokens, &pool);
                let same = one.iter().zip(&many).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{kernel:?} {heads} heads, batch {batch}, {threads} threads");
            }
        }
    }
}

/// A NaN in a score poisons its softmax row, as in tract's ops: never a finite output.
#[test]
fn attention_kernels_keep_nan() {
    let a = Attention { heads: 2, head_dim: 16, scale: 0.25 };
    let (batch, tokens) = (1, 9);
    let mut rng = fastrand::Rng::with_seed(8);
    for part in 0..3 {
        let mut qkv: Vec<f32> = (0..batch * tokens * 3 * a.width()).map(|_| rng.f32() - 0.5).collect();
        // Token 3, head 1, channel 5 of q (part 0), k (1) or v (2).
        qkv[3 * 3 * a.width() + part * a.width() + 16 + 5] = f32::NAN;
        for kernel in [Kernel::Auto, Kernel::Avx2, Kernel::Portable] {
            let mut out = vec![0.0; batch * tokens * a.width()];
            a.run_with(kernel, &qkv, &mut out, batch, tokens);
            // q: token 3's row of head 1; k or v: every token's row of head 1.
            let rows: Vec<usize> = if part == 0 { vec![3] } else { (0..tokens).collect() };
            for t in rows {
                let head1 = &out[t * a.width() + 16..][..16];
                assert!(head1.iter().any(|x| x.is_nan()), "{kernel:?} part {part} token {t}: {head1:?}");
            }
            assert!(out[..16].iter().all(|x| x.is_finite()), "head 0 is untouched");
        }
    }
}

/// The LayerNorm with the affine step and quantisation inside gives the two ops apart
/// ([`Normalize`], then [`AffineQuantizeI8`]) bit for bit, on rows of every length; rows of
/// another length than gamma's are an error.
#[test]
fn layer_norm_quantize_is_the_two_ops_apart() {
    use crate::ops::layer_norm::{Normalize, NormalizeQuantizeI8};
    use crate::ops::quantize::AffineQuantizeI8;
    let mut rng = fastrand::Rng::with_seed(12);
    // The int8 model's form: x / step, rounded by adding and taking back 1.5 * 2^23, clamped.
    let q = QuantizeI8 { mul: 1.0 / 0.031, add: 12_582_912.0, sub: 12_582_912.0, lo: -128.0, hi: 127.0 };
    for columns in [1usize, 3, 16, 17, 33, 192, 200] {
        let rows = 9;
        let x: Vec<f32> = (0..rows * columns).map(|_| (rng.f32() - 0.3) * 8.0).collect();
        let gamma: Vec<f32> = (0..columns).map(|_| rng.f32() * 2.0).collect();
        let beta: Vec<f32> = (0..columns).map(|_| rng.f32() - 0.5).collect();
        let norm = Normalize { recip: 1.0 / columns as f32, eps: 1e-6 };
        let mut normalised = vec![0f32; x.len()];
        norm.run(&x, columns, &mut normalised).unwrap();
        let mut apart = vec![0i8; x.len()];
        AffineQuantizeI8(q).run(&normalised, &gamma, &beta, columns, &mut apart).unwrap();
        let fused = NormalizeQuantizeI8 {
            norm,
            quantize: q,
            gamma: std::sync::Arc::new(gamma.clone()),
            beta: std::sync::Arc::new(beta.clone()),
        };
        let mut together = vec![0i8; x.len()];
        fused.run(&x, &mut together).unwrap();
        assert_eq!(together, apart, "rows of {columns}");
        assert!(apart.iter().any(|&v| v != 0), "rows of {columns}: all zero");
        let out = eval::<i8>(&fused, Tensor::from_shape(&[rows, columns], &x).unwrap());
        assert_eq!(out, apart, "rows of {columns}, as an op");
        if columns > 1 {
            let other = Tensor::zero::<f32>(&[2, columns - 1]).unwrap();
            assert!(fused.eval_out_of_plan(tvec!(other.into_tvalue())).is_err(), "rows of {}", columns - 1);
        }
    }
}

/// The fp32 and int8 encoders with all the project's ops (attention fused before tract
/// optimises) against tract's own ops, batch 1 and 3: the same features to float rounding.
#[test]
fn encoders_with_the_attention_op_match_tracts_ops() {
    let frame = GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    let whole = crate::imaging::preprocess::ulpips_input(&frame);
    let mut rng = fastrand::Rng::with_seed(7);
    let noise: Vec<f32> = whole.iter().map(|&x| (x + (rng.f32() - 0.5) * 0.2).clamp(0.0, 1.0)).collect();
    for model in ["models/tinyusfm.onnx", "models/tinyusfm-int8.onnx"] {
        let bytes = std::fs::read(repo().join(model)).unwrap();
        for batch in [1, 3] {
            let options = EncoderOptions::batch(batch);
            let mut ours = Encoder::from_bytes_with(&bytes, options).unwrap();
            let mut tracts = Encoder::from_bytes_tract_ops_only(&bytes, options).unwrap();
            let images: Vec<&[f32]> = [&whole[..], &noise[..], &whole[..]][..batch].to_vec();
            let a = ours.run(&images).unwrap();
            let b = tracts.run(&images).unwrap();
            for (fa, fb) in a.iter().zip(&b) {
                for (la, lb) in fa.layer_slices().iter().zip(fb.layer_slices()) {
                    let scale = lb.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let worst = la.iter().zip(lb).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                    // int8: a rounding difference can move an activation across a
                    // quantisation step, one step of one channel.
                    let bound = if model.contains("int8") { 2e-2 } else { 1e-4 };
                    assert!(worst <= bound * scale, "{model} batch {batch}: max |diff| {worst} of {scale}");
                }
            }
            let ops: Vec<String> = ours.profile(1).unwrap().into_iter().map(|(n, _)| n).collect();
            assert!(ops.iter().any(|n| n == "UsqAttention"), "{model}: {ops:?}");
            // int8: every LayerNorm feeds a linear layer's quantisation, and takes it in.
            let norm = if model.contains("int8") { "UsqLayerNormQuantizeI8" } else { "UsqLayerNorm" };
            assert!(ops.iter().any(|n| n == norm), "{model}: {ops:?}");
            assert!(!ops.iter().any(|n| n == "UsqAffineQuantizeI8"), "{model}: {ops:?}");
            assert!(!ops.iter().any(|n| n == "RmsNorm"), "{model}: LayerNorm left to tract: {ops:?}");
            assert!(!ops.iter().any(|n| n == "Softmax"), "{model}: attention left unfused: {ops:?}");
            // And the linear layers, where this CPU has the project's kernel for them.
            let (linear, available) = if model.contains("int8") {
                ("UsqLinearI8", LinearI8::available())
            } else {
                ("UsqLinearF32", LinearF32::available())
            };
            assert_eq!(ops.iter().any(|n| n == linear), available, "{model}: {ops:?}");
            assert!(!available || !ops.iter().any(|n| n == "OptMatMulPack"), "{model}: {ops:?}");
            // fc1's GELU runs inside the linear op where it runs.
            assert!(!available || !ops.iter().any(|n| n == "GeluExact"), "{model}: {ops:?}");
        }
    }
}

/// The dequantise op against the cast and the two float ops it replaces, value by value:
/// extreme accumulators, one scale for all columns or one per column, a column count off the
/// vector width; wrong operand lengths are errors.
#[test]
fn dequantize_matches_the_cast_mul_and_add_it_replaces() {
    use crate::ops::dequantize::run;
    let mut rng = fastrand::Rng::with_seed(8);
    for columns in [1, 7, 16, 21, 768] {
        let rows = 5;
        let mut acc: Vec<i32> = (0..rows * columns).map(|_| rng.i32(-5_000_000..5_000_000)).collect();
        acc[0] = i32::MIN;
        acc[rows * columns - 1] = i32::MAX;
        let scale: Vec<f32> = (0..columns).map(|_| rng.f32() * 1e-3).collect();
        let bias: Vec<f32> = (0..columns).map(|_| rng.f32() - 0.5).collect();
        for (s, b) in [(&scale[..], &bias[..]), (&scale[..1], &bias[..]), (&scale[..], &bias[..1])] {
            let mut out = vec![f32::NAN; acc.len()];
            run(&acc, s, b, columns, &mut out).unwrap();
            for (i, (&a, &o)) in acc.iter().zip(&out).enumerate() {
                let c = i % columns;
                let expected = a as f32 * s[c.min(s.len() - 1)] + b[c.min(b.len() - 1)];
                assert_eq!(o.to_bits(), expected.to_bits(), "{columns} columns, element {i}");
            }
        }
    }
    let mut out = vec![0f32; 6];
    assert!(run(&[0; 6], &[1.0; 2], &[0.0; 3], 3, &mut out).is_err(), "2 scales for 3 columns");
    assert!(run(&[0; 6], &[1.0], &[0.0], 4, &mut out).is_err(), "6 values are not rows of 4");
}

/// The affine quantisation against LayerNorm's gamma and beta followed by the quantisation's
/// float ops and cast, value by value (NaN, infinities and values that clip included).
#[test]
fn affine_quantize_matches_the_float_ops_it_replaces() {
    use crate::ops::quantize::AffineQuantizeI8;
    let q = QuantizeI8 { mul: 37.5, add: 12_582_912.0, sub: 12_582_912.0, lo: -128.0, hi: 127.0 };
    let mut rng = fastrand::Rng::with_seed(9);
    for columns in [1, 5, 192] {
        let mut x: Vec<f32> = (0..3 * columns).map(|_| (rng.f32() - 0.5) * 20.0).collect();
        x[0] = f32::NAN;
        if x.len() > 2 {
            (x[1], x[2]) = (f32::INFINITY, f32::NEG_INFINITY);
        }
        let gamma: Vec<f32> = (0..columns).map(|_| rng.f32() * 2.0).collect();
        let beta: Vec<f32> = (0..columns).map(|_| rng.f32() - 0.5).collect();
        for (g, b) in [(&gamma[..], &beta[..]), (&gamma[..1], &beta[..1])] {
            let mut out = vec![0i8; x.len()];
            AffineQuantizeI8(q).run(&x, g, b, columns, &mut out).unwrap();
            for (i, (&v, &o)) in x.iter().zip(&out).enumerate() {
                let c = i % columns;
                assert_eq!(o, q.value(v * g[c.min(g.len() - 1)] + b[c.min(b.len() - 1)]), "{columns} columns, {i}");
            }
        }
    }
    assert!(AffineQuantizeI8(q).run(&[0.0; 4], &[1.0; 3], &[0.0], 2, &mut [0; 4]).is_err());
}

/// The MLP epilogue against the three ops it replaces (dequantise, tract's GeluExact, the
/// quantisation), over several blocks of rows and a short last block.
#[test]
fn dequantize_gelu_quantize_matches_the_ops_it_replaces() {
    use crate::ops::gelu::DequantizeGeluQuantizeI8;
    use tract_onnx::tract_core::ops::nn::gelu_exact::gelu_exact;
    let q = QuantizeI8 { mul: 21.0, add: 12_582_912.0, sub: 12_582_912.0, lo: -128.0, hi: 127.0 };
    let mut rng = fastrand::Rng::with_seed(10);
    for (rows, columns) in [(25, 768), (3, 5), (1, 1)] {
        let acc: Vec<i32> = (0..rows * columns).map(|_| rng.i32(-400_000..400_000)).collect();
        let scale: Vec<f32> = (0..columns).map(|_| 1e-5 + rng.f32() * 1e-5).collect();
        let bias: Vec<f32> = (0..columns).map(|_| rng.f32() - 0.5).collect();
        let mut x = vec![0f32; acc.len()];
        crate::ops::dequantize::run(&acc, &scale, &bias, columns, &mut x).unwrap();
        let gelu: Vec<f32> = eval(&gelu_exact(), Tensor::from_shape(&[rows, columns], &x).unwrap());
        let mut out = vec![0i8; acc.len()];
        DequantizeGeluQuantizeI8(q).run(&acc, &scale, &bias, columns, &mut out).unwrap();
        let expected: Vec<i8> = gelu.iter().map(|&g| q.value(g)).collect();
        assert_eq!(out, expected, "{rows} x {columns}");
    }
}

/// The GELU epilogue's inline erf gives the bits of tract's erf routine on this CPU (which the
/// GeluExact it replaces runs), for every f32 from -8 to 8 in steps of 2^-12, random values,
/// the ends, zeros and NaN. (On aarch64, under cross/test.sh, that is tract's generic form.)
#[test]
fn inline_erf_matches_tracts() {
    use tract_onnx::tract_core::tract_linalg::routines::Func;
    let mut xs: Vec<f32> = (-32768..=32768).map(|i| i as f32 / 4096.0).collect();
    xs.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        20.0,
        -20.0,
        1e30,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
    ]);
    let mut rng = fastrand::Rng::with_seed(19);
    xs.extend((0..100_000).map(|_| (rng.f32() - 0.5) * 12.0));
    while !xs.len().is_multiple_of(16) {
        xs.push(0.5);
    }
    let mut theirs = xs.clone();
    Func::Erf.ew_f32().unwrap().run(&mut theirs).unwrap();
    // The erf the epilogues are given on this CPU (their own choice of form).
    crate::ops::gelu::with_erf(|ours| {
        for (&x, &t) in xs.iter().zip(&theirs) {
            assert_eq!(ours(x).to_bits(), t.to_bits(), "erf({x:e}): {:e} against tract's {t:e}", ours(x));
        }
    });
    assert!(crate::ops::gelu::erf_fused(f32::NAN).is_nan() && crate::ops::gelu::erf_apart(f32::NAN).is_nan());
}

/// `x · W` in i64 from the definition.
fn linear_reference(x: &[i8], w: &[i8], k: usize, n: usize) -> Vec<i64> {
    x.chunks_exact(k)
        .flat_map(|row| (0..n).map(move |c| (0..k).map(|i| row[i] as i64 * w[i * n + c] as i64).sum::<i64>()))
        .collect()
}

/// `first`, then the kernels that run only when asked for ([`linear::Kernel::on_request`]).
fn linear_kernels<const N: usize>(first: [linear::Kernel; N]) -> Vec<linear::Kernel> {
    first.into_iter().chain(linear::Kernel::on_request()).collect()
}

#[test]
fn linear_kernels_match_the_definition() {
    let mut rng = fastrand::Rng::with_seed(17);
    // (rows, K, N): the model's four layers; rows off the tiles of 6; N off the panels of 64
    // and the vectors of 16; K off the 64-byte row sums; one row; the extremes of i8.
    for (rows, k, n) in [
        (197, 192, 576),
        (197, 192, 192),
        (197, 192, 768),
        (197, 768, 192),
        (5, 20, 7),
        (13, 132, 100),
        (1, 4, 1),
        (7, 64, 80),
    ] {
        let x: Vec<i8> = (0..rows * k).map(|_| rng.i8(..)).collect();
        let w: Vec<i8> = (0..k * n).map(|_| rng.i8(..)).collect();
        let expected = linear_reference(&x, &w, k, n);
        let op = LinearI8::new(&w, k, n).unwrap();
        let kernels = linear_kernels([linear::Kernel::Auto, linear::Kernel::Portable]);
        for kernel in kernels {
            let mut out = vec![i32::MIN; rows * n];
            op.run(kernel, &x, &mut out, &Workers::Current);
            let got: Vec<i64> = out.iter().map(|&v| v as i64).collect();
            assert!(got == expected, "{kernel:?} {rows}x{k}x{n}");
        }
        // All -128 against all -128 and 127: the largest sums either way.
        for fill in [-128i8, 127] {
            let x = vec![-128i8; rows * k];
            let w = vec![fill; k * n];
            let op = LinearI8::new(&w, k, n).unwrap();
            for kernel in linear_kernels([linear::Kernel::Auto]) {
                let mut out = vec![0i32; rows * n];
                op.run(kernel, &x, &mut out, &Workers::Current);
                assert!(
                    out.iter().all(|&v| v as i64 == -128 * fill as i64 * k as i64),
                    "{kernel:?} {rows}x{k}x{n} fill {fill}"
                );
            }
        }
    }
    // Which kernels ran (cross/test.sh shows them for each emulated CPU).
    let ran: Vec<_> = linear_kernels([linear::Kernel::Auto]).iter().map(|k| k.name()).collect();
    eprintln!("int8 linear on {}: {}", std::env::consts::ARCH, ran.join(", "));
    assert!(LinearI8::new(&[0; 6], 3, 2).is_err(), "K not a multiple of 4");
    // Rows of another K, and a scalar, are errors that say which K the op wants.
    let op = LinearI8::new(&[1; 8], 4, 2).unwrap();
    for bad in [Tensor::zero::<i8>(&[2, 5]).unwrap(), Tensor::zero::<i8>(&[]).unwrap()] {
        let e = op.eval_out_of_plan(tvec!(bad.into_tvalue())).unwrap_err();
        assert!(format!("{e}").contains("want K = 4"), "{e}");
    }
    assert!(LinearI8::new(&[0; 7], 4, 2).is_err(), "weights of the wrong length");
}

/// Row blocks split over a pool's threads give one thread's output.
#[cfg(feature = "multithread")]
#[test]
fn linear_rows_on_several_threads_match_one() {
    use tract_linalg::multithread::Executor;
    let mut rng = fastrand::Rng::with_seed(18);
    let (rows, k, n) = (197, 192, 576);
    let x: Vec<i8> = (0..rows * k).map(|_| rng.i8(..)).collect();
    let w: Vec<i8> = (0..k * n).map(|_| rng.i8(..)).collect();
    let op = LinearI8::new(&w, k, n).unwrap();
    let mut one = vec![0i32; rows * n];
    op.run(linear::Kernel::Auto, &x, &mut one, &Workers::Current);
    for threads in [2, 3, 5] {
        let pool = Workers::Pool(std::sync::Arc::new(Executor::multithread(threads)));
        let mut many = vec![0i32; rows * n];
        op.run(linear::Kernel::Auto, &x, &mut many, &pool);
        assert!(many == one, "{threads} threads");
    }
}

/// The residual epilogue is the dequantising one's output plus the stream, bit for bit (what
/// tract's Add after it made), on every kernel and on several threads; a stream of another
/// shape, or none, is an error.
#[test]
fn linear_residual_epilogue_adds_the_stream_to_the_dequantised_sums() {
    use crate::ops::workers::Disjoint;
    use linear::{Epilogue, Output};
    let mut rng = fastrand::Rng::with_seed(19);
    let (rows, k, n) = (197, 768, 192);
    let x: Vec<i8> = (0..rows * k).map(|_| rng.i8(..)).collect();
    let w: Vec<i8> = (0..k * n).map(|_| rng.i8(..)).collect();
    let stream: Vec<f32> = (0..rows * n).map(|_| rng.f32() * 8.0 - 4.0).collect();
    let scale = std::sync::Arc::new((0..n).map(|_| rng.f32() * 1e-3).collect::<Vec<f32>>());
    let bias = std::sync::Arc::new((0..n).map(|_| rng.f32() - 0.5).collect::<Vec<f32>>());
    let op = LinearI8::new(&w, k, n).unwrap();
    let plain = op.with_epilogue(Epilogue::Dequantize { scale: scale.clone(), bias: bias.clone() }).unwrap();
    let fused = op.with_epilogue(Epilogue::DequantizeResidual { scale, bias }).unwrap();
    let mut dequantised = vec![0f32; rows * n];
    plain.run_into(linear::Kernel::Portable, &x, None, Output::F32(Disjoint::new(&mut dequantised)), &Workers::Current);
    let expected: Vec<u32> = dequantised.iter().zip(&stream).map(|(d, r)| (d + r).to_bits()).collect();
    let mut pools = vec![Workers::Current];
    #[cfg(feature = "multithread")]
    pools.push(Workers::Pool(std::sync::Arc::new(tract_linalg::multithread::Executor::multithread(3))));
    for workers in &pools {
        for kernel in linear_kernels([linear::Kernel::Auto, linear::Kernel::Portable]) {
            let mut out = vec![f32::NAN; rows * n];
            fused.run_into(kernel, &x, Some(&stream), Output::F32(Disjoint::new(&mut out)), workers);
            let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
            assert!(got == expected, "{kernel:?}");
        }
    }
    // Through eval: the stream is the second input, of the output's shape.
    let x = Tensor::from_shape(&[1, rows, k], &x).unwrap();
    let good = Tensor::from_shape(&[1, rows, n], &stream).unwrap();
    let out = fused
        .eval_out_of_plan(tvec!(x.clone().into_tvalue(), good.into_tvalue()))
        .unwrap()
        .expect("evaluated out of plan");
    let got: Vec<u32> =
        out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().iter().map(|v| v.to_bits()).collect();
    assert!(got == expected);
    let short = Tensor::zero::<f32>(&[1, rows - 1, n]).unwrap();
    let e = fused.eval_out_of_plan(tvec!(x.clone().into_tvalue(), short.into_tvalue())).unwrap_err();
    assert!(format!("{e}").contains("residual"), "{e}");
    let e = fused.eval_out_of_plan(tvec!(x.into_tvalue())).unwrap_err();
    assert!(format!("{e}").contains("inputs"), "{e}");
}

/// `x · W + b` in f64 from the definition.
fn linear_f32_reference(x: &[f32], w: &[f32], b: Option<&[f32]>, k: usize, n: usize) -> Vec<f64> {
    x.chunks_exact(k)
        .flat_map(|row| {
            (0..n).map(move |c| {
                (0..k).map(|i| row[i] as f64 * w[i * n + c] as f64).sum::<f64>() + b.map_or(0.0, |b| b[c] as f64)
            })
        })
        .collect()
}

#[test]
fn linear_f32_kernels_match_the_definition() {
    let mut rng = fastrand::Rng::with_seed(20);
    // (rows, K, N): the model's four layers; K off the chunk of 96 (one chunk, several, a
    // short last one); N off the panels of 64 and vectors of 16; rows off the tiles of 6.
    for (rows, k, n) in [
        (197, 192, 576),
        (197, 192, 192),
        (197, 192, 768),
        (197, 768, 192),
        (5, 7, 3),
        (13, 100, 70),
        (1, 1, 1),
        (7, 200, 129),
    ] {
        let x: Vec<f32> = (0..rows * k).map(|_| rng.f32() * 2.0 - 1.0).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.f32() * 0.2 - 0.1).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.f32() - 0.5).collect();
        for bias in [None, Some(&b[..])] {
            let expected = linear_f32_reference(&x, &w, bias, k, n);
            let op = LinearF32::new(&w, k, n, bias).unwrap();
            for kernel in [linear_f32::Kernel::Auto, linear_f32::Kernel::Portable] {
                let mut out = vec![f32::NAN; rows * n];
                op.run(kernel, &x, &mut out, &Workers::Current);
                // Sums of K products of |x·w| ≤ 0.1 in f32: rounding well under 1e-5 each.
                let worst = out.iter().zip(&expected).map(|(&o, &e)| (o as f64 - e).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-4, "{kernel:?} {rows}x{k}x{n} bias {}: max |diff| {worst}", bias.is_some());
            }
        }
    }
    assert!(LinearF32::new(&[0.0; 5], 2, 2, None).is_err(), "weights of the wrong length");
    assert!(LinearF32::new(&[0.0; 4], 2, 2, Some(&[0.0; 3])).is_err(), "a bias of the wrong length");
}

/// Row blocks split over a pool's threads give one thread's output, bit for bit.
#[cfg(feature = "multithread")]
#[test]
fn linear_f32_rows_on_several_threads_match_one() {
    use tract_linalg::multithread::Executor;
    let mut rng = fastrand::Rng::with_seed(21);
    let (rows, k, n) = (197, 768, 192);
    let x: Vec<f32> = (0..rows * k).map(|_| rng.f32() - 0.5).collect();
    let w: Vec<f32> = (0..k * n).map(|_| rng.f32() - 0.5).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
    let op = LinearF32::new(&w, k, n, Some(&b)).unwrap();
    let mut one = vec![0f32; rows * n];
    op.run(linear_f32::Kernel::Auto, &x, &mut one, &Workers::Current);
    for threads in [2, 3, 5] {
        let pool = Workers::Pool(std::sync::Arc::new(Executor::multithread(threads)));
        let mut many = vec![0f32; rows * n];
        op.run(linear_f32::Kernel::Auto, &x, &mut many, &pool);
        assert!(many.iter().map(|v| v.to_bits()).eq(one.iter().map(|v| v.to_bits())), "{threads} threads");
    }
}

/// The fp32 linear op's GELU epilogue gives tract's GeluExact of its output, bit for bit, on
/// both kernels and over threads.
#[test]
fn linear_f32_gelu_is_tracts_gelu_of_its_output() {
    use tract_onnx::tract_core::ops::nn::gelu_exact::gelu_exact;
    let mut rng = fastrand::Rng::with_seed(22);
    for (rows, k, n) in [(197, 192, 768), (7, 20, 70)] {
        let x: Vec<f32> = (0..rows * k).map(|_| rng.f32() * 4.0 - 2.0).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.f32() * 0.4 - 0.2).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.f32() - 0.5).collect();
        let op = LinearF32::new(&w, k, n, Some(&b)).unwrap();
        for kernel in [linear_f32::Kernel::Auto, linear_f32::Kernel::Portable] {
            let mut plain = vec![0f32; rows * n];
            op.run(kernel, &x, &mut plain, &Workers::Current);
            let expected: Vec<f32> = eval(&gelu_exact(), Tensor::from_shape(&[rows, n], &plain).unwrap());
            let mut fused = vec![0f32; rows * n];
            op.with_gelu().run(kernel, &x, &mut fused, &Workers::Current);
            assert!(
                fused.iter().map(|v| v.to_bits()).eq(expected.iter().map(|v| v.to_bits())),
                "{kernel:?} {rows}x{k}x{n}"
            );
        }
    }
}
