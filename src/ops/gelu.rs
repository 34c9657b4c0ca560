//! The int8 model's MLP epilogue in one pass: fc1's i32 accumulators dequantised (scale, bias),
//! the exact GELU, and the quantisation for fc2, from i32 to i8 without writing the f32
//! activations out. tract runs [`super::dequantize::DequantizeI32`], its `GeluExact` and
//! [`super::quantize::QuantizeI8`] as three passes over a `[T, 768]` f32 tensor. This op does
//! the same f32 operations in the same order, with tract's own erf formula, so its results
//! are bit-identical.

use super::quantize::QuantizeI8;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Inputs: the accumulators `[.., N]` (i32), the scale and the bias (one value or `N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DequantizeGeluQuantizeI8(pub QuantizeI8);

impl Op for DequantizeGeluQuantizeI8 {
    fn name(&self) -> StaticName {
        "UsqDequantizeGeluQuantizeI8".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DequantizeGeluQuantizeI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        super::map_rows(inputs, |acc, scale, bias, columns, dst| self.run(acc, scale, bias, columns, dst))
    }
}

impl TypedOp for DequantizeGeluQuantizeI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 3 && inputs[0].datum_type == DatumType::I32,
            "UsqDequantizeGeluQuantizeI8 wants i32, scale, bias"
        );
        Ok(tvec!(DatumType::I8.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

impl DequantizeGeluQuantizeI8 {
    pub fn run(&self, acc: &[i32], scale: &[f32], bias: &[f32], columns: usize, dst: &mut [i8]) -> TractResult<()> {
        let (scale, bias) =
            super::per_column("UsqDequantizeGeluQuantizeI8", (acc.len(), dst.len()), columns, scale, bias)?;
        self.rows_of(acc, &scale, &bias, dst);
        Ok(())
    }

    /// [`Self::run`]'s loop, with scale and bias already one value per column (as long as a
    /// row): also the int8 linear op's epilogue for fc1. Each value is dequantised, put through
    /// GELU and quantised in registers.
    pub(super) fn rows_of(&self, acc: &[i32], scale: &[f32], bias: &[f32], dst: &mut [i8]) {
        with_erf(
            #[inline(always)]
            |erf| {
                for (a, d) in acc.chunks_exact(scale.len()).zip(dst.chunks_exact_mut(scale.len())) {
                    for (((d, &a), &s), &b) in d.iter_mut().zip(a).zip(scale).zip(bias) {
                        *d = self.0.value(gelu(erf, a as f32 * s + b));
                    }
                }
            },
        )
    }
}

/// tract's `GeluExact` on f32 values, in place, with the same bits (the fp32 linear op's
/// epilogue for fc1).
pub(super) fn gelu_in_place(xs: &mut [f32]) {
    with_erf(
        #[inline(always)]
        |erf| xs.iter_mut().for_each(|x| *x = gelu(erf, *x)),
    )
}

/// GELU as tract's `GeluExact` computes it: `(x · 0.5) · (erf(x / √2) + 1)`, with its
/// constant for 1/√2.
#[inline(always)]
fn gelu(erf: fn(f32) -> f32, x: f32) -> f32 {
    let c = (2.0f32).sqrt().recip();
    (x * 0.5) * (erf(x * c) + 1.0)
}

/// Runs `body` with the erf form tract's routine has on this CPU, compiled for the CPU's
/// vectors: `body` must be an `#[inline(always)]` closure, so that it is built inside the
/// function with those features and the erf inlined into it (left to LLVM, the int8 epilogue's
/// closure stayed a call, with the erf a scalar call per value: 5 ms of linear layers became
/// 32). LLVM vectorises the loops and keeps each f32 operation as written (it fuses no
/// product into a sum on its own), so the bits do not depend on the vector width.
#[inline(always)]
pub(crate) fn with_erf(body: impl FnOnce(fn(f32) -> f32)) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        unsafe fn avx512(body: impl FnOnce(fn(f32) -> f32)) {
            body(erf_fused)
        }
        // tract's FMA kernel needs AVX and FMA only (not AVX2): the same condition picks the
        // fused form here.
        #[target_feature(enable = "avx,fma")]
        unsafe fn avx(body: impl FnOnce(fn(f32) -> f32)) {
            body(erf_fused)
        }
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F and FMA.
            return unsafe { avx512(body) };
        }
        if fma && std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX and FMA.
            return unsafe { avx(body) };
        }
    }
    body(erf_apart)
}

/// tract's erf, with the same f32 operations in the same order so that it gives the same
/// bits, written here so that it runs inline and vectorised in the epilogue's one pass instead
/// of as a routine over a buffer. Abramowitz and Stegun 7.1.28 (absolute error below 3e-7).
/// tract-linalg 0.23 has two forms: on x86-64 with AVX-512 or FMA its kernels run the
/// polynomial as fused multiply-adds; elsewhere (`generic/erf.rs`) as products and sums
/// apart. The epilogue picks the one tract would (src/ops/tests.rs compares them over the
/// range GELU meets).
#[allow(clippy::excessive_precision)]
const ERF_A: [f32; 6] = [0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672, 0.0000430638];

/// `1 - 1 / (1 + p)^16` with the sign of x: the formula's end, shared by both forms. The power
/// is four squarings (tract's kernels; LLVM expands the generic `powi(16)` the same way).
#[inline(always)]
fn erf_end(x: f32, p: f32) -> f32 {
    let t = p + 1.0;
    let t2 = t * t;
    let t4 = t2 * t2;
    let t8 = t4 * t4;
    let y = 1.0 - 1.0 / (t8 * t8);
    f32::from_bits(y.to_bits() | (x.to_bits() & 0x8000_0000))
}

/// tract's x86-64 AVX-512 and FMA kernels: `y = a6; y = y·|x| + a5 … + a1` fused, then `y·|x|`.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn erf_fused(x: f32) -> f32 {
    let abs = x.abs();
    let mut y = ERF_A[5];
    for &a in ERF_A[..5].iter().rev() {
        y = y.mul_add(abs, a);
    }
    erf_end(x, y * abs)
}

/// tract's generic kernel: `y = a6·|x|; y = (a5 + y)·|x| … (a1 + y)·|x|`.
#[inline(always)]
pub(crate) fn erf_apart(x: f32) -> f32 {
    let abs = x.abs();
    let mut y = ERF_A[5] * abs;
    for &a in ERF_A[..5].iter().rev() {
        y = (a + y) * abs;
    }
    erf_end(x, y)
}
