//! The int8 model's activation quantisation in one pass: `x * s + m - m`, clamped to
//! `[lo, hi]`, cast to i8. The exported graph writes it as float ops (Mul, Add, Sub of
//! 1.5 * 2^23 to round to nearest even, Clip, Cast); tract fuses the arithmetic into one
//! element-wise chain and casts in a second pass. This op does both in one, with the same
//! f32 operations in the same order, so its results are bit-identical.

use super::cast::f32_to_i8_value;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

#[derive(Debug, Clone, Copy)]
pub struct QuantizeI8 {
    pub mul: f32,
    pub add: f32,
    pub sub: f32,
    pub lo: f32,
    pub hi: f32,
}

impl QuantizeI8 {
    fn bits(&self) -> [u32; 5] {
        [self.mul, self.add, self.sub, self.lo, self.hi].map(f32::to_bits)
    }
}

eq_hash_by_key!(QuantizeI8, bits);

impl Op for QuantizeI8 {
    fn name(&self) -> StaticName {
        "UsqQuantizeI8".into()
    }

    op_as_typed_op!();
}

impl EvalOp for QuantizeI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        super::map_elements(input, |src: &[f32], dst: &mut [i8]| self.run(src, dst))
    }
}

impl TypedOp for QuantizeI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(DatumType::I8.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

impl QuantizeI8 {
    /// One value, as the float-op chain and cast compute it.
    #[inline(always)]
    pub fn value(&self, x: f32) -> i8 {
        let y = ((x * self.mul + self.add) - self.sub).max(self.lo).min(self.hi);
        f32_to_i8_value(y)
    }

    pub fn run(&self, src: &[f32], dst: &mut [i8]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.run_avx2(src, dst) };
        }
        self.run_body(src, dst)
    }

    #[inline(always)]
    fn run_body(&self, src: &[f32], dst: &mut [i8]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = self.value(x);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&self, src: &[f32], dst: &mut [i8]) {
        self.run_body(src, dst)
    }
}

/// A per-column affine step (LayerNorm's `x * gamma + beta`) before the quantisation: tract
/// fuses it into the same element-wise chain (`Mul, Add` by columns, then the quantisation's
/// `Mul, Add, Sub, Max, Min` by scalars) and casts in a second pass. Inputs: the activations
/// `[.., N]`, gamma and beta (one value or `N`). Bit-identical, as [`QuantizeI8`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AffineQuantizeI8(pub QuantizeI8);

impl Op for AffineQuantizeI8 {
    fn name(&self) -> StaticName {
        "UsqAffineQuantizeI8".into()
    }

    op_as_typed_op!();
}

impl EvalOp for AffineQuantizeI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        super::map_rows(inputs, |x, gamma, beta, columns, dst| self.run(x, gamma, beta, columns, dst))
    }
}

impl TypedOp for AffineQuantizeI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3, "UsqAffineQuantizeI8 wants x, gamma, beta");
        Ok(tvec!(DatumType::I8.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

impl AffineQuantizeI8 {
    /// `dst = quantise(x * gamma + beta)`, gamma and beta per column (`columns`) or one value.
    pub fn run(&self, x: &[f32], gamma: &[f32], beta: &[f32], columns: usize, dst: &mut [i8]) -> TractResult<()> {
        let (gamma, beta) = super::per_column("UsqAffineQuantizeI8", (x.len(), dst.len()), columns, gamma, beta)?;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { self.rows_avx2(x, &gamma, &beta, dst) };
            return Ok(());
        }
        self.rows(x, &gamma, &beta, dst);
        Ok(())
    }

    #[inline(always)]
    fn rows(&self, x: &[f32], gamma: &[f32], beta: &[f32], dst: &mut [i8]) {
        for (x, d) in x.chunks_exact(gamma.len()).zip(dst.chunks_exact_mut(gamma.len())) {
            for (((d, &x), &g), &b) in d.iter_mut().zip(x).zip(gamma).zip(beta) {
                *d = self.0.value(x * g + b);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn rows_avx2(&self, x: &[f32], gamma: &[f32], beta: &[f32], dst: &mut [i8]) {
        self.rows(x, gamma, beta, dst)
    }
}
