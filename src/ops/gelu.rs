//! The int8 model's MLP epilogue in one pass: fc1's i32 accumulators dequantised (scale, bias),
//! the exact GELU, and the quantisation for fc2, from i32 to i8 without writing the f32
//! activations out. tract runs [`super::dequantize::DequantizeI32`], its `GeluExact` and
//! [`super::quantize::QuantizeI8`] as three passes over a `[T, 768]` f32 tensor. This op does
//! the same f32 operations in the same order, with tract's own erf routine, so its results are
//! bit-identical.

use super::quantize::QuantizeI8;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::tract_linalg::routines::Func;

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

/// Values per block of rows.
const BLOCK_VALUES: usize = 8192;

impl DequantizeGeluQuantizeI8 {
    /// `d = quantise((x · 0.5) · (e + 1))`, compiled for AVX2 where the CPU has it.
    fn finish(&self, x: &[f32], e: &[f32], d: &mut [i8]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.finish_avx2(x, e, d) };
        }
        self.finish_body(x, e, d)
    }

    #[inline(always)]
    fn finish_body(&self, x: &[f32], e: &[f32], d: &mut [i8]) {
        for ((d, &x), &e) in d.iter_mut().zip(x).zip(e) {
            *d = self.0.value((x * 0.5) * (e + 1.0));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn finish_avx2(&self, x: &[f32], e: &[f32], d: &mut [i8]) {
        self.finish_body(x, e, d)
    }

    /// `dst = quantise(gelu(acc * scale + bias))`, row by row (`columns` per row).
    pub fn run(&self, acc: &[i32], scale: &[f32], bias: &[f32], columns: usize, dst: &mut [i8]) -> TractResult<()> {
        // Spread once for all the blocks below.
        let (scale, bias) =
            super::per_column("UsqDequantizeGeluQuantizeI8", (acc.len(), dst.len()), columns, scale, bias)?;
        let erf = Func::Erf.ew_f32()?;
        // As tract's GeluExact: 0.5·x·(1 + erf(x / √2)), with its constant.
        let c = (2.0f32).sqrt().recip();
        // Blocks of whole rows, about 8 K values: few calls into the erf kernel, and the two
        // buffers stay in cache.
        let block = (BLOCK_VALUES / columns).max(1) * columns;
        let (mut x, mut e) = (vec![0f32; block.min(acc.len())], vec![0f32; block.min(acc.len())]);
        for (a, d) in acc.chunks(block).zip(dst.chunks_mut(block)) {
            let (x, e) = (&mut x[..a.len()], &mut e[..a.len()]);
            super::dequantize::rows_of(a, &scale, &bias, x);
            for (e, &x) in e.iter_mut().zip(x.iter()) {
                *e = x * c;
            }
            erf.run(e)?;
            self.finish(x, e, d);
        }
        Ok(())
    }
}
