//! tract ops the project owns, swapped into the optimised encoder graph where tract's own are
//! slow for this model, each tested against the tract op it replaces (tests/project_ops.rs).
//!
//! - [`cast::SimdCast`]: the f32 -> i8 and i32 -> f32 casts around the int8 model's integer
//!   matrix products; tract's generic cast runs them element by element (about a tenth of an
//!   int8 forward on x86-64);
//! - [`quantize::QuantizeI8`]: the int8 model's float-op activation quantisation (tract's
//!   fused Mul/Add/Sub/Max/Min chain followed by the cast) in one pass.
//!
//! Tried and left out (measured, BENCHMARKS.md): a vectorised softmax for the 197-long
//! attention rows (tract's fast kernel wants multiples of 4) was no faster than tract's
//! per-row fallback here: the rows are memory-bound.

pub mod cast;
pub mod quantize;

use tract_onnx::prelude::*;

/// Evaluates an element-wise op from `S` to `D`: a fresh output of the input's shape, filled
/// by `f` from the input's plain slice.
fn map_elements<S: Datum, D: Datum>(input: TValue, f: impl FnOnce(&[S], &mut [D])) -> TractResult<TVec<TValue>> {
    // SAFETY: `f` writes every element (the slices have the same length).
    let mut out = unsafe { Tensor::uninitialized_dt(D::datum_type(), input.shape())? };
    {
        let src = input.try_as_plain_ram()?;
        let mut dst = out.try_as_plain_ram_mut()?;
        f(src.as_slice::<S>()?, dst.as_slice_mut::<D>()?);
    }
    Ok(tvec!(out.into_tvalue()))
}

/// Replaces the ops this module has faster versions of, in place, in an optimised model.
/// Returns how many nodes were replaced.
pub fn rewrite(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let Some(op) = model.node(id).op_as::<tract_onnx::tract_core::ops::cast::Cast>() else { continue };
        let to = op.to;
        let from = model.outlet_fact(model.node(id).inputs[0])?.datum_type;
        if let Some(fast) = cast::SimdCast::for_types(from, to) {
            model.node_mut(id).op = Box::new(fast);
            replaced += 1;
        }
    }
    replaced += fuse_quantize(model)?;
    Ok(replaced)
}

/// `OptBinChain(Mul, Add, Sub, Max, Min)` by scalar constants, feeding only an f32 -> i8 cast:
/// the cast becomes one [`quantize::QuantizeI8`] reading the chain's input. The chain is left
/// without consumers, so the plan (built back from the outputs) never runs it.
fn fuse_quantize(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::binary::OptBinChain;
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        if model.node(id).op_as::<cast::SimdCast>() != Some(&cast::SimdCast::F32ToI8) {
            continue;
        }
        let chain_out = model.node(id).inputs[0];
        let chain = model.node(chain_out.node);
        let Some(op) = chain.op_as::<OptBinChain>() else { continue };
        let names: Vec<&str> = op.steps.iter().map(|s| s.binop.name()).collect();
        if names != ["Mul", "Add", "Sub", "Max", "Min"] || model.outlet_successors(chain_out).len() != 1 {
            continue;
        }
        let mut k = [0f32; 5];
        let mut scalars = true;
        for (i, slot) in k.iter_mut().enumerate() {
            let fact = model.outlet_fact(chain.inputs[i + 1])?;
            match fact.konst.as_ref().filter(|t| t.datum_type() == DatumType::F32 && t.volume() == 1) {
                Some(t) => *slot = t.try_as_plain_ram()?.as_slice::<f32>()?[0],
                None => scalars = false,
            }
        }
        if !scalars || model.outlet_fact(chain.inputs[0])?.datum_type != DatumType::F32 {
            continue;
        }
        let input = chain.inputs[0];
        let op = quantize::QuantizeI8 { mul: k[0], add: k[1], sub: k[2], lo: k[3], hi: k[4] };
        model.node_mut(id).op = Box::new(op);
        model.add_edge(input, InletId::new(id, 0))?;
        fused += 1;
    }
    Ok(fused)
}
