//! tract ops the project owns, swapped into the optimised encoder graph where tract's own are
//! slow for this model, each tested against the tract op it replaces (src/ops/tests.rs).
//!
//! - [`cast::SimdCast`]: the f32 -> i8 and i32 -> f32 casts around the int8 model's integer
//!   matrix products; tract's generic cast runs them element by element (about a tenth of an
//!   int8 forward on x86-64);
//! - [`quantize::QuantizeI8`]: the int8 model's float-op activation quantisation (tract's
//!   fused Mul/Add/Sub/Max/Min chain followed by the cast) in one pass, and
//!   [`quantize::AffineQuantizeI8`] the same after a LayerNorm's gamma and beta;
//! - [`dequantize::DequantizeI32`]: the cast of the integer products' accumulators to f32 and
//!   tract's fused Mul/Add chain (scale, bias) after it, in one pass, and
//!   [`gelu::DequantizeGeluQuantizeI8`] that and the MLP's GELU and the next quantisation,
//!   from fc1's accumulators to fc2's int8 input;
//! - [`attention::Attention`]: multi-head self-attention from the qkv projection to the merged
//!   heads, replacing tract's per-head products, scale, softmax and axis moves;
//! - [`layer_norm::Normalize`]: LayerNorm's normalisation (row sum, mean, centring, tract's
//!   RmsNorm: four passes over the stream) in one, row by row, and
//!   [`layer_norm::NormalizeQuantizeI8`] that with the affine step and the int8 quantisation
//!   after it (the int8 linear layers' input, i8 straight from the stream);
//! - [`linear::LinearI8`] and [`linear_f32::LinearF32`]: the linear layers (int8 and fp32),
//!   replacing tract's activation packing and matrix products where the CPU has the op's
//!   kernel (VNNI or the ARM dot product / NEON for int8, AVX-512 for fp32); the int8 one
//!   also takes in the dequantisation, fc1's GELU and fc2's quantisation, and the block's
//!   residual Add after its two output projections, as epilogues run on each block of rows.
//!
//! The attention and linear ops are swapped in before tract optimises ([`fuse_attention`],
//! [`fuse_linear`]), the others after ([`rewrite`]: bit-identical to tract's; then
//! [`normalize_layers`]: to float rounding). [`workers::Workers`] splits the attention's
//! heads and the linear ops' row blocks over tract's executor when the encoder has threads.
//!
//! Tried and left out (measured, BENCHMARKS.md): a vectorised softmax for the 197-long
//! attention rows (tract's fast kernel wants multiples of 4) was no faster than tract's
//! per-row fallback here: the rows are memory-bound.

/// `PartialEq`, `Eq` and `Hash` for an op by one method's key (its constants, floats as bit
/// patterns): tract compares and hashes ops, and f32 has neither.
macro_rules! eq_hash_by_key {
    ($op:ty, $key:ident) => {
        impl PartialEq for $op {
            fn eq(&self, other: &Self) -> bool {
                self.$key() == other.$key()
            }
        }

        impl Eq for $op {}

        impl std::hash::Hash for $op {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.$key().hash(state)
            }
        }
    };
}

pub(crate) mod attention;
pub(crate) mod cast;
pub(crate) mod dequantize;
pub(crate) mod gelu;
pub(crate) mod layer_norm;
pub(crate) mod linear;
pub(crate) mod linear_f32;
pub(crate) mod quantize;
pub(crate) mod workers;

use linear::Epilogue;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{args_3, bail, ensure};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};

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

/// Evaluates an op over rows `[.., N]` of an `S` input with two per-column f32 operands
/// (inputs 1 and 2): a fresh `D` output of the input's shape, filled by
/// `f(input, a, b, N, output)`.
fn map_rows<S: Datum, D: Datum>(
    inputs: TVec<TValue>,
    f: impl FnOnce(&[S], &[f32], &[f32], usize, &mut [D]) -> TractResult<()>,
) -> TractResult<TVec<TValue>> {
    let (x, a, b) = args_3!(inputs);
    let columns = *x.shape().last().unwrap_or(&1);
    // SAFETY: `f` writes every element (or fails, and the output is dropped).
    let mut out = unsafe { Tensor::uninitialized_dt(D::datum_type(), x.shape())? };
    {
        let (x, a, b) = (x.try_as_plain_ram()?, a.try_as_plain_ram()?, b.try_as_plain_ram()?);
        let mut dst = out.try_as_plain_ram_mut()?;
        f(x.as_slice::<S>()?, a.as_slice::<f32>()?, b.as_slice::<f32>()?, columns, dst.as_slice_mut::<D>()?)?;
    }
    Ok(tvec!(out.into_tvalue()))
}

/// Checks `values` input and output values in rows of `columns` and two per-column operands of
/// one value or `columns` each, and returns both spread to `columns` values; errors name `op`.
fn per_column(
    op: &str,
    (values, out): (usize, usize),
    columns: usize,
    a: &[f32],
    b: &[f32],
) -> TractResult<(TVec<f32>, TVec<f32>)> {
    ensure!(values == out && columns > 0 && values.is_multiple_of(columns), "{op}: shapes");
    let spread = |v: &[f32]| -> TractResult<TVec<f32>> {
        ensure!(v.len() == 1 || v.len() == columns, "{op}: {} values for {columns} columns", v.len());
        Ok(if v.len() == 1 { tvec![v[0]; columns] } else { v.into() })
    };
    Ok((spread(a)?, spread(b)?))
}

/// A linear op's output shape (concrete or symbolic): its input's `[.., K]` with the last axis
/// `N` instead; an input whose last axis is not K is an error naming `op`.
fn linear_shape<D: Clone + PartialEq + std::fmt::Display>(op: &str, shape: &[D], k: D, n: D) -> TractResult<TVec<D>> {
    if shape.last() != Some(&k) {
        let shown: Vec<String> = shape.iter().map(D::to_string).collect();
        bail!("{op}: input [{}], want K = {k} last", shown.join(", "));
    }
    let mut out: TVec<D> = shape.into();
    *out.last_mut().unwrap() = n;
    Ok(out)
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
    // Each fusion leaves the ops it bypasses without consumers; compacting drops them, so the
    // next pass sees only live successors.
    for fuse in
        [fuse_quantize, fuse_dequantize, fuse_gelu, fuse_linear_epilogue, fuse_linear_residual, fuse_linear_gelu]
    {
        replaced += fuse(model)?;
        model.compact()?;
    }
    Ok(replaced)
}

/// Wires `op` (one input, one output) on `input` and hands its output to every consumer of
/// `replaced`; the nodes that fed only `replaced` are left without consumers (the optimiser or
/// `compact` drops them).
fn swap_in(
    model: &mut TypedModel,
    input: OutletId,
    name: String,
    op: impl Into<Box<dyn TypedOp>>,
    replaced: OutletId,
) -> TractResult<()> {
    let mut patch = TypedModelPatch::default();
    let tapped = patch.tap_model(model, input)?;
    let out = patch.wire_node(name, op, &[tapped])?;
    patch.shunt_outside(model, replaced, out[0])?;
    patch.apply(model)
}

/// Folds nodes into the node before them: for each node whose first input is the only use of
/// its producer's output, `fold(node, producer)` may give the producer's op with the node's
/// work inside; that op then reads the producer's input and takes the node's place (both old
/// nodes are left without consumers). Returns how many were folded.
fn fold_into_producer(
    model: &mut TypedModel,
    suffix: &str,
    fold: impl Fn(&TypedModel, &TypedNode, &TypedNode) -> TractResult<Option<Box<dyn TypedOp>>>,
) -> TractResult<usize> {
    let mut folded = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(&y) = node.inputs.first() else { continue };
        if model.outlet_successors(y).len() != 1 {
            continue;
        }
        let producer = model.node(y.node);
        let Some(op) = fold(model, node, producer)? else { continue };
        let (x, name) = (producer.inputs[0], format!("{}.{suffix}", producer.name));
        swap_in(model, x, name, op, id.into())?;
        folded += 1;
    }
    Ok(folded)
}

/// tract's lowering of LayerNormalization's normalisation over the last axis, each op the only
/// consumer of the one before: `Reduce<Sum>(x)` -> `OptBinByScalar(Mul)` by a scalar constant
/// -> `OptBinByScalar(Sub)` from x -> `RmsNorm`: the RmsNorm becomes one
/// [`layer_norm::Normalize`] reading x, and the three ops before it are dropped; where that
/// feeds only an int8 quantisation with gamma and beta ([`quantize::AffineQuantizeI8`], made by
/// [`rewrite`], which runs first), both become one [`layer_norm::NormalizeQuantizeI8`]. Apart
/// from [`rewrite`], whose ops are bit-identical to tract's: this one agrees to float rounding.
pub fn normalize_layers(model: &mut TypedModel) -> TractResult<usize> {
    let fused = fuse_layer_norm(model)?;
    model.compact()?;
    let quantized = fuse_layer_norm_quantize(model)?;
    model.compact()?;
    Ok(fused + quantized)
}

/// A [`layer_norm::Normalize`] feeding only a [`quantize::AffineQuantizeI8`] with constant
/// gamma and beta (the int8 model's LayerNorm before a linear layer): both become one
/// [`layer_norm::NormalizeQuantizeI8`], f32 rows in, i8 out.
fn fuse_layer_norm_quantize(model: &mut TypedModel) -> TractResult<usize> {
    fold_into_producer(model, "quantize", |model, node, producer| {
        let Some(&quantize::AffineQuantizeI8(q)) = node.op_as::<quantize::AffineQuantizeI8>() else { return Ok(None) };
        let Some(&norm) = producer.op_as::<layer_norm::Normalize>() else { return Ok(None) };
        let Some(columns) = model.outlet_fact(node.inputs[0])?.shape.as_concrete().and_then(|s| s.last().copied())
        else {
            return Ok(None);
        };
        let Some((gamma, beta)) = constant_columns(model, node, columns)? else { return Ok(None) };
        Ok(Some(Box::new(layer_norm::NormalizeQuantizeI8 { norm, quantize: q, gamma, beta })))
    })
}

fn fuse_layer_norm(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::binary::OptBinByScalar;
    use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(rms) = node.op_as::<RmsNorm>() else { continue };
        let fact = model.outlet_fact(node.inputs[0])?;
        if fact.datum_type != DatumType::F32 || fact.rank() == 0 || rms.axis != fact.rank() - 1 {
            continue;
        }
        let Ok(eps) = rms.eps.cast_to_scalar::<f32>() else { continue };
        // The producer of `outlet`, when `outlet` feeds nothing else and its op is `binop` by a scalar.
        let by_scalar = |outlet: OutletId, binop: &str| {
            let n = model.node(outlet.node);
            let op = n.op_as::<OptBinByScalar>()?;
            (op.binop.name() == binop && n.inputs.len() == 2 && model.outlet_successors(outlet).len() == 1).then_some(n)
        };
        let Some(sub) = by_scalar(node.inputs[0], "Sub") else { continue };
        let (x, mean) = (sub.inputs[0], sub.inputs[1]);
        let Some(mul) = by_scalar(mean, "Mul") else { continue };
        let Some(recip) = scalar_f32(model, mul.inputs[1])? else { continue };
        let sum = model.node(mul.inputs[0].node);
        let is_row_sum =
            sum.op_as::<Reduce>().is_some_and(|r| matches!(r.reducer, Reducer::Sum) && r.axes.as_slice() == [rms.axis]);
        if !is_row_sum || sum.inputs[0] != x || model.outlet_successors(mul.inputs[0]).len() != 1 {
            continue;
        }
        let name = format!("{}.usq_layer_norm", node.name);
        swap_in(model, x, name, layer_norm::Normalize { recip, eps }, id.into())?;
        fused += 1;
    }
    Ok(fused)
}

/// One f32 value per column, shared by the ops that hold it.
type Columns = Arc<Vec<f32>>;

/// A node's inputs 1 and 2 (scale and bias, gamma and beta) when both are f32 constants of one
/// value or of one per column, spread to `columns` values each; None otherwise (the node then
/// stays apart, and fails in its own op, with its message).
fn constant_columns(model: &TypedModel, node: &TypedNode, columns: usize) -> TractResult<Option<(Columns, Columns)>> {
    let konst = |slot: usize| -> TractResult<Option<Arc<Tensor>>> {
        let k = model.outlet_fact(node.inputs[slot])?.konst.clone();
        Ok(k.filter(|k| k.datum_type() == DatumType::F32))
    };
    let (Some(a), Some(b)) = (konst(1)?, konst(2)?) else { return Ok(None) };
    let (a, b) = (a.try_as_plain_ram()?, b.try_as_plain_ram()?);
    let Ok((a, b)) = per_column(node.op.name().as_ref(), (columns, columns), columns, a.as_slice()?, b.as_slice()?)
    else {
        return Ok(None);
    };
    Ok(Some((Arc::new(a.to_vec()), Arc::new(b.to_vec()))))
}

/// A [`linear_f32::LinearF32`] feeding only tract's `GeluExact`: the GELU becomes the linear
/// op's own, run on each block of rows while it is in cache.
fn fuse_linear_gelu(model: &mut TypedModel) -> TractResult<usize> {
    fold_into_producer(model, "gelu", |model, node, producer| {
        if node.op.name() != "GeluExact" || model.outlet_fact(node.inputs[0])?.datum_type != DatumType::F32 {
            return Ok(None);
        }
        let Some(linear) = producer.op_as::<linear_f32::LinearF32>().filter(|l| !l.has_gelu()) else { return Ok(None) };
        Ok(Some(Box::new(linear.with_gelu())))
    })
}

/// A [`linear::LinearI8`] whose sums feed only a [`dequantize::DequantizeI32`] or a
/// [`gelu::DequantizeGeluQuantizeI8`] (constant scale and bias): that op becomes the linear
/// op's epilogue, run on each block of rows while its sums are in cache, instead of a pass of
/// its own over an i32 tensor.
fn fuse_linear_epilogue(model: &mut TypedModel) -> TractResult<usize> {
    fold_into_producer(model, "epilogue", |model, node, producer| {
        let gelu = node.op_as::<gelu::DequantizeGeluQuantizeI8>().copied();
        if gelu.is_none() && node.op_as::<dequantize::DequantizeI32>().is_none() {
            return Ok(None);
        }
        let Some(linear) = producer.op_as::<linear::LinearI8>() else { return Ok(None) };
        if !matches!(linear.epilogue(), linear::Epilogue::None) {
            return Ok(None);
        }
        let Some((scale, bias)) = constant_columns(model, node, linear.columns())? else { return Ok(None) };
        let epilogue = match gelu {
            Some(gelu) => linear::Epilogue::DequantizeGeluQuantize { scale, bias, gelu },
            None => linear::Epilogue::Dequantize { scale, bias },
        };
        Ok(Some(Box::new(linear.with_epilogue(epilogue)?)))
    })
}

/// tract's Add of a [`linear::LinearI8`]'s dequantised output (its only use) and a tensor of
/// the same shape (a block's residual stream): the Add becomes the linear op with
/// [`linear::Epilogue::DequantizeResidual`], reading the linear op's input and the stream, so
/// the sum is made while each block of rows is in cache instead of in a pass of its own.
fn fuse_linear_residual(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::binary::OptBinUnicast;
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let is_add = node.op_as::<OptBinUnicast>().is_some_and(|b| b.binop.name() == "Add")
            || node.op_as::<TypedBinOp>().is_some_and(|b| b.0.name() == "Add");
        if !is_add || node.inputs.len() != 2 {
            continue;
        }
        let out_fact = model.outlet_fact(id.into())?.clone();
        // Which input is the linear op's: the other is the stream, of the output's own shape.
        let found = (0..2).find_map(|slot| {
            let (y, stream) = (node.inputs[slot], node.inputs[1 - slot]);
            let linear = model.node(y.node).op_as::<linear::LinearI8>()?;
            let linear_in = *model.node(y.node).inputs.first()?;
            let fact = model.outlet_fact(stream).ok()?;
            let fits = fact.datum_type == DatumType::F32
                && fact.shape == out_fact.shape
                && out_fact.datum_type == DatumType::F32;
            let Epilogue::Dequantize { scale, bias } = linear.epilogue() else { return None };
            let alone = model.outlet_successors(y).len() == 1 && y != stream;
            (fits && alone && model.outlet_fact(y).ok()?.shape == out_fact.shape).then(|| {
                let epilogue = Epilogue::DequantizeResidual { scale: scale.clone(), bias: bias.clone() };
                (linear.with_epilogue(epilogue), linear_in, stream)
            })
        });
        let Some((op, linear_in, stream)) = found else { continue };
        model.node_mut(id).op = Box::new(op?);
        model.add_edge(linear_in, InletId::new(id, 0))?;
        model.add_edge(stream, InletId::new(id, 1))?;
        fused += 1;
    }
    Ok(fused)
}

/// [`dequantize::DequantizeI32`] -> tract's `GeluExact` -> [`quantize::QuantizeI8`], each the
/// only consumer of the one before: the quantisation becomes one
/// [`gelu::DequantizeGeluQuantizeI8`] reading the dequantisation's inputs. The two ops before
/// it are left without consumers, so the plan never runs them.
fn fuse_gelu(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        let Some(&q) = model.node(id).op_as::<quantize::QuantizeI8>() else { continue };
        let gelu_out = model.node(id).inputs[0];
        let gelu = model.node(gelu_out.node);
        if gelu.op.name() != "GeluExact" || model.outlet_successors(gelu_out).len() != 1 {
            continue;
        }
        let deq_out = gelu.inputs[0];
        let deq = model.node(deq_out.node);
        if deq.op_as::<dequantize::DequantizeI32>().is_none() || model.outlet_successors(deq_out).len() != 1 {
            continue;
        }
        let inputs = deq.inputs.clone();
        model.node_mut(id).op = Box::new(gelu::DequantizeGeluQuantizeI8(q));
        for (slot, &input) in inputs.iter().enumerate() {
            model.add_edge(input, InletId::new(id, slot))?;
        }
        fused += 1;
    }
    Ok(fused)
}

/// An i32 -> f32 [`cast::SimdCast`] feeding only an `OptBinChain(Mul, Add)` whose operands are
/// f32 constants of one value or one per column: the chain becomes one
/// [`dequantize::DequantizeI32`] reading the cast's input (its operands stay its inputs 1 and
/// 2). The cast is left without consumers, so the plan never runs it.
fn fuse_dequantize(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::binary::OptBinChain;
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        let chain = model.node(id);
        let Some(op) = chain.op_as::<OptBinChain>() else { continue };
        let names: Vec<&str> = op.steps.iter().map(|s| s.binop.name()).collect();
        if names != ["Mul", "Add"] || chain.inputs.len() != 3 {
            continue;
        }
        let cast_out = chain.inputs[0];
        if model.node(cast_out.node).op_as::<cast::SimdCast>() != Some(&cast::SimdCast::I32ToF32)
            || model.outlet_successors(cast_out).len() != 1
        {
            continue;
        }
        if !(per_column_const(model, op, chain, 1)? && per_column_const(model, op, chain, 2)?) {
            continue;
        }
        let accumulators = model.node(cast_out.node).inputs[0];
        model.node_mut(id).op = Box::new(dequantize::DequantizeI32);
        model.add_edge(accumulators, InletId::new(id, 0))?;
        fused += 1;
    }
    Ok(fused)
}

/// `OptBinChain(Mul, Add, Sub, Max, Min)` by scalar constants, feeding only an f32 -> i8 cast:
/// the cast becomes one [`quantize::QuantizeI8`] reading the chain's input. The chain is left
/// without consumers, so the plan (built back from the outputs) never runs it. With a
/// per-column `Mul, Add` before it (a LayerNorm's gamma and beta), the cast becomes one
/// [`quantize::AffineQuantizeI8`] that also reads gamma and beta.
fn fuse_quantize(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::binary::OptBinChain;
    const QUANTIZE: [&str; 5] = ["Mul", "Add", "Sub", "Max", "Min"];
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        if model.node(id).op_as::<cast::SimdCast>() != Some(&cast::SimdCast::F32ToI8) {
            continue;
        }
        let chain_out = model.node(id).inputs[0];
        let chain = model.node(chain_out.node);
        let Some(op) = chain.op_as::<OptBinChain>() else { continue };
        let names: Vec<&str> = op.steps.iter().map(|s| s.binop.name()).collect();
        let affine = match names.as_slice() {
            n if n == QUANTIZE => false,
            [m, a, rest @ ..] if [*m, *a] == ["Mul", "Add"] && rest == QUANTIZE => true,
            _ => continue,
        };
        if model.outlet_successors(chain_out).len() != 1
            || model.outlet_fact(chain.inputs[0])?.datum_type != DatumType::F32
        {
            continue;
        }
        let first = if affine { 2 } else { 0 };
        let mut k = [0f32; 5];
        let mut scalars = true;
        for (i, slot) in k.iter_mut().enumerate() {
            match scalar_f32(model, chain.inputs[first + i + 1])? {
                Some(v) => *slot = v,
                None => scalars = false,
            }
        }
        if !scalars || (affine && !(per_column_const(model, op, chain, 1)? && per_column_const(model, op, chain, 2)?)) {
            continue;
        }
        let (input, gamma, beta) = (chain.inputs[0], chain.inputs[1], chain.inputs[2]);
        let q = quantize::QuantizeI8 { mul: k[0], add: k[1], sub: k[2], lo: k[3], hi: k[4] };
        if affine {
            model.node_mut(id).op = Box::new(quantize::AffineQuantizeI8(q));
            model.add_edge(input, InletId::new(id, 0))?;
            model.add_edge(gamma, InletId::new(id, 1))?;
            model.add_edge(beta, InletId::new(id, 2))?;
        } else {
            model.node_mut(id).op = Box::new(q);
            model.add_edge(input, InletId::new(id, 0))?;
        }
        fused += 1;
    }
    Ok(fused)
}

/// Whether input `i` of an `OptBinChain` node is an f32 constant of one value, or of one value
/// per column of the chain's input (its last axis) consumed in lockstep.
fn per_column_const(
    model: &TypedModel,
    op: &tract_onnx::tract_core::ops::binary::OptBinChain,
    chain: &TypedNode,
    i: usize,
) -> TractResult<bool> {
    let Some(columns) = model.outlet_fact(chain.inputs[0])?.shape.as_concrete().and_then(|s| s.last().copied()) else {
        return Ok(false);
    };
    let fact = model.outlet_fact(chain.inputs[i])?;
    let Some(shape) = fact.shape.as_concrete() else { return Ok(false) };
    let last_only = shape.iter().rev().skip(1).all(|&d| d == 1);
    let lockstep = format!("{:?}", op.steps[i - 1].share) == "Lockstep";
    Ok(fact.konst.is_some()
        && fact.datum_type == DatumType::F32
        && (shape.iter().product::<usize>() == 1 || (last_only && shape.last() == Some(&columns) && lockstep)))
}

/// Replaces each linear layer of a typed, not yet decluttered, model by the project's op for
/// it, where this CPU has that op's kernel: an int8 layer (a quantised EinSum `amk,akn->amn` of
/// i8 activations by constant i8 weights, zero points 0 and scales 1, i32 out) by one
/// [`linear::LinearI8`]; an fp32 one (EinSum `amk,kn->amn` by constant weights, and the bias
/// added after it when there is one) by one [`linear_f32::LinearF32`]. Returns how many were
/// replaced. Elsewhere tract's own products stay (faster there than the portable kernels).
pub fn fuse_linear(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        let found = if linear::LinearI8::available() { match_linear(model, id)? } else { None };
        let (input, op, replaced): (OutletId, Box<dyn TypedOp>, OutletId) = match found {
            Some((input, op)) => (input, Box::new(op), id.into()),
            None => {
                let found = if linear_f32::LinearF32::available() { match_linear_f32(model, id)? } else { None };
                let Some((input, op, replaced)) = found else { continue };
                (input, Box::new(op), replaced)
            }
        };
        let name = format!("{}.usq_linear", model.node(id).name);
        swap_in(model, input, name, op, replaced)?;
        fused += 1;
    }
    Ok(fused)
}

/// The constant at `outlet`, or before the axes added in front of it (the typed graph, not
/// yet decluttered, adds them to broadcast weights and biases), with its own shape.
fn const_before_axes(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Arc<Tensor>>> {
    let mut outlet = outlet;
    loop {
        if let Some(k) = model.outlet_fact(outlet)?.konst.clone() {
            return Ok(Some(k));
        }
        let node = model.node(outlet.node);
        match node.op_as::<AxisOp>() {
            Some(AxisOp::Add(_)) => outlet = node.inputs[0],
            _ => return Ok(None),
        }
    }
}

/// The activations, the op and the outlet it replaces for an fp32 linear layer at node `id`
/// (with the bias when the product's only consumer adds a constant per column), or None.
fn match_linear_f32(model: &TypedModel, id: usize) -> TractResult<Option<(OutletId, linear_f32::LinearF32, OutletId)>> {
    let node = model.node(id);
    let Some(op) = node.op_as::<EinSum>() else { return Ok(None) };
    if op.q_params.is_some()
        || op.operating_dt != DatumType::F32
        || node.inputs.len() != 2
        || op.axes.to_string() != "amk,kn->amn"
        || model.outlet_fact(node.inputs[0])?.datum_type != DatumType::F32
    {
        return Ok(None);
    }
    let Some(w) = model.outlet_fact(node.inputs[1])?.konst.clone() else { return Ok(None) };
    let (k, n) = match *w.shape() {
        [k, n] if w.datum_type() == DatumType::F32 => (k, n),
        _ => return Ok(None),
    };
    let weights = w.try_as_plain_ram()?;
    let weights = weights.as_slice::<f32>()?;
    // The bias: an Add of a constant [.., N] (ones before N), the product's only consumer.
    let succ = model.outlet_successors(id.into());
    if succ.len() == 1 {
        let add = model.node(succ[0].node);
        if add.op_as::<TypedBinOp>().is_some_and(|b| b.0.name() == "Add") && add.inputs.len() == 2 {
            let other = add.inputs[1 - succ[0].slot];
            let rank_ok = model.outlet_fact(other)?.rank() <= model.outlet_fact(id.into())?.rank();
            if let Some(b) = const_before_axes(model, other)?.filter(|_| rank_ok) {
                let per_column = b.datum_type() == DatumType::F32
                    && b.shape().last() == Some(&n)
                    && b.shape().iter().rev().skip(1).all(|&d| d == 1);
                if per_column {
                    let bias = b.try_as_plain_ram()?;
                    let op = linear_f32::LinearF32::new(weights, k, n, Some(bias.as_slice::<f32>()?))?;
                    return Ok(Some((node.inputs[0], op, add.id.into())));
                }
            }
        }
    }
    Ok(Some((node.inputs[0], linear_f32::LinearF32::new(weights, k, n, None)?, id.into())))
}

/// The activations and the op for an int8 linear layer at node `id`, or None when it is
/// anything else.
fn match_linear(model: &TypedModel, id: usize) -> TractResult<Option<(OutletId, linear::LinearI8)>> {
    let node = model.node(id);
    let Some(op) = node.op_as::<EinSum>() else { return Ok(None) };
    if op.q_params != Some(DatumType::I32)
        || op.operating_dt != DatumType::I32
        || node.inputs.len() != 9
        || op.axes.to_string() != "amk,akn,,,,,,,->amn"
    {
        return Ok(None);
    }
    if model.outlet_fact(node.inputs[0])?.datum_type != DatumType::I8 {
        return Ok(None);
    }
    // Bias and zero points 0, scales 1: the product alone.
    for (slot, &inlet) in node.inputs.iter().enumerate().skip(2) {
        let Some(k) = model.outlet_fact(inlet)?.konst.clone() else { return Ok(None) };
        if k.volume() != 1 {
            return Ok(None);
        }
        let neutral = match k.datum_type() {
            DatumType::I32 => k.try_as_plain_ram()?.as_slice::<i32>()?[0] == 0,
            DatumType::F32 => k.try_as_plain_ram()?.as_slice::<f32>()?[0] == 1.0,
            _ => false,
        };
        if !neutral {
            log::debug!("{}: quantisation input {slot} is not neutral; left to tract", node.name);
            return Ok(None);
        }
    }
    // The weights: a constant [1, K, N], or [K, N] given an axis in front.
    let weights = const_before_axes(model, node.inputs[1])?;
    let Some(weights) = weights.filter(|t| t.datum_type() == DatumType::I8) else { return Ok(None) };
    let (k, n) = match *weights.shape() {
        [k, n] | [1, k, n] => (k, n),
        _ => return Ok(None),
    };
    if !k.is_multiple_of(4) {
        return Ok(None);
    }
    let op = linear::LinearI8::new(weights.try_as_plain_ram()?.as_slice::<i8>()?, k, n)?;
    Ok(Some((node.inputs[0], op)))
}

/// Replaces each multi-head self-attention of a typed, not yet decluttered, model by one
/// [`attention::Attention`]. Returns how many were replaced. Runs before decluttering because
/// there the graph still has the exported form for every batch size; the nodes it bypasses are
/// dropped by tract's optimiser.
pub fn fuse_attention(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in 0..model.nodes().len() {
        let Some(found) = match_attention(model, id)? else { continue };
        let name = format!("{}.usq_attention", model.node(id).name);
        swap_in(model, found.qkv, name, found.op, found.merged)?;
        fused += 1;
    }
    Ok(fused)
}

struct AttentionMatch {
    op: attention::Attention,
    /// `[B, T, 3·H·D]`: the qkv projection.
    qkv: OutletId,
    /// `[B, T, H·D]`: the heads merged back, what the output projection reads.
    merged: OutletId,
}

/// The exported attention around the Softmax node `softmax`, or None when any part differs:
///
/// ```text
/// qkv [B,T,3HD] -Reshape(2,[3HD],[3,H,D])-Move(2,0)-Move(2,3)-> x [3,B,H,T,D]
/// q, k, v = Gather(x, 0|1|2, axis 0)
/// s = EinSum(abmk,abkn->abmn)(q, Move(2,3)(k)) * scale
/// a = EinSum(abmk,abkn->abmn)(Softmax(s, last axis), v) -Move(1,2)-Reshape(2,[H,D],[HD])-> merged
/// ```
fn match_attention(model: &TypedModel, softmax: usize) -> TractResult<Option<AttentionMatch>> {
    let node = model.node(softmax);
    let Some(op) = node.op_as::<Softmax>() else { return Ok(None) };
    let fact = model.outlet_fact(softmax.into())?;
    if op.kind != SoftmaxKind::Softmax || op.quant_output_dt.is_some() || fact.rank() != 4 || *op.axes != [3] {
        return Ok(None);
    }
    // Scale: a Mul by a scalar constant.
    let mul = model.node(node.inputs[0].node);
    if mul.op_as::<TypedBinOp>().is_none_or(|b| b.0.name() != "Mul") {
        return Ok(None);
    }
    let Some((qk, scale)) = split_scalar_const(model, &mul.inputs)? else { return Ok(None) };
    // Q·Kᵀ.
    let Some([q, kt]) = einsum_inputs(model, qk.node, "abmk,abkn->abmn") else { return Ok(None) };
    let Some(k) = axis_op_input(model, kt.node, &AxisOp::Move(2, 3)) else { return Ok(None) };
    // A·V: the softmax's only consumer.
    let succ = model.outlet_successors(softmax.into());
    if succ.len() != 1 {
        return Ok(None);
    }
    let av = succ[0].node;
    let Some([a, v]) = einsum_inputs(model, av, "abmk,abkn->abmn") else { return Ok(None) };
    if a != OutletId::from(softmax) {
        return Ok(None);
    }
    // q, k, v: slices 0, 1, 2 of one [3, B, H, T, D] tensor.
    let (Some((xq, 0)), Some((xk, 1)), Some((xv, 2))) =
        (gather_input(model, q.node)?, gather_input(model, k.node)?, gather_input(model, v.node)?)
    else {
        return Ok(None);
    };
    if xq != xk || xq != xv {
        return Ok(None);
    }
    let x = model.outlet_fact(xq)?.shape.as_concrete().map(|s| s.to_vec());
    let Some(&[3, _, heads, _, head_dim]) = x.as_deref() else { return Ok(None) };
    let Some(moved) = axis_op_input(model, xq.node, &AxisOp::Move(2, 3)) else { return Ok(None) };
    let Some(split) = axis_op_input(model, moved.node, &AxisOp::Move(2, 0)) else { return Ok(None) };
    let split_op = AxisOp::Reshape(
        2,
        tvec!((3 * heads * head_dim).to_dim()),
        tvec!(3.to_dim(), heads.to_dim(), head_dim.to_dim()),
    );
    let Some(qkv) = axis_op_input(model, split.node, &split_op) else { return Ok(None) };
    // After A·V: heads moved next to the channels and merged.
    let Some(moved_back) = single_successor_with(model, av, &AxisOp::Move(1, 2)) else { return Ok(None) };
    let merge_op = AxisOp::Reshape(2, tvec!(heads.to_dim(), head_dim.to_dim()), tvec!((heads * head_dim).to_dim()));
    let Some(merged) = single_successor_with(model, moved_back, &merge_op) else { return Ok(None) };
    if model.outlet_fact(qkv)?.datum_type != DatumType::F32 {
        return Ok(None);
    }
    let op = attention::Attention { heads, head_dim, scale };
    Ok(Some(AttentionMatch { op, qkv, merged: merged.into() }))
}

/// Of a binary node's two inputs, the one that is not a scalar f32 constant, and the constant.
fn split_scalar_const(model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<(OutletId, f32)>> {
    for (i, &inlet) in inputs.iter().enumerate() {
        if let Some(value) = scalar_f32(model, inlet)? {
            return Ok(Some((inputs[1 - i], value)));
        }
    }
    Ok(None)
}

/// The value of `outlet` when it is a constant f32 scalar (of any rank, volume 1).
fn scalar_f32(model: &TypedModel, outlet: OutletId) -> TractResult<Option<f32>> {
    match model.outlet_fact(outlet)?.konst.as_ref().filter(|t| t.datum_type() == DatumType::F32 && t.volume() == 1) {
        Some(t) => Ok(Some(t.try_as_plain_ram()?.as_slice::<f32>()?[0])),
        None => Ok(None),
    }
}

fn einsum_inputs(model: &TypedModel, id: usize, formula: &str) -> Option<[OutletId; 2]> {
    let node = model.node(id);
    let op = node.op_as::<EinSum>()?;
    let plain = op.q_params.is_none() && op.operating_dt == DatumType::F32 && node.inputs.len() == 2;
    (plain && op.axes.to_string() == formula).then(|| [node.inputs[0], node.inputs[1]])
}

fn axis_op_input(model: &TypedModel, id: usize, expected: &AxisOp) -> Option<OutletId> {
    let node = model.node(id);
    (node.op_as::<AxisOp>() == Some(expected)).then(|| node.inputs[0])
}

/// The input of a Gather on axis 0 by a constant scalar index, and the index.
fn gather_input(model: &TypedModel, id: usize) -> TractResult<Option<(OutletId, i64)>> {
    use tract_onnx::tract_core::ops::array::Gather;
    let node = model.node(id);
    if node.op_as::<Gather>().is_none_or(|g| g.axis != 0) {
        return Ok(None);
    }
    let Some(index) = model.outlet_fact(node.inputs[1])?.konst.clone() else { return Ok(None) };
    if index.volume() != 1 {
        return Ok(None);
    }
    let index = index.cast_to::<i64>()?.try_as_plain_ram()?.as_slice::<i64>()?[0];
    Ok(Some((node.inputs[0], index)))
}

/// The only consumer of node `id`'s output, when it is `expected`.
fn single_successor_with(model: &TypedModel, id: usize, expected: &AxisOp) -> Option<usize> {
    let succ = model.outlet_successors(id.into());
    let next = (succ.len() == 1).then(|| succ[0].node)?;
    (model.node(next).op_as::<AxisOp>() == Some(expected)).then_some(next)
}

#[cfg(test)]
mod tests;
