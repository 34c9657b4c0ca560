//! The int8 model's dequantisation in one pass: the integer product's i32 accumulators cast to
//! f32, times the per-column scale, plus the bias. tract casts in one pass and runs the Mul and
//! Add as a fused chain in a second; this op does both at once with the same f32 operations in
//! the same order (a product, rounded, then a sum; no fused multiply-add), so its results are
//! bit-identical.
//!
//! Inputs: the accumulators `[.., N]` (i32), the scale and the bias (f32 constants of one value
//! or of `N`, one per column), as the chain's operands were.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DequantizeI32;

impl Op for DequantizeI32 {
    fn name(&self) -> StaticName {
        "UsqDequantizeI32".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DequantizeI32 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        super::map_rows(inputs, run)
    }
}

impl TypedOp for DequantizeI32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3 && inputs[0].datum_type == DatumType::I32, "UsqDequantizeI32 wants i32, scale, bias");
        Ok(tvec!(DatumType::F32.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `dst = (acc as f32) * scale + bias`, scale and bias per column (`columns` long) or one value.
pub fn run(acc: &[i32], scale: &[f32], bias: &[f32], columns: usize, dst: &mut [f32]) -> TractResult<()> {
    let (scale, bias) = super::per_column("UsqDequantizeI32", (acc.len(), dst.len()), columns, scale, bias)?;
    rows_of(acc, &scale, &bias, dst);
    Ok(())
}

/// [`run`]'s loop, with scale and bias already one value per column (as long as a row).
pub(super) fn rows_of(acc: &[i32], scale: &[f32], bias: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { rows_avx2(acc, scale, bias, dst) };
    }
    rows(acc, scale, bias, dst)
}

#[inline(always)]
fn rows(acc: &[i32], scale: &[f32], bias: &[f32], dst: &mut [f32]) {
    for (a, d) in acc.chunks_exact(scale.len()).zip(dst.chunks_exact_mut(scale.len())) {
        for (((d, &a), &s), &b) in d.iter_mut().zip(a).zip(scale).zip(bias) {
            *d = a as f32 * s + b;
        }
    }
}

/// The same loop, compiled for AVX2 (LLVM keeps the product and the sum apart).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2(acc: &[i32], scale: &[f32], bias: &[f32], dst: &mut [f32]) {
    rows(acc, scale, bias, dst)
}

/// [`rows_of`], then the residual stream added: `dst = ((acc as f32) * scale + bias) + residual`,
/// each step rounded as tract's dequantisation and its own Add round them (an f32 sum is the
/// same either way round), so the result is tract's bit for bit.
pub(super) fn rows_plus_residual(acc: &[i32], scale: &[f32], bias: &[f32], residual: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { rows_plus_residual_avx2(acc, scale, bias, residual, dst) };
    }
    rows_plus(acc, scale, bias, residual, dst)
}

#[inline(always)]
fn rows_plus(acc: &[i32], scale: &[f32], bias: &[f32], residual: &[f32], dst: &mut [f32]) {
    let n = scale.len();
    for ((a, r), d) in acc.chunks_exact(n).zip(residual.chunks_exact(n)).zip(dst.chunks_exact_mut(n)) {
        for ((((d, &a), &r), &s), &b) in d.iter_mut().zip(a).zip(r).zip(scale).zip(bias) {
            *d = (a as f32 * s + b) + r;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_plus_residual_avx2(acc: &[i32], scale: &[f32], bias: &[f32], residual: &[f32], dst: &mut [f32]) {
    rows_plus(acc, scale, bias, residual, dst)
}
