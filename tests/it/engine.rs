//! The live engine end to end with the seeded model: equality with the offline score when
//! the budget allows, pixel formats, region of interest, the budget's patch rotation, and
//! accounting of every pushed frame.

use crate::common::*;
use std::time::Duration;
use usq::engine::{Engine, EngineConfig, LiveResult};
use usq::imaging::pixel::{FrameLayout, PixelFormat, Roi};
use usq::{Encoder, GrayFrame, ManifoldSet, ScoreOptions, Scorer};

const WAIT: Duration = Duration::from_secs(120);

fn manifolds() -> ManifoldSet {
    ManifoldSet::load_dir(at("tests/fixtures/manifold")).unwrap()
}

fn engine(batch: usize, cfg: EngineConfig) -> Engine {
    Engine::start(Scorer::from_parts(Encoder::from_path(seeded_model(), batch).unwrap(), manifolds()).unwrap(), cfg)
        .unwrap()
}

fn offline_scorer() -> Scorer {
    Scorer::from_parts(Encoder::from_path(seeded_model(), 1).unwrap(), manifolds()).unwrap()
}

fn frame(name: &str) -> GrayFrame {
    GrayFrame::open(at(name)).unwrap()
}

fn unlimited(f: &GrayFrame) -> EngineConfig {
    EngineConfig { budget_ms: 1e7, window_frames: 1, ..EngineConfig::for_frames(f.width, f.height) }
}

fn push_and_wait(e: &Engine, data: &[u8], layout: FrameLayout) -> LiveResult {
    let id = e.push(data, layout, 1234).unwrap();
    let r = e.results().recv_timeout(WAIT).expect("a result");
    assert_eq!(r.frame_id, id);
    r
}

#[test]
fn live_equals_offline_when_the_whole_grid_fits() {
    let f = frame("tests/fixtures/sim_sector_800x540.png");
    let offline = offline_scorer().score(&f, &ScoreOptions::default()).unwrap();
    let e = engine(1, unlimited(&f));
    let r = push_and_wait(&e, &f.pixels, FrameLayout::packed(f.width, f.height, PixelFormat::Gray8));
    assert_eq!(r.patches_scored, 28);
    assert_eq!(r.coverage, 1.0);
    assert_eq!(r.timestamp_us, 1234);
    assert!((r.nrq - offline.nrq).abs() < 1e-9, "live {} vs offline {}", r.nrq, offline.nrq);
    assert!(!r.deadline_missed);
}

/// With helper encoders (frame threads) the grid is shared between threads, and the score and
/// checks are those of one encoder; a tight budget affords about as many times the patches.
#[test]
fn helper_encoders_share_the_frame() {
    let f = frame("tests/fixtures/sim_sector_800x540.png");
    let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
    let start = |threads: usize, cfg: EngineConfig| {
        let mut s = offline_scorer();
        s.set_frame_threads(threads).unwrap();
        Engine::start(s, cfg).unwrap()
    };
    let one = push_and_wait(&start(1, unlimited(&f)), &f.pixels, layout);
    for threads in [2, 3] {
        let e = start(threads, unlimited(&f));
        let r = push_and_wait(&e, &f.pixels, layout);
        assert_eq!(r.patches_scored, 28);
        assert_eq!(r.nrq.to_bits(), one.nrq.to_bits(), "{threads} encoders");
        assert_eq!(r.checks, one.checks);
        let s = e.stop();
        assert_eq!((s.frames_scored, s.frames_failed), (1, 0), "{s:?}");
    }
    // A budget of one run per frame: each encoder runs once, so 2 patches a frame.
    let tight = EngineConfig { budget_ms: 1e-3, window_frames: 1, ..EngineConfig::for_frames(f.width, f.height) };
    let e = start(2, tight);
    for _ in 0..3 {
        assert_eq!(push_and_wait(&e, &f.pixels, layout).patches_scored, 2);
    }
}

#[test]
fn pixel_formats_and_stride_give_the_same_score() {
    let f = frame("tests/fixtures/sim_small_200x150.png");
    let e = engine(1, unlimited(&f));
    let gray = push_and_wait(&e, &f.pixels, FrameLayout::packed(f.width, f.height, PixelFormat::Gray8)).nrq;
    let (w, h) = (f.width, f.height);
    let encode = |format: PixelFormat, pad: usize| -> (Vec<u8>, FrameLayout) {
        let bpp = format.bytes_per_pixel();
        let layout = FrameLayout { width: w, height: h, stride: w * bpp + pad, format };
        let mut buf = vec![0x55u8; layout.required_bytes().unwrap()];
        for y in 0..h {
            for x in 0..w {
                let g = f.pixels[y * w + x];
                let px: &[u8] = match format {
                    PixelFormat::Gray8 | PixelFormat::Nv12 => &[g],
                    PixelFormat::Gray16 => &[g, g], // g * 257, little-endian
                    PixelFormat::Rgb24 | PixelFormat::Bgr24 => &[g, g, g],
                    PixelFormat::Rgba => &[g, g, g, 255],
                    PixelFormat::Yuyv => &[g, 128],
                };
                buf[y * layout.stride + x * bpp..][..bpp].copy_from_slice(px);
            }
        }
        (buf, layout)
    };
    // Gray8 is the reference the others are compared with.
    for format in PixelFormat::ALL.into_iter().filter(|&f| f != PixelFormat::Gray8) {
        let (buf, layout) = encode(format, 24);
        assert_eq!(push_and_wait(&e, &buf, layout).nrq, gray, "{format:?}");
    }
}

#[test]
fn region_of_interest_scores_only_the_sector() {
    let f = frame("tests/fixtures/sim_sector_800x540.png");
    let roi = Roi { x: 100, y: 20, width: 600, height: 500 };
    let cropped = GrayFrame::new(
        roi.width,
        roi.height,
        (0..roi.height).flat_map(|y| f.pixels[(roi.y + y) * f.width + roi.x..][..roi.width].to_vec()).collect(),
    )
    .unwrap();
    let offline = offline_scorer().score(&cropped, &ScoreOptions::default()).unwrap();
    let e = engine(1, EngineConfig { roi: Some(roi), ..unlimited(&f) });
    let r = push_and_wait(&e, &f.pixels, FrameLayout::packed(f.width, f.height, PixelFormat::Gray8));
    assert_eq!(r.patches_scored as usize, offline.patches.len());
    assert!((r.nrq - offline.nrq).abs() < 1e-9);

    // A frame the ROI does not fit is counted as failed, with a reason, and the engine goes on.
    let small = frame("tests/fixtures/sim_small_200x150.png");
    e.push(&small.pixels, FrameLayout::packed(small.width, small.height, PixelFormat::Gray8), 0).unwrap();
    let t = std::time::Instant::now();
    while e.stats().frames_failed == 0 && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = push_and_wait(&e, &f.pixels, FrameLayout::packed(f.width, f.height, PixelFormat::Gray8));
    assert!(r.nrq.is_finite());
    assert_eq!(e.stats().frames_failed, 1);
    assert!(e.last_error().unwrap().contains("region of interest"), "{:?}", e.last_error());
}

#[test]
fn a_tight_budget_rotates_patches_over_frames() {
    let f = frame("tests/fixtures/sim_sector_800x540.png");
    let cfg = EngineConfig { budget_ms: 0.5, window_frames: 100, ..EngineConfig::for_frames(f.width, f.height) };
    let e = engine(1, cfg);
    let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
    let mut coverage = Vec::new();
    for _ in 0..30 {
        let r = push_and_wait(&e, &f.pixels, layout);
        assert_eq!(r.patches_scored, 1, "a 0.5 ms budget affords one patch");
        assert!(r.deadline_missed);
        coverage.push(r.coverage);
    }
    assert!((coverage[0] - 1.0 / 28.0).abs() < 1e-6);
    assert!((coverage[13] - 14.0 / 28.0).abs() < 1e-6);
    assert_eq!(coverage[29], 1.0, "28 frames cover the grid");
    // Once covered, the windowed score is the offline score of the (unchanged) frame.
    let offline = offline_scorer().score(&f, &ScoreOptions::default()).unwrap();
    let last = push_and_wait(&e, &f.pixels, layout);
    assert!((last.nrq - offline.nrq).abs() < 1e-9);
    let s = e.stop();
    assert_eq!((s.frames_scored, s.deadline_misses), (31, 31));
    assert!(s.latency_p50_ms > 0.0 && s.latency_p99_ms >= s.latency_p50_ms);
}

#[test]
fn every_pushed_frame_is_accounted_for() {
    let f = frame("tests/fixtures/sim_linear_640x480.png");
    let e = engine(1, EngineConfig { budget_ms: 33.0, ..EngineConfig::for_frames(f.width, f.height) });
    let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
    // 60 fps for one second: faster than the worker, so frames are skipped, none lost silently.
    for i in 0..60u64 {
        e.push(&f.pixels, layout, i * 16_667).unwrap();
        std::thread::sleep(Duration::from_micros(16_667));
    }
    // Wait until the worker has settled every frame (however slow the machine is).
    let settled =
        |s: &usq::engine::EngineStats| s.frames_scored + s.frames_dropped + s.frames_skipped + s.frames_failed;
    let t = std::time::Instant::now();
    while settled(&e.stats()) < 60 && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = e.stop();
    assert_eq!(s.frames_pushed, 60);
    assert!(s.frames_scored >= 1, "{s:?}");
    assert_eq!(settled(&s), 60, "{s:?}");
    assert_eq!(s.frames_failed, 0, "{s:?}");
}

#[test]
fn bad_pushes_are_refused() {
    let f = frame("tests/fixtures/sim_small_200x150.png");
    let e = engine(1, EngineConfig::for_frames(f.width, f.height));
    let big = FrameLayout::packed(1000, 1000, PixelFormat::Gray8);
    assert!(e.push(&vec![0; 1_000_000], big, 0).is_err(), "larger than a slot");
    let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Rgb24);
    assert!(e.push(&f.pixels, layout, 0).is_err(), "buffer shorter than the layout");
    let odd = FrameLayout { width: 10, height: 10, stride: 5, format: PixelFormat::Gray8 };
    assert!(e.push(&[0; 100], odd, 0).is_err(), "stride shorter than a row");
    assert_eq!(e.stats().frames_pushed, 0);
    let mut cfg = EngineConfig::for_frames(10, 10);
    cfg.organ = Some("Spleen".into());
    let err = Engine::start(offline_scorer(), cfg).err().unwrap();
    assert!(err.to_string().contains("unknown organ"), "{err}");
}

/// Live, the quality index is the offline one when the whole grid fits, and absent while the
/// window holds less than half the grid (a few patches read higher than whole frames).
#[test]
fn live_quality_index_equals_offline_and_waits_for_coverage() {
    use usq::manifold::calibration::QualityScale;
    let f = frame("tests/fixtures/sim_sector_800x540.png");
    let mut set = manifolds();
    let mut enc = Encoder::from_path(seeded_model(), 1).unwrap();
    for i in 0..set.organs.len() {
        let alone = ManifoldSet { organs: vec![set.organs[i].clone()] };
        let n = usq::quality::score(&mut enc, &alone, &f, &ScoreOptions::default()).unwrap().nrq;
        set.organs[i].quality = Some(QualityScale::new(vec![n - 20.0, n - 10.0, n - 1.0, n + 5.0, n + 20.0]).unwrap());
    }
    let organ = set.organs[0].name.clone();
    let opts = ScoreOptions { organ: Some(organ.clone()), max_patches: None };
    let offline = Scorer::from_parts(Encoder::from_path(seeded_model(), 1).unwrap(), set.clone())
        .unwrap()
        .score(&f, &opts)
        .unwrap();
    let q = offline.quality.expect("the organ has a scale");
    assert_eq!(q.organ, organ);
    assert!((q.index - 50.0 - 25.0 / 6.0).abs() < 1e-6, "n sits 1/6 of the way from n-1 to n+5: {}", q.index);

    let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
    let start = |cfg: EngineConfig| {
        Engine::start(Scorer::from_parts(Encoder::from_path(seeded_model(), 1).unwrap(), set.clone()).unwrap(), cfg)
            .unwrap()
    };
    let e = start(EngineConfig { organ: Some(organ.clone()), ..unlimited(&f) });
    let r = push_and_wait(&e, &f.pixels, layout);
    assert!((r.quality.unwrap() - q.index).abs() < 1e-6, "live {:?} vs offline {}", r.quality, q.index);
    drop(e);

    // A budget of one patch per frame: the first result covers 1/28 of the grid, so no index.
    let cfg = EngineConfig {
        organ: Some(organ),
        budget_ms: 0.5,
        window_frames: 100,
        ..EngineConfig::for_frames(f.width, f.height)
    };
    let e = start(cfg);
    let r = push_and_wait(&e, &f.pixels, layout);
    assert_eq!(r.patches_scored, 1);
    assert_eq!(r.quality, None);
}

/// The patch view behind a result: with the whole grid every frame it is the offline score's
/// patches and worst region; under a one-patch budget it holds the one patch scored.
#[test]
fn the_patch_view_shows_the_scores_behind_the_latest_result() {
    let f = frame("tests/fixtures/sim_sector_800x540.png");
    let offline = offline_scorer().score(&f, &ScoreOptions::default()).unwrap();
    let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
    let e = engine(1, unlimited(&f));
    assert_eq!(e.patch_view().frame_id, 0, "no result yet");
    let r = push_and_wait(&e, &f.pixels, layout);
    let v = e.patch_view();
    assert_eq!((v.frame_id, v.width, v.height, v.pad_left, v.pad_top), (r.frame_id, 800, 540, 0, 0));
    let (patches, worst) = v.scored_patches().unwrap();
    assert_eq!(patches.len(), offline.patches.len());
    for (a, b) in patches.iter().zip(&offline.patches) {
        assert_eq!((a.x, a.y), (b.x, b.y));
        assert!((a.loglik - b.loglik).abs() < 1e-9);
    }
    assert_eq!(worst, offline.worst);
    drop(e);

    let cfg = EngineConfig { budget_ms: 0.5, window_frames: 100, ..EngineConfig::for_frames(f.width, f.height) };
    let e = engine(1, cfg);
    let r = push_and_wait(&e, &f.pixels, layout);
    let v = e.patch_view();
    assert_eq!(v.frame_id, r.frame_id);
    assert_eq!(v.scores.iter().filter(|s| s.is_some()).count(), 1);
    assert_eq!(v.scored_patches().unwrap().1, [0]);
}
