//! A picture of an NRQ score: the frame tinted by each pixel's mean patch log-likelihood
//! (red = unlike clean anatomy, green = like it), the worst-region patches outlined in
//! magenta, and a colour bar underneath (left = lowest, right = highest patch score).

use crate::contract::INPUT_SIDE;
use crate::imaging::frame::GrayFrame;
use crate::quality::{PatchScore, ScoreReport};
use image::{Rgb, RgbImage};

const BAR_HEIGHT: u32 = 14;
const OUTLINE: [u8; 3] = [255, 0, 255];

/// Red -> yellow -> green over `t` in 0..1.
fn colour(t: f64) -> [f64; 3] {
    let t = t.clamp(0.0, 1.0);
    if t < 0.5 { [230.0, 460.0 * t, 40.0] } else { [230.0 * (2.0 - 2.0 * t), 230.0, 40.0] }
}

/// Draws `report`'s heatmap over `frame`, the frame it was scored from: an RGB image as wide as
/// the frame and 14 pixels taller, for the colour bar.
pub fn render(frame: &GrayFrame, report: &ScoreReport) -> RgbImage {
    render_patches(
        frame,
        &Patches { scores: &report.patches, worst: &report.worst, pad_left: report.pad_left, pad_top: report.pad_top },
    )
}

/// What a heatmap is drawn from: scored patches (corners in the padded frame), the worst
/// region (indices into `scores`), and where the frame sits in the padded one.
pub struct Patches<'a> {
    /// The scored patches.
    pub scores: &'a [PatchScore],
    /// Indices into `scores` of the worst region.
    pub worst: &'a [usize],
    /// Columns of padding left of the frame.
    pub pad_left: usize,
    /// Rows of padding above the frame.
    pub pad_top: usize,
}

/// As [`render`], from patches scored anywhere (the live engine's window: [`crate::engine::PatchView`]).
pub fn render_patches(frame: &GrayFrame, report: &Patches<'_>) -> RgbImage {
    let (w, h) = (frame.width, frame.height);
    let lo = report.scores.iter().map(|p| p.loglik).fold(f64::INFINITY, f64::min);
    let hi = report.scores.iter().map(|p| p.loglik).fold(f64::NEG_INFINITY, f64::max);
    let norm = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    // Patches overlap (stride 112, size 224): each pixel shows the mean of those covering it.
    let mut sum = vec![0f64; w * h];
    let mut count = vec![0u32; w * h];
    for p in report.scores {
        for (x, y) in patch_pixels(frame, report, p.x, p.y) {
            sum[y * w + x] += norm(p.loglik);
            count[y * w + x] += 1;
        }
    }
    let mut img = RgbImage::new(w as u32, h as u32 + BAR_HEIGHT);
    for y in 0..h {
        for x in 0..w {
            let g = frame.pixels[y * w + x] as f64;
            let px = if count[y * w + x] == 0 {
                [g as u8; 3]
            } else {
                let c = colour(sum[y * w + x] / count[y * w + x] as f64);
                std::array::from_fn(|i| (0.55 * g + 0.45 * c[i]).round() as u8)
            };
            img.put_pixel(x as u32, y as u32, Rgb(px));
        }
    }
    for &i in report.worst {
        let p = report.scores[i];
        outline(&mut img, frame, report, p.x, p.y);
    }
    for x in 0..w {
        let c = colour(x as f64 / (w.max(2) - 1) as f64).map(|v| v.round() as u8);
        for y in 0..BAR_HEIGHT {
            img.put_pixel(x as u32, h as u32 + y, Rgb(c));
        }
    }
    img
}

/// The patch's rectangle in original-frame pixels (padding removed, clipped).
fn patch_rect(frame: &GrayFrame, report: &Patches<'_>, px: usize, py: usize) -> (usize, usize, usize, usize) {
    let x0 = px.saturating_sub(report.pad_left);
    let y0 = py.saturating_sub(report.pad_top);
    let x1 = (px + INPUT_SIDE).saturating_sub(report.pad_left).min(frame.width);
    let y1 = (py + INPUT_SIDE).saturating_sub(report.pad_top).min(frame.height);
    (x0, y0, x1, y1)
}

fn patch_pixels(frame: &GrayFrame, report: &Patches<'_>, px: usize, py: usize) -> impl Iterator<Item = (usize, usize)> {
    let (x0, y0, x1, y1) = patch_rect(frame, report, px, py);
    (y0..y1).flat_map(move |y| (x0..x1).map(move |x| (x, y)))
}

fn outline(img: &mut RgbImage, frame: &GrayFrame, report: &Patches<'_>, px: usize, py: usize) {
    let (x0, y0, x1, y1) = patch_rect(frame, report, px, py);
    let t = 3.min((x1 - x0) / 2).min((y1 - y0) / 2);
    for (x, y) in patch_pixels(frame, report, px, py) {
        if x < x0 + t || x >= x1 - t || y < y0 + t || y >= y1 - t {
            img.put_pixel(x as u32, y as u32, Rgb(OUTLINE));
        }
    }
}
