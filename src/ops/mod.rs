//! tract ops the project owns, swapped into the optimised encoder graph where tract's own are
//! slow for this model, each tested against the tract op it replaces (tests/project_ops.rs).
//!
//! - [`cast::SimdCast`]: the f32 -> i8 and i32 -> f32 casts around the int8 model's integer
//!   matrix products; tract's generic cast runs them element by element (about a tenth of an
//!   int8 forward on x86-64).
//!
//! Tried and left out (measured, BENCHMARKS.md): a vectorised softmax for the 197-long
//! attention rows (tract's fast kernel wants multiples of 4) was no faster than tract's
//! per-row fallback here: the rows are memory-bound.

pub mod cast;

use tract_onnx::prelude::*;

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
    Ok(replaced)
}
