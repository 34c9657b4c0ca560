//! Acquisition checks beside NRQ: why a frame is poor, in words a sonographer can act on
//! (gain too low, saturated, lost or partial probe contact, frozen or blank image, an organ
//! the manifold does not describe).
//!
//! NRQ stays the paper's value; these checks sit beside it. Each check measures one value on
//! the frame's region of interest ([`FrameMeasures`]) and compares it with a threshold derived
//! from statistics of the organ's clean training frames ([`CleanStats`], stored in the organ's
//! `.npz` by `usq fit-nrq`) and a fixed margin named here. Pure maths over gray pixels: one
//! pass over the frame, no allocation, so the live engine runs it on every frame.

use crate::error::Result;

/// Side of the square blocks whose mean echo the level checks read: averages out speckle.
pub const BLOCK: usize = 16;
/// A pixel at or above this level counts as clipped (saturated display range).
pub const CLIP_LEVEL: u8 = 250;
/// Most block columns measured; wider frames use wider blocks.
const MAX_BLOCK_COLUMNS: usize = 1024;

/// Percentile of clean frames the low-side statistics keep (0.5 %), and its high-side twin.
pub const CLEAN_LOW_QUANTILE: f64 = 0.005;
/// See [`CLEAN_LOW_QUANTILE`].
pub const CLEAN_HIGH_QUANTILE: f64 = 0.995;

/// `gain_low`: echo level this far (dB) below the darkest 0.5 % of clean frames.
pub const GAIN_LOW_MARGIN_DB: f64 = 3.0;
/// `contact_lost`: echo level this far (dB) below the darkest 0.5 % of clean frames: no echo
/// left at all. A frame this dark also raises `gain_low`; from one frame the two look alike.
pub const CONTACT_LOST_MARGIN_DB: f64 = 12.0;
/// `contact_partial`: this share of the image's width without echo beyond the widest such run
/// of all but the 0.5 % of clean frames where it is widest. 0.15 rather than the first choice
/// of 0.1: two clean lung validation sources (a fan cut on one side) have runs of 0.30 and 0.39
/// against the training frames' 0.26, and 8 % of the validation frames read as partial at 0.1.
pub const CONTACT_PARTIAL_MARGIN_SHARE: f64 = 0.15;
/// A block this many gray levels above the frame's darkest block is inside the image: the
/// black surround of the sector (or a capture card's video black) is left out of the echo
/// level, so a narrow sector does not read as low gain, while the noise of an uncoupled
/// transducer stays in.
pub const INSIDE_LEVEL: u8 = 2;
/// A column of blocks without echo: its brightest block under this share of the echo level
/// (-12 dB). Speckle, skin and deep reflectors put a brighter block in every column of tissue,
/// shadows included (the reflector above them), while an uncoupled aperture keeps its noise.
pub const DEAD_COLUMN_SHARE: f32 = 0.25;
/// `blank`: pixel spread this far (dB) below the flattest 0.5 % of clean frames. 24 dB rather
/// than the first choice of 18: on HC18 validation subjects (500-599) frames with the gain
/// turned down 24 dB still kept more spread than that, and read as blank at 18.
pub const BLANK_MARGIN_DB: f64 = 24.0;
/// `saturated`: this share of the frame clipped beyond the most clipped 0.5 % of clean frames.
pub const SATURATED_MARGIN_SHARE: f64 = 0.01;
/// `organ_mismatch` against the organ's own clean frames: the frame's median patch
/// log-likelihood this far (nats) below the lowest 0.5 % of their medians: an organ no manifold
/// describes. Far, because a degraded frame of the right organ also falls below them. 15 rather
/// than the first choice of 10: at 10, 9 % of the clean lung frames of the validation sources
/// (scanners the manifold never saw) read as another organ; at 15, 0.7 % (usq-qa-v1's manifolds;
/// with usq-qa-v2's, 10.4 % and 2.2 %: `python -m usq_tools.select_checks --split validation`).
pub const ORGAN_FAR_NATS: f64 = 15.0;
/// `organ_mismatch` between organs: another organ's margin inside its clean range and this far
/// (nats) above the frame's own. 1 rather than 0: on the clean training frames of the lung
/// sources, 2.3 % fit the broader fetal-head manifold better than their own at 0, 0.8 % at 1
/// (usq-qa-v1's manifolds; with usq-qa-v2's, 0.8 % at both).
pub const ORGAN_BETTER_NATS: f64 = 1.0;
/// `frozen`: mean absolute change from the previous frame (gray levels) at or below this. Not a
/// clean-frame statistic: fit-nrq sees still images, not clips. A frozen digital image repeats
/// exactly and a capture card adds well under half a level of noise, while live speckle moves
/// consecutive frames by several levels.
pub const FROZEN_CHANGE: f32 = 0.5;

/// What a frame measures, on the region of interest.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct FrameMeasures {
    /// Echo level: the 90th percentile of the 16-pixel block means inside the image
    /// ([`INSIDE_LEVEL`]) (gray levels).
    pub echo_level: f32,
    /// Share of pixels at or above [`CLIP_LEVEL`].
    pub clipped_share: f32,
    /// Share of the image's width (its columns of blocks inside the image) in the widest run of
    /// columns without echo ([`DEAD_COLUMN_SHARE`]), 0..1: an aperture that lost contact.
    pub dead_width: f32,
    /// Standard deviation of the pixels (gray levels).
    pub pixel_std: f32,
}

/// Measures a gray frame (`width * height` bytes, row-major). One pass, no allocation.
pub fn measure(gray: &[u8], width: usize, height: usize) -> FrameMeasures {
    assert!(gray.len() >= width * height, "gray buffer smaller than the frame");
    let gray = &gray[..width * height];
    if gray.is_empty() {
        return FrameMeasures::default();
    }
    let (mut sum, mut sum_sq, mut clipped) = (0u64, 0u64, 0u64);
    let block = BLOCK.max(width.div_ceil(MAX_BLOCK_COLUMNS)).min(width).min(height);
    let (bw, bh) = ((width / block).min(MAX_BLOCK_COLUMNS), height / block);
    let mut columns = [0u32; MAX_BLOCK_COLUMNS];
    // Each column's brightest block, for the run of columns without echo.
    let mut brightest = [0u8; MAX_BLOCK_COLUMNS];
    let mut all = [0u32; 256];
    let area = (block * block) as u32;
    for (y, row) in gray.chunks_exact(width).enumerate() {
        // Sums of runs of 16384 pixels in u32 (65025 * 16384 < 2^32) let the compiler
        // vectorise; the runs add up in u64.
        for run in row.chunks(1 << 14) {
            let (mut rs, mut rq, mut rc) = (0u32, 0u32, 0u32);
            for &v in run {
                let v = v as u32;
                rs += v;
                rq += v * v;
                rc += (v >= CLIP_LEVEL as u32) as u32;
            }
            (sum, sum_sq, clipped) = (sum + rs as u64, sum_sq + rq as u64, clipped + rc as u64);
        }
        if y / block >= bh {
            continue;
        }
        for (c, px) in columns[..bw].iter_mut().zip(row.chunks_exact(block)) {
            *c += px.iter().map(|&v| v as u32).sum::<u32>();
        }
        if y % block == block - 1 {
            for (c, top) in columns[..bw].iter_mut().zip(&mut brightest[..bw]) {
                let mean = ((*c + area / 2) / area).min(255) as u8;
                all[mean as usize] += 1;
                *top = (*top).max(mean);
                *c = 0;
            }
        }
    }
    let n = gray.len() as f64;
    let mean = sum as f64 / n;
    let std = (sum_sq as f64 / n - mean * mean).max(0.0).sqrt();
    // Inside the image: blocks INSIDE_LEVEL above the darkest; a flat frame has none, and its
    // level is all of its blocks'.
    let darkest = all.iter().position(|&c| c > 0).unwrap_or(0);
    let inside = (darkest + INSIDE_LEVEL as usize).min(255);
    let mut image = all;
    image[..inside].fill(0);
    let echo_level = percentile(if image.iter().any(|&c| c > 0) { &image } else { &all }, 0.90);
    FrameMeasures {
        echo_level,
        clipped_share: (clipped as f64 / n) as f32,
        dead_width: dead_width(&brightest[..bw], inside as u8, echo_level),
        pixel_std: std as f32,
    }
}

/// The widest run of columns without echo (brightest block under [`DEAD_COLUMN_SHARE`] of the
/// echo level) as a share of the columns inside the image (from the first to the last column
/// with a block at or above `inside`); 0 when no column is inside.
fn dead_width(brightest: &[u8], inside: u8, echo_level: f32) -> f32 {
    let (Some(first), Some(last)) =
        (brightest.iter().position(|&b| b >= inside), brightest.iter().rposition(|&b| b >= inside))
    else {
        return 0.0;
    };
    let (mut widest, mut run) = (0usize, 0usize);
    for &b in &brightest[first..=last] {
        run = if (b as f32) < DEAD_COLUMN_SHARE * echo_level { run + 1 } else { 0 };
        widest = widest.max(run);
    }
    widest as f32 / (last - first + 1) as f32
}

/// Nearest-rank percentile of a 256-bin histogram; 0 for an empty one.
fn percentile(hist: &[u32; 256], q: f64) -> f32 {
    let n: u64 = hist.iter().map(|&c| c as u64).sum();
    if n == 0 {
        return 0.0;
    }
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0u64;
    for (v, &c) in hist.iter().enumerate() {
        seen += c as u64;
        if seen >= rank {
            return v as f32;
        }
    }
    255.0
}

/// Mean absolute difference of two frames of the same size (gray levels): how much the image
/// moved since the previous frame.
pub fn frame_change(previous: &[u8], current: &[u8]) -> f32 {
    assert_eq!(previous.len(), current.len(), "frames of different sizes");
    if current.is_empty() {
        return 0.0;
    }
    // Sums of 65536 differences fit in u32 (and vectorise); the chunks add up in u64.
    let total: u64 = previous
        .chunks(1 << 16)
        .zip(current.chunks(1 << 16))
        .map(|(a, b)| a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u32).sum::<u32>() as u64)
        .sum();
    (total as f64 / current.len() as f64) as f32
}

/// Statistics of an organ's clean training frames, from which the thresholds derive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CleanStats {
    /// Clean frames the statistics were taken over.
    pub frames: u64,
    /// 0.5th percentile of the frames' echo levels.
    pub echo_level: f64,
    /// 99.5th percentile of the frames' clipped shares.
    pub clipped_share: f64,
    /// 99.5th percentile of the frames' widths without echo.
    pub dead_width: f64,
    /// 0.5th percentile of the frames' pixel standard deviations.
    pub pixel_std: f64,
    /// 0.5th percentile of the frames' median patch log-likelihoods under the organ's manifold.
    pub median_loglik: f64,
}

/// Linear-interpolated quantile (numpy's default) of unsorted values; NaN for none.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

impl CleanStats {
    /// The statistics of clean frames: their measures and, per frame, the median log-likelihood
    /// of its patches under the organ's manifold.
    pub fn from_frames(measures: &[FrameMeasures], median_logliks: &[f64]) -> Result<CleanStats> {
        if measures.is_empty() || measures.len() != median_logliks.len() {
            crate::bail!(
                InvalidArgument,
                "clean statistics need one median log-likelihood per frame ({} frames, {} medians)",
                measures.len(),
                median_logliks.len()
            );
        }
        let col = |f: fn(&FrameMeasures) -> f32| measures.iter().map(|m| f(m) as f64).collect::<Vec<f64>>();
        let stats = CleanStats {
            frames: measures.len() as u64,
            echo_level: quantile(&mut col(|m| m.echo_level), CLEAN_LOW_QUANTILE),
            clipped_share: quantile(&mut col(|m| m.clipped_share), CLEAN_HIGH_QUANTILE),
            dead_width: quantile(&mut col(|m| m.dead_width), CLEAN_HIGH_QUANTILE),
            pixel_std: quantile(&mut col(|m| m.pixel_std), CLEAN_LOW_QUANTILE),
            median_loglik: quantile(&mut median_logliks.to_vec(), CLEAN_LOW_QUANTILE),
        };
        stats.validate()?;
        Ok(stats)
    }

    /// Fails unless the statistics are usable: finite, in range, over at least one frame.
    pub fn validate(&self) -> Result<()> {
        crate::error::ensure_finite(
            "clean statistics",
            &[self.echo_level, self.clipped_share, self.dead_width, self.pixel_std, self.median_loglik],
        )?;
        if self.frames == 0
            || !(0.0..=255.0).contains(&self.echo_level)
            || !(0.0..=1.0).contains(&self.clipped_share)
            || !(0.0..=1.0).contains(&self.dead_width)
            || !(0.0..=255.0).contains(&self.pixel_std)
        {
            crate::bail!(Manifold, "clean statistics out of range: {self:?}");
        }
        Ok(())
    }

    /// The thresholds: each statistic moved by its check's margin.
    pub fn thresholds(&self) -> Thresholds {
        let db = |v: f64, margin: f64| v * 10f64.powf(-margin / 20.0);
        Thresholds {
            gain_low_level: db(self.echo_level, GAIN_LOW_MARGIN_DB),
            contact_lost_level: db(self.echo_level, CONTACT_LOST_MARGIN_DB),
            contact_partial_width: self.dead_width + CONTACT_PARTIAL_MARGIN_SHARE,
            saturated_share: self.clipped_share + SATURATED_MARGIN_SHARE,
            blank_std: db(self.pixel_std, BLANK_MARGIN_DB),
            organ_loglik: self.median_loglik,
        }
    }
}

/// Where each check fires (below, or for `saturated_share` and `contact_partial_width` above).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Thresholds {
    /// `gain_low` below this echo level.
    pub gain_low_level: f64,
    /// `contact_lost` below this echo level.
    pub contact_lost_level: f64,
    /// `contact_partial` above this width without echo.
    pub contact_partial_width: f64,
    /// `saturated` above this clipped share.
    pub saturated_share: f64,
    /// `blank` below this pixel standard deviation.
    pub blank_std: f64,
    /// The organ's clean range starts here (median patch log-likelihood): the frame's margin
    /// is its median minus this.
    pub organ_loglik: f64,
}

/// One acquisition fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Fault {
    /// Echo far below the organ's clean frames: gain turned down.
    GainLow = 1 << 0,
    /// Clipped highlights over a meaningful area: gain too high.
    Saturated = 1 << 1,
    /// No echo left: the probe is off the skin or out of gel.
    ContactLost = 1 << 2,
    /// One lateral side of the image dark: part of the aperture lost contact.
    ContactPartial = 1 << 3,
    /// The image does not change between frames.
    Frozen = 1 << 4,
    /// A uniform frame: black, or a capture card's "no signal" screen.
    Blank = 1 << 5,
    /// The frame's patches are far from every clean-image manifold scored: NRQ means little.
    OrganMismatch = 1 << 6,
}

impl Fault {
    /// Every fault, in the order of their bits.
    pub const ALL: [Fault; 7] = [
        Fault::GainLow,
        Fault::Saturated,
        Fault::ContactLost,
        Fault::ContactPartial,
        Fault::Frozen,
        Fault::Blank,
        Fault::OrganMismatch,
    ];
    /// The order a gauge shows reasons in: the fault that explains the others first.
    const PRIORITY: [Fault; 7] = [
        Fault::Blank,
        Fault::Frozen,
        Fault::ContactLost,
        Fault::ContactPartial,
        Fault::Saturated,
        Fault::GainLow,
        Fault::OrganMismatch,
    ];

    /// The name in JSON and the C header (`gain_low`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Fault::GainLow => "gain_low",
            Fault::Saturated => "saturated",
            Fault::ContactLost => "contact_lost",
            Fault::ContactPartial => "contact_partial",
            Fault::Frozen => "frozen",
            Fault::Blank => "blank",
            Fault::OrganMismatch => "organ_mismatch",
        }
    }

    /// A short reason for a gauge.
    pub fn reason(self) -> &'static str {
        match self {
            Fault::GainLow => "gain low",
            Fault::Saturated => "saturated",
            Fault::ContactLost => "no contact",
            Fault::ContactPartial => "partial contact",
            Fault::Frozen => "frozen",
            Fault::Blank => "blank frame",
            Fault::OrganMismatch => "organ not in manifold",
        }
    }
}

/// A set of faults, as the bits of [`Fault`]; serialises as the list of names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults(pub u32);

impl Faults {
    /// Adds `fault` when `raised`.
    pub fn set(&mut self, fault: Fault, raised: bool) {
        if raised {
            self.0 |= fault as u32;
        }
    }

    /// Whether `fault` is in the set.
    pub fn contains(self, fault: Fault) -> bool {
        self.0 & fault as u32 != 0
    }

    /// No fault.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The faults in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// The fault a gauge names first, if any.
    pub fn main(self) -> Option<Fault> {
        Fault::PRIORITY.into_iter().find(|f| self.contains(*f))
    }
}

impl serde::Serialize for Faults {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Fault::name))
    }
}

/// A frame's checks: the measured values and the faults they raise.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct FrameChecks {
    /// The measures of the frame.
    #[serde(flatten)]
    pub measures: FrameMeasures,
    /// Change from the previous frame (live only).
    pub frame_change: Option<f32>,
    /// Median patch log-likelihood minus the start of the organ's clean range (the best organ's,
    /// when all organs are scored); `None` without clean statistics.
    pub organ_margin: Option<f64>,
    /// The same margin for the best of the other organs with clean statistics, when one is
    /// scored against a single organ; `None` otherwise.
    pub other_organ_margin: Option<f64>,
    /// Whether clean statistics judged the frame. Without them (a manifold fitted by another
    /// tool or an older usq), only `frozen` can be raised.
    pub judged: bool,
}

/// How a frame's patches fit the organs' clean frames: its median patch log-likelihood minus the
/// start of each one's clean range (nats; negative = below the range).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrganMargins {
    /// Of the organ the frame is judged against.
    pub own: f64,
    /// Of the best other organ, when the frame was scored against one organ of several.
    pub other: Option<f64>,
}

impl FrameChecks {
    /// Judges a frame's measures against an organ's clean statistics.
    ///
    /// `organ_mismatch` is raised when another organ fits the frame better than its own
    /// ([`ORGAN_BETTER_NATS`]) and the frame lies inside that organ's clean range (it looks like
    /// that organ), or when the frame is far below its own range ([`ORGAN_FAR_NATS`]).
    /// Degradations lower every organ's log-likelihoods together, so the comparison between
    /// organs tells a wrong organ from a poor image where one manifold alone cannot. The frame
    /// need not be below its own range: a broad manifold (fetal head) holds most lung frames
    /// inside its clean range, while the lung manifold holds them better.
    pub fn judge(
        measures: FrameMeasures,
        stats: Option<&CleanStats>,
        margins: Option<OrganMargins>,
        frame_change: Option<f32>,
    ) -> (FrameChecks, Faults) {
        let mut faults = Faults::default();
        faults.set(Fault::Frozen, frame_change.is_some_and(|c| c <= FROZEN_CHANGE));
        if let Some(s) = stats {
            let t = s.thresholds();
            let m = &measures;
            let blank = (m.pixel_std as f64) < t.blank_std;
            faults.set(Fault::Blank, blank);
            faults.set(Fault::GainLow, !blank && (m.echo_level as f64) < t.gain_low_level);
            faults.set(Fault::ContactLost, !blank && (m.echo_level as f64) < t.contact_lost_level);
            faults.set(
                Fault::ContactPartial,
                !blank
                    && (m.echo_level as f64) >= t.contact_lost_level
                    && (m.dead_width as f64) > t.contact_partial_width,
            );
            faults.set(Fault::Saturated, (m.clipped_share as f64) > t.saturated_share);
            let mismatch = margins.is_some_and(|g| {
                g.own < -ORGAN_FAR_NATS || g.other.is_some_and(|o| o >= 0.0 && o > g.own + ORGAN_BETTER_NATS)
            });
            faults.set(Fault::OrganMismatch, !blank && mismatch);
        }
        let margins = stats.and(margins);
        let checks = FrameChecks {
            measures,
            frame_change,
            organ_margin: margins.map(|g| g.own),
            other_organ_margin: margins.and_then(|g| g.other),
            judged: stats.is_some(),
        };
        (checks, faults)
    }
}

/// Median of `values`, reordering them; NaN for none.
pub fn median_in_place(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mid = values.len() / 2;
    let (_, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if values.len() % 2 == 1 {
        upper
    } else {
        let lower = values[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lower + upper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A speckled frame: tissue in the middle band, black surround on the left.
    fn tissue(w: usize, h: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..w * h)
            .map(|i| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                let (x, y) = (i % w, i / w);
                if x < w / 10 { 0 } else { (40 + (s >> 24) % 120 + (y * 60 / h) as u32) as u8 }
            })
            .collect()
    }

    fn stats_of(frames: &[Vec<u8>], w: usize, h: usize) -> CleanStats {
        let m: Vec<FrameMeasures> = frames.iter().map(|f| measure(f, w, h)).collect();
        CleanStats::from_frames(&m, &vec![-10.0; m.len()]).unwrap()
    }

    #[test]
    fn measures_of_known_frames() {
        let (w, h) = (64, 48);
        let flat = vec![100u8; w * h];
        let m = measure(&flat, w, h);
        assert_eq!((m.echo_level, m.clipped_share, m.dead_width, m.pixel_std), (100.0, 0.0, 0.0, 0.0));
        // The right half black: outside the image, neither dark echo nor a dead aperture.
        let half: Vec<u8> = (0..w * h).map(|i| if i % w < w / 2 { 200 } else { 0 }).collect();
        let m = measure(&half, w, h);
        assert_eq!((m.echo_level, m.dead_width), (200.0, 0.0));
        assert!((m.pixel_std - 100.0).abs() < 1e-3);
        // A narrow sector (1 block column of 20) reads its own level, not its surround's.
        let (ws, hs) = (320, 48);
        let narrow: Vec<u8> = (0..ws * hs).map(|i| if (144..160).contains(&(i % ws)) { 120 } else { 0 }).collect();
        assert_eq!(measure(&narrow, ws, hs).echo_level, 120.0);
        // Tissue with its left 3 of 8 block columns at a noise floor (a dead aperture): the dead
        // run is 3 of the 8 columns inside the image, and the surround (2 columns of 0, on the
        // right) is not counted.
        let (wd, hd) = (160, 64);
        let dead: Vec<u8> = (0..wd * hd)
            .map(|i| match (i % wd, i / wd) {
                (x, _) if x >= 128 => 0,
                (x, y) if x < 48 => 3 + ((x + y) % 3) as u8 * (y < 16) as u8 * 4,
                (x, y) => 60 + ((x * 7 + y * 13) % 80) as u8,
            })
            .collect();
        let m = measure(&dead, wd, hd);
        assert_eq!(m.dead_width, 3.0 / 8.0, "{m:?}");
        let white = vec![255u8; w * h];
        assert_eq!(measure(&white, w, h).clipped_share, 1.0);
        // Frames smaller than a block still measure.
        assert_eq!(measure(&[7, 9, 11], 3, 1).echo_level, 11.0);
        assert_eq!(frame_change(&flat, &flat), 0.0);
        assert_eq!(frame_change(&flat, &white), 155.0);
    }

    #[test]
    fn faults_raised_by_their_own_change() {
        let (w, h) = (160, 120);
        let clean: Vec<Vec<u8>> = (0..20).map(|s| tissue(w, h, s)).collect();
        let stats = stats_of(&clean, w, h);
        let fits = Some(OrganMargins { own: 1.0, other: None });
        let judge = |f: &[u8]| FrameChecks::judge(measure(f, w, h), Some(&stats), fits, None).1;
        let probe = tissue(w, h, 99);
        assert!(judge(&probe).is_empty(), "a clean frame: {:?}", judge(&probe));
        let scaled = |k: f32| probe.iter().map(|&v| (v as f32 * k).round().min(255.0) as u8).collect::<Vec<u8>>();
        assert_eq!(judge(&scaled(0.4)).main(), Some(Fault::GainLow));
        assert!(judge(&scaled(0.1)).contains(Fault::ContactLost));
        assert_eq!(judge(&scaled(3.0)).main(), Some(Fault::Saturated));
        assert_eq!(judge(&vec![128; w * h]).main(), Some(Fault::Blank));
        let mut half = probe.clone();
        half.chunks_exact_mut(w).for_each(|row| row[w / 2..].iter_mut().for_each(|v| *v /= 20));
        assert_eq!(judge(&half).main(), Some(Fault::ContactPartial));
        // A mismatch when another organ's range holds the frame and fits it better by more than
        // ORGAN_BETTER_NATS, whether or not its own range holds it; or when far below its own.
        let organ = |own: f64, other: Option<f64>| {
            let g = Some(OrganMargins { own, other });
            FrameChecks::judge(measure(&probe, w, h), Some(&stats), g, None).1.iter().collect::<Vec<_>>()
        };
        assert_eq!(organ(-0.5, Some(2.0)), vec![Fault::OrganMismatch]);
        assert_eq!(organ(-0.5, Some(-0.1)), vec![], "a poor frame of the right organ");
        assert_eq!(organ(-0.5, None), vec![]);
        assert_eq!(organ(-ORGAN_FAR_NATS - 0.1, None), vec![Fault::OrganMismatch]);
        assert_eq!(organ(0.5, Some(9.0)), vec![Fault::OrganMismatch], "inside its own range, far better in another");
        assert_eq!(organ(3.0, Some(3.0 + ORGAN_BETTER_NATS / 2.0)), vec![], "another fits about as well");
        assert_eq!(organ(3.0, Some(1.0)), vec![], "its own fits better");
        let g = Some(OrganMargins { own: -0.5, other: None });
        let (c, f) = FrameChecks::judge(measure(&probe, w, h), None, g, Some(0.0));
        assert_eq!((c.judged, c.organ_margin, f.iter().collect::<Vec<_>>()), (false, None, vec![Fault::Frozen]));
    }

    #[test]
    fn faults_serialise_as_names() {
        let mut f = Faults::default();
        f.set(Fault::Blank, true);
        f.set(Fault::GainLow, true);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"["gain_low","blank"]"#);
        assert_eq!(f.main(), Some(Fault::Blank));
    }

    #[test]
    fn clean_stats_are_checked() {
        let m = [FrameMeasures { echo_level: 80.0, clipped_share: 0.0, dead_width: 0.1, pixel_std: 30.0 }];
        assert!(CleanStats::from_frames(&m, &[]).is_err());
        assert!(CleanStats::from_frames(&m, &[f64::NAN]).is_err());
        let s = CleanStats::from_frames(&m, &[-3.0]).unwrap();
        assert_eq!((s.echo_level, s.median_loglik, s.frames), (80.0, -3.0, 1));
        let mut v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median_in_place(&mut v), 2.5);
    }
}
