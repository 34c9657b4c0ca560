//! Multi-head self-attention in one op: from the fused qkv projection `[B, T, 3·H·D]` to the
//! merged heads `[B, T, H·D]`, i.e. `softmax(scale · Q·Kᵀ) · V` per head.
//!
//! tract runs the encoder's attention as two small matrix products per head (inner dimension
//! D = 16), a scale, a softmax over rows of 197 and the axis moves between them: each product
//! packs its operands, the 12×197×197 score tensor goes through memory three times, and the
//! softmax rows (197 long) miss tract's fast kernel. This op packs one head at a time into
//! cache-sized buffers and, for four query rows at a time, computes the scores, the softmax
//! and the weighted sum of V without writing the score matrix out.
//!
//! Semantics are those of the graph it replaces: scores `(q·k) · scale`, then
//! `exp(s - max) / Σ exp(s - max)` over the keys, then `Σ p·v`. Sums run in another order than
//! tract's kernels and `exp` is a polynomial (relative error about 2e-7), so results agree with
//! tract's to float rounding, not bit for bit (src/ops/tests.rs bounds the difference).

use super::workers::{Disjoint, Workers};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Query rows handled together: their score rows share every load of K and V.
const ROWS: usize = 4;
/// The same for the AVX-512 kernel, whose 32 registers hold twice the accumulators.
const ROWS_WIDE: usize = 8;
/// Keys are padded to a multiple of this (two AVX2 vectors).
const KEY_BLOCK: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct Attention {
    pub heads: usize,
    pub head_dim: usize,
    pub scale: f32,
}

impl Attention {
    fn key(&self) -> (usize, usize, u32) {
        (self.heads, self.head_dim, self.scale.to_bits())
    }
}

eq_hash_by_key!(Attention, key);

impl Op for Attention {
    fn name(&self) -> StaticName {
        "UsqAttention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} heads of {}, scale {}", self.heads, self.head_dim, self.scale)])
    }

    op_as_typed_op!();
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let qkv = args_1!(inputs);
        let &[batch, tokens, channels] = qkv.shape() else {
            bail!("UsqAttention wants a rank-3 input, got {:?}", qkv.shape())
        };
        ensure!(channels == 3 * self.width(), "UsqAttention: {channels} channels, expected {}", 3 * self.width());
        // SAFETY: `run` writes every output element.
        let mut out = unsafe { Tensor::uninitialized_dt(DatumType::F32, &[batch, tokens, self.width()])? };
        {
            let src = qkv.try_as_plain_ram()?;
            let mut dst = out.try_as_plain_ram_mut()?;
            self.run(src.as_slice::<f32>()?, dst.as_slice_mut::<f32>()?, batch, tokens);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(inputs[0].datum_type == DatumType::F32 && shape.rank() == 3, "UsqAttention wants f32 [B, T, 3HD]");
        Ok(tvec!(f32::fact([shape[0].clone(), shape[1].clone(), self.width().to_dim()])))
    }

    as_op!();
}

/// Which implementation runs; `Auto` picks the fastest this CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Auto,
    /// Plain Rust that the compiler vectorises for the target (NEON on aarch64): the
    /// fallback `Auto` uses where no faster path exists, and what the tests compare every
    /// kernel to.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
    /// The AVX2 kernel even where AVX-512 is present (tests compare both to `Portable`).
    #[cfg_attr(not(test), allow(dead_code))]
    Avx2,
}

/// The kernel that runs for `kernel` on this CPU, given the head dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    fn of(kernel: Kernel, head_dim: usize) -> Path {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = kernel == Kernel::Auto && head_dim.is_multiple_of(16) && avx512::available();
            if avx512 {
                return Path::Avx512;
            }
            if matches!(kernel, Kernel::Auto | Kernel::Avx2) && head_dim.is_multiple_of(8) && avx2::available() {
                return Path::Avx2;
            }
        }
        let _ = (kernel, head_dim);
        Path::Portable
    }
}

impl Attention {
    /// H·D: the width of the merged heads.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// `qkv` is `[batch, tokens, 3·H·D]`, `out` `[batch, tokens, H·D]`, both row-major.
    pub fn run(&self, qkv: &[f32], out: &mut [f32], batch: usize, tokens: usize) {
        self.run_with(Kernel::Auto, qkv, out, batch, tokens)
    }

    /// As [`Attention::run`], with a given kernel, and the heads split over `threads` workers
    /// (tract's executor, when the encoder runs on several threads): each head is computed the
    /// same way whichever thread runs it, so the output does not depend on `threads`.
    pub fn run_with(&self, kernel: Kernel, qkv: &[f32], out: &mut [f32], batch: usize, tokens: usize) {
        self.run_on(kernel, qkv, out, batch, tokens, &Workers::Current)
    }

    pub(crate) fn run_on(
        &self,
        kernel: Kernel,
        qkv: &[f32],
        out: &mut [f32],
        batch: usize,
        tokens: usize,
        workers: &Workers,
    ) {
        assert_eq!(qkv.len(), batch * tokens * 3 * self.width());
        assert_eq!(out.len(), batch * tokens * self.width());
        if tokens == 0 {
            return;
        }
        let path = Path::of(kernel, self.head_dim);
        let out = OutRows(Disjoint::new(out));
        let heads = batch * self.heads;
        // Worker `w` of `n` takes heads w, w + n, ...; each writes only its own head's columns.
        let work = |w: usize, n: usize| {
            let mut scratch = Scratch::new(tokens, self.head_dim);
            for i in (w..heads).step_by(n) {
                let (b, h) = (i / self.heads, i % self.heads);
                scratch.pack(self, qkv, b, h, tokens);
                match path {
                    // SAFETY: Path::of checked the CPU's features and that D is a multiple of
                    // the kernel's vector width.
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx512 => unsafe { avx512::head(self, &mut scratch, &out, b, h, tokens) },
                    #[cfg(target_arch = "x86_64")]
                    Path::Avx2 => unsafe { avx2::head(self, &mut scratch, &out, b, h, tokens) },
                    Path::Portable => portable_head(self, &mut scratch, &out, b, h, tokens),
                }
            }
        };
        workers.run(heads, &work);
    }
}

/// The output `[B, T, H·D]`, written by several threads at once, each through the `D` columns
/// of its own head in every row: disjoint, so no two threads ever touch one element.
struct OutRows<'a>(Disjoint<'a, f32>);

impl OutRows<'_> {
    /// The `d` values of head `h` in row `row` of the output (only the thread computing head h
    /// writes there, one such slice at a time).
    fn head_row(&self, a: &Attention, row: usize, h: usize) -> &mut [f32] {
        self.0.range(row * a.width() + h * a.head_dim, a.head_dim)
    }
}

/// One head's operands, packed: Q by rows (padded to a multiple of ROWS), K transposed (keys
/// padded to KEY_BLOCK, zeros), V by rows, and the score rows of one block of queries.
struct Scratch {
    keys: usize,
    q: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    p: Vec<f32>,
}

impl Scratch {
    fn new(tokens: usize, d: usize) -> Scratch {
        let keys = tokens.div_ceil(KEY_BLOCK) * KEY_BLOCK;
        let queries = tokens.div_ceil(ROWS_WIDE) * ROWS_WIDE;
        Scratch {
            keys,
            q: vec![0.0; queries * d],
            kt: vec![0.0; d * keys],
            v: vec![0.0; tokens * d],
            p: vec![0.0; ROWS_WIDE * keys],
        }
    }

    fn pack(&mut self, a: &Attention, qkv: &[f32], b: usize, h: usize, tokens: usize) {
        let (d, width) = (a.head_dim, a.width());
        for t in 0..tokens {
            let row = &qkv[(b * tokens + t) * 3 * width..][..3 * width];
            self.q[t * d..][..d].copy_from_slice(&row[h * d..][..d]);
            self.v[t * d..][..d].copy_from_slice(&row[2 * width + h * d..][..d]);
            for (i, &k) in row[width + h * d..][..d].iter().enumerate() {
                self.kt[i * self.keys + t] = k;
            }
        }
    }
}

// Cephes' expf: exp(x) = 2^n · e^r, n = floor(x·log2(e) + 1/2), r = x - n·ln 2 (in two parts),
// e^r by a degree-7 polynomial.
const EXP_LO: f32 = -87.336_55;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [1.987_569_2e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

#[inline(always)]
fn exp_portable(x: f32) -> f32 {
    // Not f32::max, which would turn a NaN into EXP_LO: a NaN score must poison its row, as
    // it does in tract's softmax.
    let x = if x < EXP_LO { EXP_LO } else { x };
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut y = EXP_P[0];
    for c in &EXP_P[1..] {
        y = y * r + c;
    }
    let y = y * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

fn portable_head(a: &Attention, s: &mut Scratch, out: &OutRows<'_>, b: usize, h: usize, tokens: usize) {
    let (d, keys) = (a.head_dim, s.keys);
    for block in (0..tokens).step_by(ROWS) {
        for r in 0..ROWS {
            let p = &mut s.p[r * keys..][..keys];
            p.fill(0.0);
            let q = &s.q[(block + r) * d..][..d];
            for (i, &qi) in q.iter().enumerate() {
                for (pj, &kj) in p.iter_mut().zip(&s.kt[i * keys..][..keys]) {
                    *pj += qi * kj;
                }
            }
            let p = &mut p[..tokens];
            let mut max = f32::NEG_INFINITY;
            for pj in p.iter_mut() {
                *pj *= a.scale;
                max = max.max(*pj);
            }
            let mut sum = 0.0;
            for pj in p.iter_mut() {
                *pj = exp_portable(*pj - max);
                sum += *pj;
            }
            let t = block + r;
            if t >= tokens {
                continue;
            }
            let o = out.head_row(a, b * tokens + t, h);
            o.fill(0.0);
            for (j, &pj) in p.iter().enumerate() {
                for (oi, &vi) in o.iter_mut().zip(&s.v[j * d..][..d]) {
                    *oi += pj * vi;
                }
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        unsafe {
            // MAXPS returns its second operand when either is NaN: keeps a NaN score NaN.
            let x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
            let n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5)));
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
            let mut y = _mm256_set1_ps(EXP_P[0]);
            for &c in &EXP_P[1..] {
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
            }
            let y = _mm256_fmadd_ps(_mm256_mul_ps(y, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
            let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
            _mm256_mul_ps(y, _mm256_castsi256_ps(pow2))
        }
    }

    /// The eight lanes of `v` folded by `op` (max or add), in a fixed order.
    #[inline(always)]
    unsafe fn fold8(v: __m256, op: impl Fn(__m128, __m128) -> __m128) -> f32 {
        unsafe {
            let m = op(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let m = op(m, _mm_movehl_ps(m, m));
            _mm_cvtss_f32(op(m, _mm_shuffle_ps::<1>(m, m)))
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head(a: &Attention, s: &mut Scratch, out: &OutRows<'_>, b: usize, h: usize, tokens: usize) {
        let (d, keys) = (a.head_dim, s.keys);
        let scale = _mm256_set1_ps(a.scale);
        let mut inv = [0f32; ROWS];
        for block in (0..tokens).step_by(ROWS) {
            // SAFETY (whole block): every pointer offset below stays inside its buffer: q has
            // `queries` ≥ block + ROWS rows of d, kt d rows of `keys`, p ROWS rows of `keys`,
            // v `tokens` rows of d, and the chunks step by 8 within d and by 16 within keys.
            unsafe {
                let q = s.q.as_ptr().add(block * d);
                let kt = s.kt.as_ptr();
                let p = s.p.as_mut_ptr();
                // Scores: ROWS rows × 16 keys per step, K loaded once for the four rows.
                for c in (0..keys).step_by(KEY_BLOCK) {
                    let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
                    for i in 0..d {
                        let k0 = _mm256_loadu_ps(kt.add(i * keys + c));
                        let k1 = _mm256_loadu_ps(kt.add(i * keys + c + 8));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let qv = _mm256_broadcast_ss(&*q.add(r * d + i));
                            acc[0] = _mm256_fmadd_ps(qv, k0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(qv, k1, acc[1]);
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        _mm256_storeu_ps(p.add(r * keys + c), _mm256_mul_ps(acc[0], scale));
                        _mm256_storeu_ps(p.add(r * keys + c + 8), _mm256_mul_ps(acc[1], scale));
                    }
                }
                // Softmax numerators; the padded keys are left out of max and sum.
                for (r, inv) in inv.iter_mut().enumerate() {
                    let row = std::slice::from_raw_parts_mut(p.add(r * keys), keys);
                    row[tokens..].fill(f32::NEG_INFINITY);
                    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
                    for c in (0..keys).step_by(8) {
                        m = _mm256_max_ps(m, _mm256_loadu_ps(row.as_ptr().add(c)));
                    }
                    let m = _mm256_set1_ps(fold8(m, |a, b| _mm_max_ps(a, b)));
                    let mut sum = _mm256_setzero_ps();
                    for c in (0..keys).step_by(8) {
                        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row.as_ptr().add(c)), m));
                        _mm256_storeu_ps(row.as_mut_ptr().add(c), e);
                        if c + 8 <= tokens {
                            sum = _mm256_add_ps(sum, e);
                        }
                    }
                    row[tokens..].fill(0.0);
                    let mut total = fold8(sum, |a, b| _mm_add_ps(a, b));
                    for &x in &row[tokens / 8 * 8..tokens] {
                        total += x;
                    }
                    *inv = 1.0 / total;
                }
                // Weighted sum of V, 16 channels (8 at the end of an odd D) at a time, V loaded
                // once for the four rows; eight independent sums keep both FMA units busy.
                let v = s.v.as_ptr();
                for dc in (0..d).step_by(16) {
                    let lanes = if dc + 16 <= d { 2 } else { 1 };
                    let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
                    for j in 0..tokens {
                        let v0 = _mm256_loadu_ps(v.add(j * d + dc));
                        let v1 = if lanes == 2 { _mm256_loadu_ps(v.add(j * d + dc + 8)) } else { v0 };
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let pj = _mm256_broadcast_ss(&*p.add(r * keys + j));
                            acc[0] = _mm256_fmadd_ps(pj, v0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(pj, v1, acc[1]);
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        let t = block + r;
                        if t < tokens {
                            let o = out.head_row(a, b * tokens + t, h).as_mut_ptr().add(dc);
                            let inv = _mm256_set1_ps(inv[r]);
                            _mm256_storeu_ps(o, _mm256_mul_ps(acc[0], inv));
                            if lanes == 2 {
                                _mm256_storeu_ps(o.add(8), _mm256_mul_ps(acc[1], inv));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// [`super::avx2`]'s exp on 16 lanes: the same Cephes steps.
    #[inline(always)]
    unsafe fn exp16(x: __m512) -> __m512 {
        unsafe {
            // VMAXPS returns its second operand when either is NaN: keeps a NaN score NaN.
            let x = _mm512_max_ps(_mm512_set1_ps(EXP_LO), x);
            let n = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(n);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
            let mut y = _mm512_set1_ps(EXP_P[0]);
            for &c in &EXP_P[1..] {
                y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
            }
            let y = _mm512_fmadd_ps(_mm512_mul_ps(y, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
            // y · 2^n in one instruction; the same value as building 2^n from its bits, since
            // the clamp keeps n ≥ -126 (a normal power of two).
            _mm512_scalef_ps(y, n)
        }
    }

    /// As [`super::avx2::head`] with 16-lane vectors and eight query rows per block, for a head
    /// dimension that is a multiple of 16: the eight rows' sums are independent FMA chains
    /// against each load of K or V. The model's shape (D = 16, 197 tokens, so 208 keys once
    /// padded) gets its own copy of the body, with every offset a constant: otherwise the
    /// address arithmetic of the eight rows competes with the FMAs for the ports.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn head(a: &Attention, s: &mut Scratch, out: &OutRows<'_>, b: usize, h: usize, tokens: usize) {
        // SAFETY: the caller's (this CPU has AVX-512F, D is a multiple of 16).
        unsafe {
            match (a.head_dim, s.keys) {
                (16, 208) => body(16, 208, a, s, out, b, h, tokens),
                (d, keys) => body(d, keys, a, s, out, b, h, tokens),
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn body(
        d: usize,
        keys: usize,
        a: &Attention,
        s: &mut Scratch,
        out: &OutRows<'_>,
        b: usize,
        h: usize,
        tokens: usize,
    ) {
        debug_assert_eq!(keys, s.keys);
        // SAFETY: the caller's: this CPU has AVX-512F.
        let scale = unsafe { _mm512_set1_ps(a.scale) };
        // Lanes of the last key block that are real keys (the rest are K's zero padding).
        let tail: __mmask16 = match tokens % 16 {
            0 => 0xffff,
            n => (1u16 << n) - 1,
        };
        let last = (tokens - 1) / 16 * 16;
        let mut inv = [0f32; ROWS_WIDE];
        for block in (0..tokens).step_by(ROWS_WIDE) {
            // SAFETY (whole block): q has `queries` ≥ block + ROWS_WIDE rows of d, kt d rows of
            // `keys` (a multiple of 16, = last + 16), p ROWS_WIDE rows of `keys`, v `tokens`
            // rows of d (a multiple of 16); every offset below stays inside them.
            unsafe {
                let q = s.q.as_ptr().add(block * d);
                let kt = s.kt.as_ptr();
                let p = s.p.as_mut_ptr();
                let rows: [*mut f32; ROWS_WIDE] = std::array::from_fn(|r| p.add(r * keys));
                // Scores, and each row's running maximum over the real keys.
                let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); ROWS_WIDE];
                for c in (0..=last).step_by(16) {
                    let mut acc = [_mm512_setzero_ps(); ROWS_WIDE];
                    for i in 0..d {
                        let k = _mm512_loadu_ps(kt.add(i * keys + c));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(_mm512_set1_ps(*q.add(r * d + i)), k, *acc);
                        }
                    }
                    let valid = if c == last { tail } else { 0xffff };
                    for r in 0..ROWS_WIDE {
                        let x = _mm512_mul_ps(acc[r], scale);
                        _mm512_storeu_ps(rows[r].add(c), x);
                        // Masked lanes keep `max` (the second operand, so a NaN score still
                        // poisons its row's maximum as in the other kernels).
                        max[r] = _mm512_mask_max_ps(max[r], valid, max[r], x);
                    }
                }
                // Softmax numerators and their sum, over the real keys only.
                for r in 0..ROWS_WIDE {
                    let m = _mm512_set1_ps(_mm512_reduce_max_ps(max[r]));
                    let mut sum = _mm512_setzero_ps();
                    for c in (0..=last).step_by(16) {
                        let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(rows[r].add(c)), m));
                        _mm512_storeu_ps(rows[r].add(c), e);
                        let valid = if c == last { tail } else { 0xffff };
                        sum = _mm512_mask_add_ps(sum, valid, sum, e);
                    }
                    inv[r] = 1.0 / _mm512_reduce_add_ps(sum);
                }
                let v = s.v.as_ptr();
                for dc in (0..d).step_by(16) {
                    let mut acc = [_mm512_setzero_ps(); ROWS_WIDE];
                    for j in 0..tokens {
                        let vj = _mm512_loadu_ps(v.add(j * d + dc));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(_mm512_set1_ps(*rows[r].add(j)), vj, *acc);
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        let t = block + r;
                        if t < tokens {
                            let o = out.head_row(a, b * tokens + t, h).as_mut_ptr().add(dc);
                            _mm512_storeu_ps(o, _mm512_mul_ps(*acc, _mm512_set1_ps(inv[r])));
                        }
                    }
                }
            }
        }
    }
}
