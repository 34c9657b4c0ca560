//! Resampling and patching of gray frames into encoder inputs, with OpenCV's semantics:
//! `cv2.resize(.., INTER_AREA)` for the full-reference path and `BORDER_REFLECT_101` padding
//! plus a 224-pixel patch grid for the no-reference path. Pure functions, no I/O.

use crate::contract::INPUT_SIDE;
use crate::imaging::frame::GrayFrame;

/// Stride of the NRQ patch grid (half a patch).
pub const PATCH_STRIDE: usize = 112;

/// One entry of an area-resampling table: destination index, source index, weight.
#[derive(Debug, Clone, Copy)]
struct AreaTap {
    dst: usize,
    src: usize,
    alpha: f32,
}

/// OpenCV's `computeResizeAreaTab`: which source samples each destination sample averages,
/// weighted by overlap (decimation only).
fn area_taps(src_len: usize, dst_len: usize, scale: f64) -> Vec<AreaTap> {
    let mut taps = Vec::with_capacity(src_len * 2);
    for dx in 0..dst_len {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(src_len as f64 - fsx1);
        let sx2 = (fsx2.floor() as i64).min(src_len as i64 - 1);
        let sx1 = (fsx1.ceil() as i64).min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            taps.push(AreaTap { dst: dx, src: (sx1 - 1) as usize, alpha: ((sx1 as f64 - fsx1) / cell) as f32 });
        }
        for sx in sx1..sx2 {
            taps.push(AreaTap { dst: dx, src: sx as usize, alpha: (1.0 / cell) as f32 });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            let w = (fsx2 - sx2 as f64).min(1.0).min(cell) / cell;
            taps.push(AreaTap { dst: dx, src: sx2 as usize, alpha: w as f32 });
        }
    }
    taps
}

/// Resizes a single-channel f32 image with `cv2.INTER_AREA` semantics.
///
/// OpenCV uses three paths and so does this: a plain block average when both factors are
/// integers, overlap-weighted area tables when shrinking on both axes, and, when either axis
/// grows, its bilinear variant with area-style coefficients.
pub fn resize_area(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    assert_eq!(src.len(), sw * sh, "source buffer does not match its size");
    assert!(sw > 0 && sh > 0 && dw > 0 && dh > 0, "sizes must be positive");
    if sw == dw && sh == dh {
        return src.to_vec();
    }
    let inv_scale_x = dw as f64 / sw as f64;
    let inv_scale_y = dh as f64 / sh as f64;
    let scale_x = 1.0 / inv_scale_x;
    let scale_y = 1.0 / inv_scale_y;
    if scale_x >= 1.0 && scale_y >= 1.0 {
        let ix = scale_x.round();
        let iy = scale_y.round();
        if (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON {
            return resize_area_integer(src, sw, dw, dh, ix as usize, iy as usize);
        }
        return resize_area_tables(src, sw, sh, dw, dh, scale_x, scale_y);
    }
    resize_area_upscale(src, sw, sh, dw, dh, scale_x, scale_y, inv_scale_x, inv_scale_y)
}

fn resize_area_integer(src: &[f32], sw: usize, dw: usize, dh: usize, fx: usize, fy: usize) -> Vec<f32> {
    let scale = 1.0f32 / (fx * fy) as f32;
    let offsets: Vec<usize> = (0..fy).flat_map(|y| (0..fx).map(move |x| y * sw + x)).collect();
    let mut out = vec![0f32; dw * dh];
    for dy in 0..dh {
        for dx in 0..dw {
            let base = dy * fy * sw + dx * fx;
            let mut sum = 0f32;
            // Same association as OpenCV's unrolled loop: four terms, then the tail.
            let mut chunks = offsets.chunks_exact(4);
            for c in &mut chunks {
                sum += src[base + c[0]] + src[base + c[1]] + src[base + c[2]] + src[base + c[3]];
            }
            for o in chunks.remainder() {
                sum += src[base + o];
            }
            out[dy * dw + dx] = sum * scale;
        }
    }
    out
}

fn resize_area_tables(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize, sx: f64, sy: f64) -> Vec<f32> {
    let xtab = area_taps(sw, dw, sx);
    let ytab = area_taps(sh, dh, sy);
    let mut out = vec![0f32; dw * dh];
    let mut buf = vec![0f32; dw];
    let mut sum = vec![0f32; dw];
    let mut prev_dy = ytab[0].dst;
    for t in &ytab {
        let row = &src[t.src * sw..(t.src + 1) * sw];
        buf.iter_mut().for_each(|b| *b = 0.0);
        for x in &xtab {
            buf[x.dst] += row[x.src] * x.alpha;
        }
        if t.dst != prev_dy {
            out[prev_dy * dw..(prev_dy + 1) * dw].copy_from_slice(&sum);
            for (s, b) in sum.iter_mut().zip(&buf) {
                *s = t.alpha * b;
            }
            prev_dy = t.dst;
        } else {
            for (s, b) in sum.iter_mut().zip(&buf) {
                *s += t.alpha * b;
            }
        }
    }
    out[prev_dy * dw..(prev_dy + 1) * dw].copy_from_slice(&sum);
    out
}

/// Source index and blend weight of OpenCV's area-mode bilinear coefficients on one axis.
fn upscale_coeffs(dst_len: usize, src_len: usize, scale: f64, inv_scale: f64) -> Vec<(usize, f32)> {
    (0..dst_len)
        .map(|d| {
            let mut s = (d as f64 * scale).floor() as i64;
            let f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
            let mut f = if f <= 0.0 { 0.0 } else { f - f.floor() };
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s >= src_len as i64 - 1 {
                s = src_len as i64 - 1;
                f = 0.0;
            }
            (s as usize, f)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn resize_area_upscale(
    src: &[f32],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
    scale_x: f64,
    scale_y: f64,
    inv_x: f64,
    inv_y: f64,
) -> Vec<f32> {
    let xc = upscale_coeffs(dw, sw, scale_x, inv_x);
    let yc = upscale_coeffs(dh, sh, scale_y, inv_y);
    // Horizontal pass for every source row, then a vertical blend of two rows.
    let hrow = |y: usize| -> Vec<f32> {
        let row = &src[y * sw..(y + 1) * sw];
        xc.iter().map(|&(s, f)| if s + 1 < sw { row[s] * (1.0 - f) + row[s + 1] * f } else { row[s] }).collect()
    };
    let rows: Vec<Vec<f32>> = (0..sh).map(hrow).collect();
    let mut out = vec![0f32; dw * dh];
    for (dy, &(s, f)) in yc.iter().enumerate() {
        let r0 = &rows[s];
        let r1 = &rows[(s + 1).min(sh - 1)];
        for dx in 0..dw {
            out[dy * dw + dx] = r0[dx] * (1.0 - f) + r1[dx] * f;
        }
    }
    out
}

/// The full-reference input: the whole frame, /255, area-resized to 224x224, then scaled
/// back to 0..255 because the model contract folds the /255 into the patch embedding.
pub fn ulpips_input(frame: &GrayFrame) -> Vec<f32> {
    let unit: Vec<f32> = frame.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let mut r = resize_area(&unit, frame.width, frame.height, INPUT_SIDE, INPUT_SIDE);
    r.iter_mut().for_each(|v| *v *= 255.0);
    r
}

/// OpenCV's `borderInterpolate` for `BORDER_REFLECT_101` (gfedcb|abcdefgh|gfedcba).
pub fn reflect101(mut p: i64, len: usize) -> usize {
    let len = len as i64;
    if len == 1 {
        return 0;
    }
    while p < 0 || p >= len {
        p = if p < 0 { -p } else { 2 * (len - 1) - p };
    }
    p as usize
}

/// Size of a frame after [`pad_to_input`]: each side at least 224.
pub fn padded_size(width: usize, height: usize) -> (usize, usize) {
    (width.max(INPUT_SIDE), height.max(INPUT_SIDE))
}

/// Pads a frame by reflection so that both sides are at least 224, split evenly
/// (the extra pixel, if odd, goes to the bottom/right). Larger sides are untouched.
pub fn pad_to_input(frame: &GrayFrame) -> GrayFrame {
    let (w, h) = padded_size(frame.width, frame.height);
    let mut pixels = vec![0u8; w * h];
    pad_into(&frame.pixels, frame.width, frame.height, &mut pixels);
    GrayFrame { width: w, height: h, pixels }
}

/// [`pad_to_input`] into a caller's buffer of `padded_size` pixels; allocates nothing.
pub fn pad_into(src: &[u8], width: usize, height: usize, dst: &mut [u8]) {
    let (w, h) = padded_size(width, height);
    assert!(src.len() >= width * height && dst.len() >= w * h, "buffers do not fit the frame");
    let left = ((w - width) / 2) as i64;
    let top = ((h - height) / 2) as i64;
    for y in 0..h {
        let sy = reflect101(y as i64 - top, height);
        let src_row = &src[sy * width..(sy + 1) * width];
        let dst_row = &mut dst[y * w..(y + 1) * w];
        if left == 0 && w == width {
            dst_row.copy_from_slice(src_row);
        } else {
            for (x, d) in dst_row.iter_mut().enumerate() {
                *d = src_row[reflect101(x as i64 - left, width)];
            }
        }
    }
}

/// Top-left corner of one NRQ patch, in the (padded) frame's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, PartialOrd, Ord)]
pub struct PatchOrigin {
    /// Column of the patch's left edge, in pixels.
    pub x: usize,
    /// Row of the patch's top edge, in pixels.
    pub y: usize,
}

/// Start offsets along one axis: stride 112, plus an edge-aligned last one.
fn axis_starts(len: usize) -> Vec<usize> {
    debug_assert!(len >= INPUT_SIDE);
    let last = len - INPUT_SIDE;
    let mut v: Vec<usize> = (0..=last).step_by(PATCH_STRIDE).collect();
    if *v.last().unwrap() != last {
        v.push(last);
    }
    v
}

/// Every grid patch of a frame of this (already padded) size, row-major (y outer).
pub fn patch_grid(width: usize, height: usize) -> Vec<PatchOrigin> {
    let xs = axis_starts(width);
    let ys = axis_starts(height);
    ys.iter().flat_map(|&y| xs.iter().map(move |&x| PatchOrigin { x, y })).collect()
}

/// A deterministic, spatially spread subset of `k` patches: the first `k` of
/// [`spread_order`], returned in grid order. With `k >= grid.len()` the whole grid.
pub fn spread_subset(grid: &[PatchOrigin], width: usize, height: usize, k: usize) -> Vec<PatchOrigin> {
    if k >= grid.len() {
        return grid.to_vec();
    }
    let mut picked = spread_order(grid, width, height);
    picked.truncate(k);
    picked.sort_unstable();
    picked.into_iter().map(|i| grid[i]).collect()
}

/// Grid indices in farthest-point order over patch centres, seeded with the patch closest to
/// the frame centre; ties go to the lower grid index. Any prefix is spread over the frame,
/// which is what a partial score or a rotating live schedule wants.
pub fn spread_order(grid: &[PatchOrigin], width: usize, height: usize) -> Vec<usize> {
    if grid.is_empty() {
        return Vec::new();
    }
    let centre = |p: &PatchOrigin| {
        let h = INPUT_SIDE as f64 / 2.0;
        (p.x as f64 + h, p.y as f64 + h)
    };
    let d2 = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2);
    let frame_centre = (width as f64 / 2.0, height as f64 / 2.0);
    let mut chosen = vec![false; grid.len()];
    let first = argmin_by(grid.len(), |i| d2(centre(&grid[i]), frame_centre));
    let mut order = vec![first];
    chosen[first] = true;
    let mut nearest: Vec<f64> = grid.iter().map(|p| d2(centre(p), centre(&grid[first]))).collect();
    while order.len() < grid.len() {
        let next = argmin_by(grid.len(), |i| if chosen[i] { f64::INFINITY } else { -nearest[i] });
        chosen[next] = true;
        order.push(next);
        for (i, p) in grid.iter().enumerate() {
            nearest[i] = nearest[i].min(d2(centre(p), centre(&grid[next])));
        }
    }
    order
}

/// Index of the smallest key, the first one on ties.
fn argmin_by(n: usize, key: impl Fn(usize) -> f64) -> usize {
    let mut best = 0;
    for i in 1..n {
        if key(i) < key(best) {
            best = i;
        }
    }
    best
}

/// Copies one 224x224 patch out of a frame as raw 0..255 floats (the model's input).
pub fn crop_patch(frame: &GrayFrame, at: PatchOrigin, out: &mut [f32]) {
    crop_patch_from(&frame.pixels, frame.width, at, out)
}

/// [`crop_patch`] from a bare gray plane `width` pixels wide; allocates nothing.
pub fn crop_patch_from(pixels: &[u8], width: usize, at: PatchOrigin, out: &mut [f32]) {
    assert_eq!(out.len(), INPUT_SIDE * INPUT_SIDE);
    for y in 0..INPUT_SIDE {
        let row = &pixels[(at.y + y) * width + at.x..][..INPUT_SIDE];
        for (o, &p) in out[y * INPUT_SIDE..(y + 1) * INPUT_SIDE].iter_mut().zip(row) {
            *o = p as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_of_800x540() {
        let g = patch_grid(800, 540);
        let xs: Vec<usize> = g.iter().filter(|p| p.y == 0).map(|p| p.x).collect();
        let ys: Vec<usize> = g.iter().filter(|p| p.x == 0).map(|p| p.y).collect();
        assert_eq!(xs, vec![0, 112, 224, 336, 448, 560, 576]);
        assert_eq!(ys, vec![0, 112, 224, 316]);
        assert_eq!(g.len(), 28);
    }

    #[test]
    fn grid_without_duplicates_when_aligned() {
        // 336 = 224 + 112: the edge-aligned start coincides with the stride.
        assert_eq!(patch_grid(336, 224).len(), 2);
        assert_eq!(patch_grid(224, 224), vec![PatchOrigin { x: 0, y: 0 }]);
    }

    #[test]
    fn reflect101_matches_opencv() {
        // OpenCV: gfedcb|abcdefgh|gfedcba
        let idx: Vec<usize> = (-3..11).map(|p| reflect101(p, 8)).collect();
        assert_eq!(idx, vec![3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4]);
        // Pads wider than the image keep bouncing.
        assert_eq!(reflect101(-5, 3), 1);
        assert_eq!(reflect101(7, 3), 1);
        assert_eq!(reflect101(-4, 1), 0);
    }

    #[test]
    fn padding_splits_evenly() {
        let f = GrayFrame::new(3, 223, (0..669).map(|i| (i % 251) as u8).collect()).unwrap();
        let p = pad_to_input(&f);
        assert_eq!((p.width, p.height), (224, 224));
        // height: 1 extra row, goes to the bottom; width: 221 extra, 110 left, 111 right.
        assert_eq!(p.pixels[110], f.pixels[0]);
        assert_eq!(p.pixels[223 * 224 + 110], f.pixels[221 * 3]);
    }

    #[test]
    fn area_identity_and_constant() {
        let src: Vec<f32> = (0..300 * 200).map(|i| (i % 17) as f32).collect();
        assert_eq!(resize_area(&src, 300, 200, 300, 200), src);
        for (w, h) in [(800, 540), (448, 448), (100, 80), (300, 200), (225, 1000)] {
            let c = vec![0.25f32; w * h];
            let r = resize_area(&c, w, h, 224, 224);
            assert!(r.iter().all(|v| (v - 0.25).abs() < 1e-6), "{w}x{h}");
        }
    }

    #[test]
    fn area_integer_factor_is_block_mean() {
        let src: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let r = resize_area(&src, 4, 4, 2, 2);
        assert_eq!(r, vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn spread_subset_is_deterministic_and_spread() {
        let g = patch_grid(800, 540);
        let s = spread_subset(&g, 800, 540, 4);
        assert_eq!(s.len(), 4);
        assert_eq!(s, spread_subset(&g, 800, 540, 4));
        // The corners are farthest from a central seed: the picks span the frame.
        let min_x = s.iter().map(|p| p.x).min().unwrap();
        let max_x = s.iter().map(|p| p.x).max().unwrap();
        assert!(max_x - min_x >= 448, "{s:?}");
        assert_eq!(spread_subset(&g, 800, 540, 100).len(), 28);
        let order = spread_order(&g, 800, 540);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..28).collect::<Vec<_>>(), "a permutation of the grid");
    }
}
