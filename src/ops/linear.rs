//! The int8 model's linear layers: `acc = x · W` with x int8 activations `[.., M, K]`, W int8
//! weights `[K, N]` (a constant) and i32 accumulators `[.., M, N]`, i.e. ONNX MatMulInteger
//! with zero points 0 (the form the int8 model is exported in; tract types it as a quantised
//! EinSum with zero points 0 and scales 1).
//!
//! tract runs these as an activation-packing op and a matrix product on its own packed
//! layout. This op needs no activation packing: the weights are packed once, at load, in
//! panels of columns, four bytes of K per column together, and each kernel multiplies them by
//! four bytes of an activation row broadcast straight from the row:
//! - x86-64 with AVX-512 VNNI: `vpdpbusd` (unsigned × signed bytes), on weights stored as
//!   `w + 128`; the shift is taken back with each row's sum, `Σ x·(w + 128) = Σ x·w + 128·Σ x`;
//! - x86-64 with AVX-VNNI only (Alder Lake and later cores without AVX-512): the same
//!   instruction on 256-bit vectors, the panel taken in four strips of 16 columns;
//! - aarch64 with the dot product extension (ARMv8.2+): `sdot` (signed × signed);
//! - other aarch64 (ARMv8.0): `smull` and `sadalp` (products to 16 bits, pairs added into
//!   32), and a pairwise add at the end;
//! - armv7 with NEON: the same `vmull.s8` / `vpadal.s16` in inline assembly (Rust has not
//!   stabilised the 32-bit ARM NEON intrinsics, nor its vector types, so one `asm!` block runs a
//!   row through a whole panel), one row at a time, where the auxiliary vector says NEON.
//!
//! Integer sums are exact, so every kernel gives tract's result bit for bit (src/ops/tests.rs;
//! the ARM kernels under qemu, cross/test.sh). The op is swapped in only where one of these
//! kernels exists ([`LinearI8::available`]); elsewhere (x86-64 without VNNI, armv7 without
//! NEON) tract's products stay. Plain AVX2 has no exact byte
//! product that beats its fp32 FMA: `vpmaddubsw` saturates its 16-bit pair sums (up to
//! 255·127·2, over 2^15), and widening to `vpmaddwd` does 16 multiply-adds an instruction,
//! as many as an fp32 FMA, so the shipped default there is the fp32 model (src/defaults.rs).
//! On x86-64 the VNNI kernels are measured against tract's (BENCHMARKS.md, and `cargo bench
//! --bench encoder -- linear_i8` for each kernel alone); on ARM boards `usq bench
//! --tract-ops-only` measures the difference.

use super::gelu::DequantizeGeluQuantizeI8;
use super::workers::{Disjoint, Workers};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Columns per panel of packed weights: four vectors (of 16 columns with AVX-512, of 4 with
/// NEON).
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
const PANEL: usize = 64;
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const PANEL: usize = 16;
/// What the packed weights add to each weight: VNNI's weight operand is unsigned.
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
const SHIFT: i16 = 128;
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const SHIFT: i16 = 0;

#[derive(Debug, Clone)]
pub struct LinearI8 {
    k: usize,
    n: usize,
    /// The weights as given, `[K, N]` row-major: what the portable kernel reads.
    weights: Arc<Vec<i8>>,
    /// `w + SHIFT` as bytes, by panel of PANEL columns (N padded with zero weights), then by
    /// group of four rows of K, then PANEL columns × 4 bytes: one vector operand per quarter of
    /// the panel. (Unread where only the portable kernel exists.)
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")), allow(dead_code))]
    packed: Arc<Vec<u8>>,
    /// What becomes of each block of rows' sums before they are stored.
    epilogue: Epilogue,
}

/// What the op does with the sums of a block of rows while they are in cache: store them, or
/// run the op that followed it in the graph on them (the same code, so the same bits).
#[derive(Debug, Clone)]
pub enum Epilogue {
    /// The i32 sums.
    None,
    /// [`super::dequantize::DequantizeI32`]: `sum · scale + bias` per column, f32 out.
    Dequantize { scale: Arc<Vec<f32>>, bias: Arc<Vec<f32>> },
    /// That, then the residual stream the block adds it to (the op's second input, of the
    /// output's shape): tract's Add after the attention's and the MLP's output projections.
    DequantizeResidual { scale: Arc<Vec<f32>>, bias: Arc<Vec<f32>> },
    /// [`super::gelu::DequantizeGeluQuantizeI8`]: that, GELU and fc2's quantisation, i8 out.
    DequantizeGeluQuantize { scale: Arc<Vec<f32>>, bias: Arc<Vec<f32>>, gelu: DequantizeGeluQuantizeI8 },
}

impl Epilogue {
    fn datum_type(&self) -> DatumType {
        match self {
            Epilogue::None => DatumType::I32,
            Epilogue::Dequantize { .. } | Epilogue::DequantizeResidual { .. } => DatumType::F32,
            Epilogue::DequantizeGeluQuantize { .. } => DatumType::I8,
        }
    }

    /// The op's inputs: the activations, and the residual stream when it adds one.
    fn inputs(&self) -> usize {
        if matches!(self, Epilogue::DequantizeResidual { .. }) { 2 } else { 1 }
    }

    /// A comparable, hashable form: the variant, its constants' bits.
    fn key(&self) -> (u8, Vec<u32>) {
        fn bits(parts: &[&[f32]]) -> Vec<u32> {
            parts.iter().flat_map(|v| v.iter().map(|x| x.to_bits())).collect()
        }
        match self {
            Epilogue::None => (0, vec![]),
            Epilogue::Dequantize { scale, bias } => (1, bits(&[scale, bias])),
            Epilogue::DequantizeResidual { scale, bias } => (3, bits(&[scale, bias])),
            Epilogue::DequantizeGeluQuantize { scale, bias, gelu } => {
                let q = gelu.0;
                (2, bits(&[scale, bias, &[q.mul, q.add, q.sub, q.lo, q.hi]]))
            }
        }
    }
}

impl PartialEq for LinearI8 {
    fn eq(&self, other: &Self) -> bool {
        (self.k, self.n) == (other.k, other.n)
            && self.weights == other.weights
            && self.epilogue.key() == other.epilogue.key()
    }
}

impl Eq for LinearI8 {}

impl std::hash::Hash for LinearI8 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.k, self.n, &*self.weights, self.epilogue.key()).hash(state)
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
    /// The ARMv8.0 kernel even where the CPU has the dot product (tests).
    #[cfg(target_arch = "aarch64")]
    #[cfg_attr(not(test), allow(dead_code))]
    NeonV80,
    /// The 256-bit VNNI kernel even where the CPU has the 512-bit one: its AVX-512VL encoding
    /// (tests; the AVX-VNNI encoding runs the same body where only that exists).
    #[cfg(target_arch = "x86_64")]
    #[cfg_attr(not(test), allow(dead_code))]
    Ymm,
}

impl Kernel {
    /// The kernel that runs for this choice on this CPU, as `usq bench --profile` names it.
    pub fn name(self) -> &'static str {
        Path::of(self).name()
    }

    /// The kernels this CPU has that run only when asked for (tests, benches): the ARMv8.0
    /// kernel beside the dot product, the 256-bit VNNI body beside the 512-bit one.
    #[cfg(target_arch = "x86_64")]
    pub fn on_request() -> Vec<Kernel> {
        match [Kernel::Auto.name(), Kernel::Portable.name()].contains(&Kernel::Ymm.name()) {
            true => vec![],
            false => vec![Kernel::Ymm],
        }
    }

    /// As on x86-64: the ARMv8.0 kernel.
    #[cfg(target_arch = "aarch64")]
    pub fn on_request() -> Vec<Kernel> {
        vec![Kernel::NeonV80]
    }

    /// As on x86-64: none here.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn on_request() -> Vec<Kernel> {
        vec![]
    }
}

/// The kernel that runs, and the rows of its tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// AVX-VNNI (VEX, 256 bits): Alder Lake and later cores without AVX-512.
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// The same 256-bit body with AVX-512VL's encoding of the instruction.
    #[cfg(target_arch = "x86_64")]
    YmmEvex,
    #[cfg(target_arch = "aarch64")]
    Dot,
    #[cfg(target_arch = "aarch64")]
    NeonV80,
    /// armv7 with NEON.
    #[cfg(target_arch = "arm")]
    Armv7Neon,
}

impl Path {
    fn of(kernel: Kernel) -> Path {
        match kernel {
            Kernel::Portable => Path::Portable,
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonV80 => Path::NeonV80,
            #[cfg(target_arch = "x86_64")]
            Kernel::Ymm => {
                if ymm::avx_vnni() {
                    Path::AvxVnni
                } else if ymm::evex() {
                    Path::YmmEvex
                } else {
                    Path::Portable
                }
            }
            Kernel::Auto => {
                #[cfg(target_arch = "x86_64")]
                if vnni::available() {
                    return Path::Vnni;
                }
                #[cfg(target_arch = "x86_64")]
                if ymm::avx_vnni() {
                    return Path::AvxVnni;
                }
                #[cfg(target_arch = "aarch64")]
                return if std::arch::is_aarch64_feature_detected!("dotprod") { Path::Dot } else { Path::NeonV80 };
                #[cfg(target_arch = "arm")]
                if armv7::neon() {
                    return Path::Armv7Neon;
                }
                #[allow(unreachable_code)]
                Path::Portable
            }
        }
    }

    /// How `usq bench --profile` names it, beside tract's kernels.
    fn name(self) -> &'static str {
        match self {
            Path::Portable => "usq_portable_i8",
            #[cfg(target_arch = "x86_64")]
            Path::Vnni => "usq_avx512vnni_i8_6x64",
            #[cfg(target_arch = "x86_64")]
            Path::AvxVnni => "usq_avxvnni_i8_6x16",
            #[cfg(target_arch = "x86_64")]
            Path::YmmEvex => "usq_avx512vl_vnni_i8_6x16",
            #[cfg(target_arch = "aarch64")]
            Path::Dot => "usq_arm64_sdot_i8_6x16",
            #[cfg(target_arch = "aarch64")]
            Path::NeonV80 => "usq_arm64_smull_i8_3x16",
            #[cfg(target_arch = "arm")]
            Path::Armv7Neon => "usq_armv7neon_smull_i8_1x16",
        }
    }

    /// Activation rows per tile: as many as the accumulators fit in the vector registers.
    fn rows(self) -> usize {
        match self {
            Path::Portable => 6,
            #[cfg(target_arch = "x86_64")]
            Path::Vnni => 6, // 6 × 4 vectors of 32
            #[cfg(target_arch = "x86_64")]
            Path::AvxVnni | Path::YmmEvex => 6, // 6 × 2 vectors of 8 (of 16 registers)
            #[cfg(target_arch = "aarch64")]
            Path::Dot => 6, // 6 × 4 vectors of 32
            #[cfg(target_arch = "aarch64")]
            Path::NeonV80 => 3, // 3 × 4 × 2 halves
            // 4 × 2 halves of one row take 8 of the 16 q registers; the weights 4, the products 2.
            #[cfg(target_arch = "arm")]
            Path::Armv7Neon => 1,
        }
    }
}

impl LinearI8 {
    /// The op for weights `[K, N]`. K must be a multiple of 4 (VNNI's groups of four bytes).
    pub fn new(weights: &[i8], k: usize, n: usize) -> TractResult<LinearI8> {
        ensure!(weights.len() == k * n && k > 0 && n > 0, "UsqLinearI8: {} weights for [{k}, {n}]", weights.len());
        ensure!(k.is_multiple_of(4), "UsqLinearI8: K = {k} is not a multiple of 4");
        let panels = n.div_ceil(PANEL);
        // Padding columns get w = 0 (SHIFT once shifted); their sums are never stored.
        let mut packed = vec![SHIFT as u8; panels * k * PANEL];
        for kk in 0..k {
            for col in 0..n {
                let (p, c) = (col / PANEL, col % PANEL);
                let at = (p * (k / 4) + kk / 4) * PANEL * 4 + c * 4 + kk % 4;
                packed[at] = (weights[kk * n + col] as i16 + SHIFT) as u8;
            }
        }
        Ok(LinearI8 { k, n, weights: Arc::new(weights.to_vec()), packed: Arc::new(packed), epilogue: Epilogue::None })
    }

    /// The same op with `epilogue` run on its sums: scale and bias one value or one per column.
    pub fn with_epilogue(&self, epilogue: Epilogue) -> TractResult<LinearI8> {
        if let Epilogue::Dequantize { scale, bias }
        | Epilogue::DequantizeResidual { scale, bias }
        | Epilogue::DequantizeGeluQuantize { scale, bias, .. } = &epilogue
        {
            ensure!(
                scale.len() == self.n && bias.len() == self.n,
                "UsqLinearI8: epilogue operands for {} columns",
                self.n
            );
        }
        Ok(LinearI8 { epilogue, ..self.clone() })
    }

    pub fn epilogue(&self) -> &Epilogue {
        &self.epilogue
    }

    /// N: the columns of W, and of the output.
    pub fn columns(&self) -> usize {
        self.n
    }

    /// Whether this CPU has a kernel of this op's own (it is only swapped in then).
    pub fn available() -> bool {
        Path::of(Kernel::Auto) != Path::Portable
    }

    /// `out[r] = x[r] · W` for the `rows` rows of `x` (each K long); `out` is rows × N.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn run(&self, kernel: Kernel, x: &[i8], out: &mut [i32], workers: &Workers) {
        assert!(matches!(self.epilogue, Epilogue::None), "UsqLinearI8::run stores the sums themselves");
        self.run_into(kernel, x, None, Output::I32(Disjoint::new(out)), workers)
    }

    /// As [`LinearI8::run`], through the epilogue into `out` of its type; `residual` (as long
    /// as `out`) is what [`Epilogue::DequantizeResidual`] adds, and only it.
    pub fn run_into(&self, kernel: Kernel, x: &[i8], residual: Option<&[f32]>, out: Output<'_>, workers: &Workers) {
        let rows = x.len() / self.k;
        assert!(x.len() == rows * self.k && out.len() == rows * self.n);
        assert!(out.datum_type() == self.epilogue.datum_type(), "UsqLinearI8: output type");
        assert!(
            residual.map(|r| r.len()) == (self.epilogue.inputs() == 2).then_some(out.len()),
            "UsqLinearI8: residual stream"
        );
        let path = Path::of(kernel);
        let tile = path.rows();
        let blocks = rows.div_ceil(tile);
        // Worker `w` of `n` takes row blocks w, w + n, ...: disjoint rows of the output.
        let work = |w: usize, n: usize| {
            // The block's sums, when an epilogue reads them before anything is stored.
            let mut sums = match self.epilogue {
                Epilogue::None => vec![],
                _ => vec![0i32; tile * self.n],
            };
            for block in (w..blocks).step_by(n) {
                let (first, count) = (block * tile, tile.min(rows - block * tile));
                let x = &x[first * self.k..][..count * self.k];
                let (start, len) = (first * self.n, count * self.n);
                let acc: &mut [i32] = match (&self.epilogue, &out) {
                    (Epilogue::None, Output::I32(o)) => o.range(start, len),
                    _ => &mut sums[..len],
                };
                // SAFETY (each kernel): Path::of checked the CPU's features.
                match path {
                    #[cfg(target_arch = "x86_64")]
                    Path::Vnni => unsafe { vnni::tile(self, x, count, acc) },
                    #[cfg(target_arch = "x86_64")]
                    Path::AvxVnni => unsafe { ymm::tile_avx_vnni(self, x, count, acc) },
                    #[cfg(target_arch = "x86_64")]
                    Path::YmmEvex => unsafe { ymm::tile_evex(self, x, count, acc) },
                    #[cfg(target_arch = "aarch64")]
                    Path::Dot => unsafe { neon::tile_dot(self, x, count, acc) },
                    #[cfg(target_arch = "aarch64")]
                    Path::NeonV80 => unsafe { neon::tile_v80(self, x, count, acc) },
                    #[cfg(target_arch = "arm")]
                    Path::Armv7Neon => unsafe { armv7::tile(self, x, count, acc) },
                    Path::Portable => portable(self, x, acc),
                }
                match (&self.epilogue, &out) {
                    (Epilogue::Dequantize { scale, bias }, Output::F32(o)) => {
                        super::dequantize::rows_of(acc, scale, bias, o.range(start, len))
                    }
                    (Epilogue::DequantizeResidual { scale, bias }, Output::F32(o)) => {
                        let residual = &residual.unwrap_or_default()[start..][..len];
                        super::dequantize::rows_plus_residual(acc, scale, bias, residual, o.range(start, len))
                    }
                    (Epilogue::DequantizeGeluQuantize { scale, bias, gelu }, Output::I8(o)) => {
                        gelu.rows_of(acc, scale, bias, o.range(start, len))
                    }
                    _ => {}
                }
            }
        };
        workers.run(blocks, &work);
    }
}

/// Where an int8 linear op's results go: one of the epilogues' types, shared by the workers,
/// each through its own rows.
pub enum Output<'a> {
    I32(Disjoint<'a, i32>),
    F32(Disjoint<'a, f32>),
    I8(Disjoint<'a, i8>),
}

impl Output<'_> {
    fn len(&self) -> usize {
        match self {
            Output::I32(o) => o.len(),
            Output::F32(o) => o.len(),
            Output::I8(o) => o.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Output::I32(_) => DatumType::I32,
            Output::F32(_) => DatumType::F32,
            Output::I8(_) => DatumType::I8,
        }
    }
}

fn portable(op: &LinearI8, x: &[i8], out: &mut [i32]) {
    for (row, out) in x.chunks_exact(op.k).zip(out.chunks_exact_mut(op.n)) {
        out.fill(0);
        for (&xk, w) in row.iter().zip(op.weights.chunks_exact(op.n)) {
            for (o, &wk) in out.iter_mut().zip(w) {
                *o += xk as i32 * wk as i32;
            }
        }
    }
}

/// `128 · Σ x` of each of the R rows of `x` (K long): what the x86 kernels take back from
/// their sums for the weights' `+ 128` (inlined into each kernel, so vectorised for its CPU).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn shifts<const R: usize>(x: &[i8], k: usize) -> [i32; R] {
    std::array::from_fn(|r| 128 * x[r * k..(r + 1) * k].iter().map(|&v| v as i32).sum::<i32>())
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }

    /// Up to 6 rows of `x` times all of W into `out` (count × N).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile(op: &LinearI8, x: &[i8], count: usize, out: &mut [i32]) {
        // SAFETY: the caller's; the bodies below check their own bounds.
        unsafe {
            match count {
                6 => body::<6>(op, x, out),
                5 => body::<5>(op, x, out),
                4 => body::<4>(op, x, out),
                3 => body::<3>(op, x, out),
                2 => body::<2>(op, x, out),
                _ => body::<1>(op, x, out),
            }
        }
    }

    #[inline(always)]
    unsafe fn body<const R: usize>(op: &LinearI8, x: &[i8], out: &mut [i32]) {
        let (k, n) = (op.k, op.n);
        assert!(x.len() >= R * k && out.len() >= R * n);
        let groups = k / 4;
        let packed = op.packed.as_ptr();
        let shift = shifts::<R>(x, k);
        // SAFETY: this CPU has AVX-512F/BW and VNNI (the caller's); every read below is inside
        // x (R rows of K, in groups of 4 bytes) or `packed` (panels × groups × 256 bytes), and
        // every write inside `out` (R rows of N, the last panel's columns masked to N).
        unsafe {
            for p in 0..n.div_ceil(PANEL) {
                let mut acc = [[_mm512_setzero_si512(); 4]; R];
                let mut w = packed.add(p * groups * PANEL * 4);
                for g in 0..groups {
                    let w0 = _mm512_loadu_si512(w.cast());
                    let w1 = _mm512_loadu_si512(w.add(64).cast());
                    let w2 = _mm512_loadu_si512(w.add(128).cast());
                    let w3 = _mm512_loadu_si512(w.add(192).cast());
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xr = _mm512_set1_epi32(x.as_ptr().add(r * k + 4 * g).cast::<i32>().read_unaligned());
                        acc[0] = _mm512_dpbusd_epi32(acc[0], w0, xr);
                        acc[1] = _mm512_dpbusd_epi32(acc[1], w1, xr);
                        acc[2] = _mm512_dpbusd_epi32(acc[2], w2, xr);
                        acc[3] = _mm512_dpbusd_epi32(acc[3], w3, xr);
                    }
                    w = w.add(PANEL * 4);
                }
                for (r, acc) in acc.iter().enumerate() {
                    let s = _mm512_set1_epi32(shift[r]);
                    for (v, &a) in acc.iter().enumerate() {
                        let col = p * PANEL + v * 16;
                        if col >= n {
                            break;
                        }
                        let lanes = (n - col).min(16);
                        let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
                        _mm512_mask_storeu_epi32(
                            out.as_mut_ptr().add(r * n + col).cast(),
                            mask,
                            _mm512_sub_epi32(a, s),
                        );
                    }
                }
            }
        }
    }
}

/// The 256-bit VNNI kernels: the 512-bit kernel's packed panels of 64 columns, taken in four
/// strips of 16 (two vectors of 8 columns × 4 bytes), so that 6 rows × 2 accumulators, the two
/// weight vectors and the broadcast row fit the 16 registers. One body, two encodings of
/// `vpdpbusd`: AVX-VNNI (VEX) where that is all the CPU has, AVX-512VL (EVEX) for testing the
/// body on CPUs with AVX-512.
#[cfg(target_arch = "x86_64")]
mod ymm {
    use super::*;
    use std::arch::x86_64::*;

    pub fn avx_vnni() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni")
    }

    pub fn evex() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    }

    /// One encoding of `acc += Σ` of four u8 × i8 products per 32-bit lane.
    trait Dot {
        unsafe fn dot(acc: __m256i, w: __m256i, x: __m256i) -> __m256i;
    }

    struct Vex;
    impl Dot for Vex {
        #[inline(always)]
        unsafe fn dot(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
            // SAFETY: the caller's: this CPU has AVX-VNNI.
            unsafe { _mm256_dpbusd_avx_epi32(acc, w, x) }
        }
    }

    struct Evex;
    impl Dot for Evex {
        #[inline(always)]
        unsafe fn dot(acc: __m256i, w: __m256i, x: __m256i) -> __m256i {
            // SAFETY: the caller's: this CPU has AVX-512VL and VNNI.
            unsafe { _mm256_dpbusd_epi32(acc, w, x) }
        }
    }

    /// Up to 6 rows of `x` times all of W into `out` (count × N), with AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn tile_avx_vnni(op: &LinearI8, x: &[i8], count: usize, out: &mut [i32]) {
        // SAFETY: the caller's; the bodies check their own bounds.
        unsafe { rows::<Vex>(op, x, count, out) }
    }

    /// As [`tile_avx_vnni`], with AVX-512VL's encoding.
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn tile_evex(op: &LinearI8, x: &[i8], count: usize, out: &mut [i32]) {
        // SAFETY: the caller's; the bodies check their own bounds.
        unsafe { rows::<Evex>(op, x, count, out) }
    }

    #[inline(always)]
    unsafe fn rows<D: Dot>(op: &LinearI8, x: &[i8], count: usize, out: &mut [i32]) {
        // SAFETY: the caller's.
        unsafe {
            match count {
                6 => body::<D, 6>(op, x, out),
                5 => body::<D, 5>(op, x, out),
                4 => body::<D, 4>(op, x, out),
                3 => body::<D, 3>(op, x, out),
                2 => body::<D, 2>(op, x, out),
                _ => body::<D, 1>(op, x, out),
            }
        }
    }

    #[inline(always)]
    unsafe fn body<D: Dot, const R: usize>(op: &LinearI8, x: &[i8], out: &mut [i32]) {
        const STRIP: usize = 16;
        let (k, n) = (op.k, op.n);
        assert!(x.len() >= R * k && out.len() >= R * n);
        let groups = k / 4;
        let packed = op.packed.as_ptr();
        let shift = shifts::<R>(x, k);
        // SAFETY: this CPU has what D's instruction needs (the caller's); every read below is
        // inside x (R rows of K, in groups of 4 bytes) or `packed` (panels × groups × 256 bytes,
        // a strip being 64 of each group's 256), and every write inside `out` (R rows of N, the
        // columns past N masked off).
        unsafe {
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            for first in (0..n).step_by(STRIP) {
                let (p, strip) = (first / PANEL, first % PANEL / STRIP);
                let mut acc = [[_mm256_setzero_si256(); 2]; R];
                let mut w = packed.add(p * groups * PANEL * 4 + strip * STRIP * 4);
                for g in 0..groups {
                    let w0 = _mm256_loadu_si256(w.cast());
                    let w1 = _mm256_loadu_si256(w.add(32).cast());
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xr = _mm256_set1_epi32(x.as_ptr().add(r * k + 4 * g).cast::<i32>().read_unaligned());
                        acc[0] = D::dot(acc[0], w0, xr);
                        acc[1] = D::dot(acc[1], w1, xr);
                    }
                    w = w.add(PANEL * 4);
                }
                for (r, acc) in acc.iter().enumerate() {
                    let s = _mm256_set1_epi32(shift[r]);
                    for (v, &a) in acc.iter().enumerate() {
                        let col = first + v * 8;
                        if col >= n {
                            break;
                        }
                        let dst = out.as_mut_ptr().add(r * n + col);
                        let sums = _mm256_sub_epi32(a, s);
                        if n - col >= 8 {
                            _mm256_storeu_si256(dst.cast(), sums);
                        } else {
                            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((n - col) as i32), lane);
                            _mm256_maskstore_epi32(dst, mask, sums);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::*;
    use std::arch::aarch64::*;

    /// Stores the first `lanes` (1 to 4) of `v` at `dst`.
    #[inline(always)]
    unsafe fn store(dst: *mut i32, v: int32x4_t, lanes: usize) {
        // SAFETY: the caller's: `dst` has room for `lanes` values.
        unsafe {
            if lanes == 4 {
                vst1q_s32(dst, v);
            } else {
                let mut t = [0i32; 4];
                vst1q_s32(t.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(t.as_ptr(), dst, lanes);
            }
        }
    }

    /// `acc += Σ` of the four byte products in each 32-bit lane (SDOT; Rust has not stabilised
    /// its intrinsic, so one instruction of inline assembly).
    #[inline(always)]
    unsafe fn sdot(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        // SAFETY: the caller's: this CPU has the dot product extension.
        unsafe {
            std::arch::asm!(
                "sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
                acc = inout(vreg) acc, w = in(vreg) w, x = in(vreg) x,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    /// Up to 6 rows of `x` times all of W into `out` (count × N), with SDOT.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn tile_dot(op: &LinearI8, x: &[i8], count: usize, out: &mut [i32]) {
        // SAFETY: the caller's; the bodies check their own bounds.
        unsafe {
            match count {
                6 => dot::<6>(op, x, out),
                5 => dot::<5>(op, x, out),
                4 => dot::<4>(op, x, out),
                3 => dot::<3>(op, x, out),
                2 => dot::<2>(op, x, out),
                _ => dot::<1>(op, x, out),
            }
        }
    }

    #[inline(always)]
    unsafe fn dot<const R: usize>(op: &LinearI8, x: &[i8], out: &mut [i32]) {
        let (k, n) = (op.k, op.n);
        assert!(x.len() >= R * k && out.len() >= R * n);
        let groups = k / 4;
        // SAFETY: reads inside x (R rows of K, 4 bytes at a time) and `packed` (panels × groups
        // × 64 bytes); writes inside `out` (R rows of N, the last columns stored lane by lane).
        unsafe {
            for p in 0..n.div_ceil(PANEL) {
                let mut acc = [[vdupq_n_s32(0); 4]; R];
                let mut w = op.packed.as_ptr().add(p * groups * PANEL * 4).cast::<i8>();
                for g in 0..groups {
                    let wv = [vld1q_s8(w), vld1q_s8(w.add(16)), vld1q_s8(w.add(32)), vld1q_s8(w.add(48))];
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xr = vreinterpretq_s8_s32(vld1q_dup_s32(x.as_ptr().add(r * k + 4 * g).cast()));
                        for (a, &wv) in acc.iter_mut().zip(&wv) {
                            *a = sdot(*a, wv, xr);
                        }
                    }
                    w = w.add(PANEL * 4);
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (v, &a) in acc.iter().enumerate() {
                        let col = p * PANEL + v * 4;
                        if col >= n {
                            break;
                        }
                        store(out.as_mut_ptr().add(r * n + col), a, (n - col).min(4));
                    }
                }
            }
        }
    }

    /// Up to 3 rows of `x` times all of W into `out` (count × N), with SMULL/SADALP (ARMv8.0).
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn tile_v80(op: &LinearI8, x: &[i8], count: usize, out: &mut [i32]) {
        // SAFETY: the caller's; the bodies check their own bounds.
        unsafe {
            match count {
                3 => v80::<3>(op, x, out),
                2 => v80::<2>(op, x, out),
                _ => v80::<1>(op, x, out),
            }
        }
    }

    #[inline(always)]
    unsafe fn v80<const R: usize>(op: &LinearI8, x: &[i8], out: &mut [i32]) {
        let (k, n) = (op.k, op.n);
        assert!(x.len() >= R * k && out.len() >= R * n);
        let groups = k / 4;
        // SAFETY: as in `dot`.
        unsafe {
            for p in 0..n.div_ceil(PANEL) {
                // Per row and vector of 4 columns: lanes (c0: k0+k1, c0: k2+k3, c1: …) for
                // columns 0-1 and the same for 2-3; a pairwise add makes the 4 sums at the end.
                let mut lo = [[vdupq_n_s32(0); 4]; R];
                let mut hi = [[vdupq_n_s32(0); 4]; R];
                let mut w = op.packed.as_ptr().add(p * groups * PANEL * 4).cast::<i8>();
                for g in 0..groups {
                    let wv = [vld1q_s8(w), vld1q_s8(w.add(16)), vld1q_s8(w.add(32)), vld1q_s8(w.add(48))];
                    for r in 0..R {
                        let xr = vreinterpretq_s8_s32(vld1q_dup_s32(x.as_ptr().add(r * k + 4 * g).cast()));
                        for (v, &wv) in wv.iter().enumerate() {
                            // |products| ≤ 128·128 = 2^14: exact in 16 bits.
                            lo[r][v] = vpadalq_s16(lo[r][v], vmull_s8(vget_low_s8(wv), vget_low_s8(xr)));
                            hi[r][v] = vpadalq_s16(hi[r][v], vmull_high_s8(wv, xr));
                        }
                    }
                    w = w.add(PANEL * 4);
                }
                for r in 0..R {
                    for v in 0..4 {
                        let col = p * PANEL + v * 4;
                        if col >= n {
                            break;
                        }
                        store(out.as_mut_ptr().add(r * n + col), vpaddq_s32(lo[r][v], hi[r][v]), (n - col).min(4));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "arm")]
mod armv7 {
    use super::*;

    /// Whether the CPU has NEON, from the kernel's auxiliary vector (`HWCAP_NEON`): the
    /// armv7 target does not assume it, and std's detection macro for 32-bit ARM is unstable.
    pub fn neon() -> bool {
        const HWCAP_NEON: libc::c_ulong = 1 << 12;
        static NEON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        // SAFETY: getauxval has no preconditions.
        *NEON.get_or_init(|| unsafe { libc::getauxval(libc::AT_HWCAP) } & HWCAP_NEON != 0)
    }

    /// `count` (1) row of `x` times all of W into `out` (N long).
    ///
    /// # Safety
    /// The CPU has NEON ([`neon`]).
    pub(super) unsafe fn tile(op: &LinearI8, x: &[i8], count: usize, out: &mut [i32]) {
        let (k, n) = (op.k, op.n);
        assert!(count == 1 && x.len() >= k && out.len() >= n && k >= 4);
        let groups = k / 4;
        let mut sums = [0i32; PANEL];
        for p in 0..n.div_ceil(PANEL) {
            // SAFETY: the panel holds `groups` × 64 bytes; x holds K = 4 × groups bytes; `sums`
            // holds the 16 values stored; NEON: the caller's.
            unsafe { row_panel(op.packed.as_ptr().add(p * groups * PANEL * 4), x.as_ptr(), groups, sums.as_mut_ptr()) };
            let col = p * PANEL;
            let len = (n - col).min(PANEL);
            out[col..col + len].copy_from_slice(&sums[..len]);
        }
    }

    /// The 16 column sums of one panel for one row: per group of four bytes of K, the four
    /// bytes of x broadcast (`vld1.32 {d0[]}`), times the panel's 64 weight bytes with
    /// `vmull.s8` (|products| ≤ 2^14, exact in 16 bits), pairs added into 32-bit lanes with
    /// `vpadal.s16` (q8-q15: columns 0-1 and 2-3 of each vector of four columns); at the end a
    /// pairwise add gives the four column sums of each vector, as the aarch64 ARMv8.0 kernel.
    ///
    /// # Safety
    /// NEON; `w` has `groups` × 64 bytes, `x` 4 × `groups` (any alignment), `out` 16 values;
    /// `groups` ≥ 1.
    unsafe fn row_panel(w: *const u8, x: *const i8, groups: usize, out: *mut i32) {
        // d8-d15 are callee-saved (AAPCS), so the block saves them; d16-d31 exist only with
        // NEON, which the compiler (armv7 without it) never allocates, and are caller-saved.
        unsafe {
            std::arch::asm!(
                ".fpu neon",
                "vpush {{d8-d15}}",
                "vmov.i32 q8, #0",
                "vmov.i32 q9, #0",
                "vmov.i32 q10, #0",
                "vmov.i32 q11, #0",
                "vmov.i32 q12, #0",
                "vmov.i32 q13, #0",
                "vmov.i32 q14, #0",
                "vmov.i32 q15, #0",
                "2:",
                "vld1.32 {{d0[]}}, [{x}]!",
                "vld1.8 {{d2-d5}}, [{w}]!",
                "vld1.8 {{d6-d9}}, [{w}]!",
                "vmull.s8 q5, d2, d0",
                "vmull.s8 q6, d3, d0",
                "vpadal.s16 q8, q5",
                "vpadal.s16 q9, q6",
                "vmull.s8 q5, d4, d0",
                "vmull.s8 q6, d5, d0",
                "vpadal.s16 q10, q5",
                "vpadal.s16 q11, q6",
                "vmull.s8 q5, d6, d0",
                "vmull.s8 q6, d7, d0",
                "vpadal.s16 q12, q5",
                "vpadal.s16 q13, q6",
                "vmull.s8 q5, d8, d0",
                "vmull.s8 q6, d9, d0",
                "vpadal.s16 q14, q5",
                "vpadal.s16 q15, q6",
                "subs {g}, {g}, #1",
                "bne 2b",
                "vpadd.i32 d0, d16, d17",
                "vpadd.i32 d1, d18, d19",
                "vpadd.i32 d2, d20, d21",
                "vpadd.i32 d3, d22, d23",
                "vpadd.i32 d4, d24, d25",
                "vpadd.i32 d5, d26, d27",
                "vpadd.i32 d6, d28, d29",
                "vpadd.i32 d7, d30, d31",
                "vst1.32 {{d0-d3}}, [{o}]!",
                "vst1.32 {{d4-d7}}, [{o}]",
                "vpop {{d8-d15}}",
                x = inout(reg) x => _,
                w = inout(reg) w => _,
                g = inout(reg) groups => _,
                o = inout(reg) out => _,
                out("d0") _, out("d1") _, out("d2") _, out("d3") _,
                out("d4") _, out("d5") _, out("d6") _, out("d7") _,
            );
        }
    }
}

impl Op for LinearI8 {
    fn name(&self) -> StaticName {
        "UsqLinearI8".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let epilogue = match self.epilogue {
            Epilogue::None => "",
            Epilogue::Dequantize { .. } => ", then dequantised",
            Epilogue::DequantizeResidual { .. } => ", then dequantised and added to the residual stream",
            Epilogue::DequantizeGeluQuantize { .. } => ", then dequantised, GELU, quantised",
        };
        Ok(vec![format!("[{}, {}] int8 weights{epilogue} with {}", self.k, self.n, Kernel::Auto.name())])
    }

    op_as_typed_op!();
}

impl EvalOp for LinearI8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == self.epilogue.inputs(), "UsqLinearI8: {} inputs", inputs.len());
        let x = &inputs[0];
        let out_shape = super::linear_shape("UsqLinearI8", x.shape(), self.k, self.n)?;
        if let Some(r) = inputs.get(1) {
            ensure!(r.shape() == &*out_shape, "UsqLinearI8: residual {:?}, output {out_shape:?}", r.shape());
        }
        let residual = inputs.get(1).map(|r| r.try_as_plain_ram()).transpose()?;
        let residual = residual.as_ref().map(|r| r.as_slice::<f32>()).transpose()?;
        // SAFETY: `run_into` writes every element.
        let mut out = unsafe { Tensor::uninitialized_dt(self.epilogue.datum_type(), &out_shape)? };
        {
            let src = x.try_as_plain_ram()?;
            let src = src.as_slice::<i8>()?;
            let mut dst = out.try_as_plain_ram_mut()?;
            let dst = match self.epilogue.datum_type() {
                DatumType::I32 => Output::I32(Disjoint::new(dst.as_slice_mut::<i32>()?)),
                DatumType::F32 => Output::F32(Disjoint::new(dst.as_slice_mut::<f32>()?)),
                _ => Output::I8(Disjoint::new(dst.as_slice_mut::<i8>()?)),
            };
            self.run_into(Kernel::Auto, src, residual, dst, &Workers::Current);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for LinearI8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let fact = inputs[0];
        ensure!(fact.datum_type == DatumType::I8, "UsqLinearI8 wants i8 [.., K]");
        ensure!(inputs.len() == self.epilogue.inputs(), "UsqLinearI8: {} inputs", inputs.len());
        let shape = super::linear_shape("UsqLinearI8", &fact.shape, self.k.to_dim(), self.n.to_dim())?;
        if let Some(residual) = inputs.get(1) {
            ensure!(
                residual.datum_type == DatumType::F32 && *residual.shape == *shape,
                "UsqLinearI8: residual stream {residual:?}, output {shape:?}"
            );
        }
        Ok(tvec!(self.epilogue.datum_type().fact(shape)))
    }

    as_op!();
}
