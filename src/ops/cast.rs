//! Casts between f32 and the integer types of the int8 encoder, vectorised.
//!
//! Semantics are Rust's `as` (which tract's cast uses): f32 -> i8 truncates toward zero and
//! saturates, NaN gives 0; i32 -> f32 rounds to nearest. The loops are written so the compiler
//! vectorises them; on x86-64 an AVX2 build of each loop is picked at run time.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum SimdCast {
    F32ToI8,
    I32ToF32,
}

impl SimdCast {
    pub fn for_types(from: DatumType, to: DatumType) -> Option<SimdCast> {
        match (from, to) {
            (DatumType::F32, DatumType::I8) => Some(SimdCast::F32ToI8),
            (DatumType::I32, DatumType::F32) => Some(SimdCast::I32ToF32),
            _ => None,
        }
    }

    fn output_type(self) -> DatumType {
        match self {
            SimdCast::F32ToI8 => DatumType::I8,
            SimdCast::I32ToF32 => DatumType::F32,
        }
    }
}

impl Op for SimdCast {
    fn name(&self) -> StaticName {
        "UsqSimdCast".into()
    }

    op_as_typed_op!();
}

impl EvalOp for SimdCast {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        match self {
            SimdCast::F32ToI8 => super::map_elements(input, f32_to_i8),
            SimdCast::I32ToF32 => super::map_elements(input, i32_to_f32),
        }
    }
}

impl TypedOp for SimdCast {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output_type().fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `x as i8`, branch-free so that loops over it vectorise: NaN -> 0, clamp, then truncation
/// of an in-range value.
#[inline(always)]
pub fn f32_to_i8_value(x: f32) -> i8 {
    let x = if x.is_nan() { 0.0 } else { x.clamp(-128.0, 127.0) };
    // SAFETY: x is finite and within i32's range.
    unsafe { x.to_int_unchecked::<i32>() as i8 }
}

#[inline(always)]
fn f32_to_i8_body(src: &[f32], dst: &mut [i8]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = f32_to_i8_value(x);
    }
}

#[inline(always)]
fn i32_to_f32_body(src: &[i32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = x as f32;
    }
}

pub fn f32_to_i8(src: &[f32], dst: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { f32_to_i8_avx2(src, dst) };
    }
    f32_to_i8_body(src, dst)
}

pub fn i32_to_f32(src: &[i32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { i32_to_f32_avx2(src, dst) };
    }
    i32_to_f32_body(src, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn f32_to_i8_avx2(src: &[f32], dst: &mut [i8]) {
    f32_to_i8_body(src, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn i32_to_f32_avx2(src: &[i32], dst: &mut [f32]) {
    i32_to_f32_body(src, dst)
}
