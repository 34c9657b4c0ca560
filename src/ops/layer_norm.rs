//! LayerNorm's normalisation, `(x - mean) / sqrt(mean((x - mean)²) + eps)` over the last
//! axis, in one op. tract lowers ONNX LayerNormalization into four ops, each a pass over the
//! whole `[N, 197, 192]` stream (a row sum, its scaling to the mean, the subtraction, then its
//! RmsNorm), and its row routines cost about half a microsecond a row in call overhead for rows
//! of 192 (measured: 96 µs per LayerNorm of 197 rows through the routines, the same as the four
//! ops). This op keeps each row in L1 and sums it in 16 lanes: the same maths in another
//! summation order, so its values differ from tract's by float rounding (src/ops/tests.rs
//! bounds it). The affine step (gamma, beta) that follows stays where it was (fused with the
//! quantisation in the int8 model), except where [`NormalizeQuantizeI8`] takes both in: in
//! the int8 model each LayerNorm feeds only a linear layer's quantisation, so the row goes
//! from f32 to the next layer's i8 input in one pass, without writing the normalised f32 out.

use super::quantize::QuantizeI8;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

#[derive(Debug, Clone, Copy)]
pub struct Normalize {
    /// What the row sum is multiplied by to give the mean (the graph's constant, `1 / N`).
    pub recip: f32,
    pub eps: f32,
}

impl Normalize {
    fn bits(&self) -> [u32; 2] {
        [self.recip.to_bits(), self.eps.to_bits()]
    }
}

eq_hash_by_key!(Normalize, bits);

impl Op for Normalize {
    fn name(&self) -> StaticName {
        "UsqLayerNorm".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Normalize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let columns = *input.shape().last().context("UsqLayerNorm: a scalar has no rows")?;
        let mut failed = Ok(());
        let out = super::map_elements(input, |src: &[f32], dst: &mut [f32]| failed = self.run(src, columns, dst))?;
        failed.map(|_| out)
    }
}

impl TypedOp for Normalize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == DatumType::F32, "UsqLayerNorm wants f32");
        Ok(tvec!(DatumType::F32.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Lanes of the partial sums: one AVX-512 vector, two AVX2 ones.
const LANES: usize = 16;

impl Normalize {
    /// `dst` = each row of `src` (`columns` long) normalised: the mean as the row's sum times
    /// `recip` (as the graph computes it), the centred values, their mean square over the
    /// row's length, then the centred values divided by `sqrt(mean square + eps)`.
    pub fn run(&self, src: &[f32], columns: usize, dst: &mut [f32]) -> TractResult<()> {
        ensure!(
            columns > 0 && src.len() == dst.len() && src.len().is_multiple_of(columns),
            "UsqLayerNorm: rows of {columns}"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            unsafe { self.rows_avx512(src, columns, dst) };
            return Ok(());
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { self.rows_avx2(src, columns, dst) };
            return Ok(());
        }
        self.rows(src, columns, dst);
        Ok(())
    }

    /// The rows, written so that the compiler keeps the 16 lanes in vector registers.
    #[inline(always)]
    fn rows(&self, src: &[f32], columns: usize, dst: &mut [f32]) {
        let inv_len = 1.0 / columns as f32;
        for (x, y) in src.chunks_exact(columns).zip(dst.chunks_exact_mut(columns)) {
            let mean = lane_sum(x, |v| v) * self.recip;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - mean;
            }
            let scale = 1.0 / (lane_sum(y, |d| d * d) * inv_len + self.eps).sqrt();
            for y in y.iter_mut() {
                *y *= scale;
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_avx512(&self, src: &[f32], columns: usize, dst: &mut [f32]) {
        self.rows(src, columns, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn rows_avx2(&self, src: &[f32], columns: usize, dst: &mut [f32]) {
        self.rows(src, columns, dst)
    }
}

/// [`Normalize`], then LayerNorm's affine step and the quantisation for the int8 linear layer
/// that reads it ([`super::quantize::AffineQuantizeI8`]), row by row: i8 out, the same f32
/// operations in the same order as the two ops apart (the centred value computed again where
/// the separate op read it back), so its results are theirs bit for bit.
#[derive(Debug, Clone)]
pub struct NormalizeQuantizeI8 {
    pub norm: Normalize,
    pub quantize: QuantizeI8,
    /// One value per column each.
    pub gamma: Arc<Vec<f32>>,
    pub beta: Arc<Vec<f32>>,
}

impl NormalizeQuantizeI8 {
    fn key(&self) -> Vec<u32> {
        let q = self.quantize;
        let consts = [self.norm.recip, self.norm.eps, q.mul, q.add, q.sub, q.lo, q.hi];
        consts.iter().chain(self.gamma.iter()).chain(self.beta.iter()).map(|v| v.to_bits()).collect()
    }

    /// `dst` = quantise(normalise(row) · gamma + beta) for each row of `src` (gamma's length).
    pub fn run(&self, src: &[f32], dst: &mut [i8]) -> TractResult<()> {
        let columns = self.gamma.len();
        ensure!(
            columns > 0 && self.beta.len() == columns && src.len() == dst.len() && src.len().is_multiple_of(columns),
            "UsqLayerNormQuantizeI8: rows of {columns}"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            unsafe { self.rows_avx512(src, dst) };
            return Ok(());
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { self.rows_avx2(src, dst) };
            return Ok(());
        }
        self.rows(src, dst);
        Ok(())
    }

    #[inline(always)]
    fn rows(&self, src: &[f32], dst: &mut [i8]) {
        let columns = self.gamma.len();
        let inv_len = 1.0 / columns as f32;
        for (x, q) in src.chunks_exact(columns).zip(dst.chunks_exact_mut(columns)) {
            let mean = lane_sum(x, |v| v) * self.norm.recip;
            let scale = 1.0 / (lane_sum(x, |v| (v - mean) * (v - mean)) * inv_len + self.norm.eps).sqrt();
            for (((q, &x), &g), &b) in q.iter_mut().zip(x).zip(self.gamma.iter()).zip(self.beta.iter()) {
                *q = self.quantize.value((x - mean) * scale * g + b);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows_avx512(&self, src: &[f32], dst: &mut [i8]) {
        self.rows(src, dst)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn rows_avx2(&self, src: &[f32], dst: &mut [i8]) {
        self.rows(src, dst)
    }
}

eq_hash_by_key!(NormalizeQuantizeI8, key);

impl Op for NormalizeQuantizeI8 {
    fn name(&self) -> StaticName {
        "UsqLayerNormQuantizeI8".into()
    }

    op_as_typed_op!();
}

impl EvalOp for NormalizeQuantizeI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let columns = input.shape().last().copied();
        ensure!(columns == Some(self.gamma.len()), "UsqLayerNormQuantizeI8: rows of {:?}", input.shape());
        let mut failed = Ok(());
        let out = super::map_elements(input, |src: &[f32], dst: &mut [i8]| failed = self.run(src, dst))?;
        failed.map(|_| out)
    }
}

impl TypedOp for NormalizeQuantizeI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == DatumType::F32, "UsqLayerNormQuantizeI8 wants f32");
        Ok(tvec!(DatumType::I8.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `Σ f(v)` over `row` in [`LANES`] partial sums, then added pairwise; the tail after the last
/// whole group of lanes goes into the first lanes.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut groups = row.chunks_exact(LANES);
    for g in &mut groups {
        for (a, &v) in acc.iter_mut().zip(g) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(groups.remainder()) {
        *a += f(v);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}
