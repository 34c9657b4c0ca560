//! The fp32 model's linear layers: `y = x · W (+ b)` with x `[.., M, K]`, W `[K, N]` and b
//! `[N]` constants.
//!
//! tract packs the activations for each product and runs a 16×12 tile; this op packs only the
//! weights, once at load, in panels of 64 columns, and for six rows at a time keeps a 6×64
//! block of sums in registers, broadcasting each activation straight from its row: 24 FMAs
//! for every 4 loads of W. Each sum runs over K in order as one fused multiply-add chain, then
//! the bias is added (one rounding, as tract's epilogue does); the tests bound the difference
//! from tract's products (src/ops/tests.rs).
//!
//! Swapped in only where the CPU has this op's kernel (AVX-512); elsewhere tract's products
//! stay.

use super::workers::{Disjoint, Workers};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Columns per panel of packed weights: four 16-lane vectors.
const PANEL: usize = 64;
/// Rows per tile: 6 rows × 4 vectors = 24 accumulators of AVX-512's 32 registers.
const ROWS: usize = 6;
/// Rows of K per pass over a panel: 96 × 64 values = 24 KiB, half of a current x86 core's L1.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const K_CHUNK: usize = 96;

#[derive(Debug, Clone)]
pub struct LinearF32 {
    k: usize,
    n: usize,
    /// `[K, N]` row-major, as given: what the portable kernel reads.
    weights: Arc<Vec<f32>>,
    /// By panel of 64 columns (N padded with zeros), then row of K: 64 values per step.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    packed: Arc<Vec<f32>>,
    /// One per column, or none.
    bias: Option<Arc<Vec<f32>>>,
    /// tract's GELU on each block of rows once its sums are complete (fc1), while they are in
    /// cache, instead of a pass of its own.
    gelu: bool,
}

impl PartialEq for LinearF32 {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        (self.k, self.n) == (other.k, other.n)
            && bits(&self.weights) == bits(&other.weights)
            && self.bias.as_deref().map(|b| bits(b)) == other.bias.as_deref().map(|b| bits(b))
            && self.gelu == other.gelu
    }
}

impl Eq for LinearF32 {}

impl std::hash::Hash for LinearF32 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.k, self.n, self.gelu).hash(state);
        self.weights.iter().for_each(|w| w.to_bits().hash(state));
        self.bias.iter().flat_map(|b| b.iter()).for_each(|b| b.to_bits().hash(state));
    }
}

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The fastest this CPU has.
    Auto,
    /// Plain Rust: what the tests compare every kernel to.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
}

impl LinearF32 {
    /// The op for weights `[K, N]` and an optional bias of N.
    pub fn new(weights: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> TractResult<LinearF32> {
        ensure!(weights.len() == k * n && k > 0 && n > 0, "UsqLinearF32: {} weights for [{k}, {n}]", weights.len());
        if let Some(b) = bias {
            ensure!(b.len() == n, "UsqLinearF32: {} biases for {n} columns", b.len());
        }
        let panels = n.div_ceil(PANEL);
        let mut packed = vec![0f32; panels * k * PANEL];
        for kk in 0..k {
            for col in 0..n {
                packed[((col / PANEL) * k + kk) * PANEL + col % PANEL] = weights[kk * n + col];
            }
        }
        Ok(LinearF32 {
            k,
            n,
            weights: Arc::new(weights.to_vec()),
            packed: Arc::new(packed),
            bias: bias.map(|b| Arc::new(b.to_vec())),
            gelu: false,
        })
    }

    /// The same op with tract's GELU applied to its results.
    pub fn with_gelu(&self) -> LinearF32 {
        LinearF32 { gelu: true, ..self.clone() }
    }

    pub fn has_gelu(&self) -> bool {
        self.gelu
    }

    /// Whether this CPU has a kernel of this op's own (it is only swapped in then).
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            avx512::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `out[r] = x[r] · W (+ b)` for the rows of `x` (each K long); `out` is rows × N.
    ///
    /// The vector kernel goes panel by panel and, within a panel, through K in chunks whose
    /// slice of the panel stays in L1 while every row block passes over it (each block's sums
    /// go to `out` between chunks and come back): streaming all of W once per block of six
    /// rows would make the kernel wait on L2. The sums still run over K in order.
    pub fn run(&self, kernel: Kernel, x: &[f32], out: &mut [f32], workers: &Workers) {
        let rows = x.len() / self.k;
        assert!(x.len() == rows * self.k && out.len() == rows * self.n);
        let out = Disjoint::new(out);
        let blocks = rows.div_ceil(ROWS);
        let work = |w: usize, n: usize| {
            let mine = (w..blocks).step_by(n).map(|block| (block * ROWS, ROWS.min(rows - block * ROWS)));
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Kernel::Auto if avx512::available() => {
                    for p in 0..self.n.div_ceil(PANEL) {
                        for k0 in (0..self.k).step_by(K_CHUNK) {
                            let k1 = (k0 + K_CHUNK).min(self.k);
                            for (first, count) in mine.clone() {
                                let x = &x[first * self.k..][..count * self.k];
                                let out = out.range(first * self.n, count * self.n);
                                // SAFETY: `available` checked the CPU.
                                unsafe { avx512::tile(self, x, count, out, p, k0..k1) }
                                if self.gelu && k1 == self.k {
                                    // This panel of these rows is complete, and in L1.
                                    let cols = p * PANEL..((p + 1) * PANEL).min(self.n);
                                    for row in out.chunks_exact_mut(self.n) {
                                        super::gelu::gelu_in_place(&mut row[cols.clone()]);
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {
                    for (first, count) in mine {
                        let out = out.range(first * self.n, count * self.n);
                        portable(self, &x[first * self.k..][..count * self.k], out);
                        if self.gelu {
                            super::gelu::gelu_in_place(out);
                        }
                    }
                }
            }
        };
        workers.run(blocks, &work);
    }
}

/// Each sum over K in order, then the bias: the same order as the vector kernel, with the
/// product and sum rounded apart where the target has no FMA.
fn portable(op: &LinearF32, x: &[f32], out: &mut [f32]) {
    for (row, out) in x.chunks_exact(op.k).zip(out.chunks_exact_mut(op.n)) {
        out.fill(0.0);
        for (&xk, w) in row.iter().zip(op.weights.chunks_exact(op.n)) {
            for (o, &wk) in out.iter_mut().zip(w) {
                *o += xk * wk;
            }
        }
        if let Some(b) = &op.bias {
            out.iter_mut().zip(b.iter()).for_each(|(o, b)| *o += b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;
    use std::ops::Range;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// Up to ROWS rows of `x` times rows `ks` of panel `p` of W, into those rows' columns of
    /// the panel in `out` (count × N): from zero at the first chunk of K, else from the sums
    /// `out` holds; the bias is added after the last chunk.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile(op: &LinearF32, x: &[f32], count: usize, out: &mut [f32], p: usize, ks: Range<usize>) {
        // SAFETY: the caller's; the bodies below check their own bounds.
        unsafe {
            match count {
                6 => body::<6>(op, x, out, p, ks),
                5 => body::<5>(op, x, out, p, ks),
                4 => body::<4>(op, x, out, p, ks),
                3 => body::<3>(op, x, out, p, ks),
                2 => body::<2>(op, x, out, p, ks),
                _ => body::<1>(op, x, out, p, ks),
            }
        }
    }

    #[inline(always)]
    unsafe fn body<const R: usize>(op: &LinearF32, x: &[f32], out: &mut [f32], p: usize, ks: Range<usize>) {
        let (k, n) = (op.k, op.n);
        assert!(x.len() >= R * k && out.len() >= R * n && ks.end <= k && p * PANEL < n);
        let lanes = |v: usize| -> __mmask16 {
            let col = p * PANEL + v * 16;
            match n.saturating_sub(col) {
                0 => 0,
                l if l >= 16 => 0xffff,
                l => (1u16 << l) - 1,
            }
        };
        let masks = [lanes(0), lanes(1), lanes(2), lanes(3)];
        let first = ks.start == 0;
        let last = ks.end == k;
        // SAFETY: this CPU has AVX-512F (the caller's); reads stay inside x (R rows of K) and
        // `packed` (panels × K × 64); out's reads and writes are masked to its R rows of N.
        unsafe {
            // Addresses past a row's end are formed only for fully masked lanes (wrapping: no
            // access happens through them).
            let o = out.as_mut_ptr().wrapping_add(p * PANEL);
            let mut acc = [[_mm512_setzero_ps(); 4]; R];
            if !first {
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_maskz_loadu_ps(masks[v], o.wrapping_add(r * n + v * 16));
                    }
                }
            }
            let mut w = op.packed.as_ptr().add((p * k + ks.start) * PANEL);
            for kk in ks {
                let w0 = _mm512_loadu_ps(w);
                let w1 = _mm512_loadu_ps(w.add(16));
                let w2 = _mm512_loadu_ps(w.add(32));
                let w3 = _mm512_loadu_ps(w.add(48));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let xr = _mm512_set1_ps(*x.get_unchecked(r * k + kk));
                    acc[0] = _mm512_fmadd_ps(xr, w0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(xr, w1, acc[1]);
                    acc[2] = _mm512_fmadd_ps(xr, w2, acc[2]);
                    acc[3] = _mm512_fmadd_ps(xr, w3, acc[3]);
                }
                w = w.add(PANEL);
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, &a) in acc.iter().enumerate() {
                    let col = p * PANEL + v * 16;
                    let a = match &op.bias {
                        Some(b) if last => {
                            _mm512_add_ps(a, _mm512_maskz_loadu_ps(masks[v], b.as_ptr().wrapping_add(col)))
                        }
                        _ => a,
                    };
                    _mm512_mask_storeu_ps(o.wrapping_add(r * n + v * 16), masks[v], a);
                }
            }
        }
    }
}

impl Op for LinearF32 {
    fn name(&self) -> StaticName {
        "UsqLinearF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let kernel = if LinearF32::available() { "usq_avx512_f32_6x64" } else { "usq_portable_f32" };
        let bias = if self.bias.is_some() { ", bias" } else { "" };
        let gelu = if self.gelu { ", then GELU" } else { "" };
        Ok(vec![format!("[{}, {}] weights{bias}{gelu} with {kernel}", self.k, self.n)])
    }

    op_as_typed_op!();
}

impl EvalOp for LinearF32 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let out_shape = super::linear_shape("UsqLinearF32", x.shape(), self.k, self.n)?;
        // SAFETY: `run` writes every element.
        let mut out = unsafe { Tensor::uninitialized_dt(DatumType::F32, &out_shape)? };
        {
            let src = x.try_as_plain_ram()?;
            let mut dst = out.try_as_plain_ram_mut()?;
            self.run(Kernel::Auto, src.as_slice::<f32>()?, dst.as_slice_mut::<f32>()?, &Workers::Current);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for LinearF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let fact = inputs[0];
        ensure!(fact.datum_type == DatumType::F32, "UsqLinearF32 wants f32 [.., K]");
        let shape = super::linear_shape("UsqLinearF32", &fact.shape, self.k.to_dim(), self.n.to_dim())?;
        Ok(tvec!(DatumType::F32.fact(shape)))
    }

    as_op!();
}
