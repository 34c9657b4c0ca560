//! Criterion benches: the encoder (fp32 and int8, batch 1 and 4, one and two threads), a whole
//! NRQ frame, uLPIPS of a pair, the pure preprocessing, acquisition-check and metric maths, and
//! the project's int8 linear kernels.
//!
//!     cargo bench --bench encoder              # all
//!     cargo bench --bench encoder -- forward   # one group
//!     cargo bench --bench encoder -- linear_i8 # the int8 linear kernels alone
//!
//! Models are read from models/ (fp32 `tinyusfm.onnx`, int8 `tinyusfm-int8.onnx`).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::PathBuf;
use usq::metrics::ulpips::{TokenGrid, layer_terms};
use usq::{Encoder, EncoderOptions, GrayFrame, ManifoldSet, ScoreOptions, Scorer};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn frame() -> GrayFrame {
    GrayFrame::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sim_sector_800x540.png"))
        .expect("fixture frame")
}

fn patch_inputs(frame: &GrayFrame, n: usize) -> Vec<Vec<f32>> {
    let (padded, patches) = usq::quality::nrq_patches(frame, None).unwrap();
    (0..n)
        .map(|i| {
            let mut buf = vec![0f32; 224 * 224];
            usq::imaging::preprocess::crop_patch(&padded, patches[i % patches.len()], &mut buf);
            buf
        })
        .collect()
}

fn forward(c: &mut Criterion) {
    let frame = frame();
    let mut group = c.benchmark_group("forward");
    group.sample_size(20);
    for (name, file) in [("fp32", "tinyusfm.onnx"), ("int8", "tinyusfm-int8.onnx")] {
        for (batch, threads) in [(1, 1), (4, 1), (1, 2)] {
            let mut enc = Encoder::from_path_with(models().join(file), EncoderOptions { batch, threads }).unwrap();
            let inputs = patch_inputs(&frame, batch);
            let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
            let id = BenchmarkId::new(name, format!("batch{batch}-threads{threads}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    enc.run_with(&refs, |_, l| {
                        black_box(l);
                    })
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn nrq_frame(c: &mut Criterion) {
    let frame = frame();
    let manifolds = ManifoldSet::load_dir(models().join("nrq")).unwrap();
    let mut group = c.benchmark_group("nrq_frame");
    group.sample_size(10);
    for batch in [1, 4] {
        let enc = Encoder::from_path(models().join("tinyusfm.onnx"), batch).unwrap();
        let mut scorer = Scorer::from_parts(enc, manifolds.clone()).unwrap();
        group.bench_function(BenchmarkId::new("fp32", format!("batch{batch}")), |b| {
            b.iter(|| scorer.score(&frame, &ScoreOptions::default()).unwrap().nrq)
        });
    }
    group.finish();
}

fn ulpips_pair(c: &mut Criterion) {
    let frame = frame();
    let mut enc = Encoder::from_path(models().join("tinyusfm.onnx"), 1).unwrap();
    let noisy = GrayFrame::new(
        frame.width,
        frame.height,
        frame.pixels.iter().enumerate().map(|(i, &p)| p.saturating_add((i * 31 % 17) as u8)).collect(),
    )
    .unwrap();
    let mut group = c.benchmark_group("ulpips");
    group.sample_size(10);
    group.bench_function("pair", |b| b.iter(|| usq::quality::compare(&mut enc, &frame, &noisy).unwrap().ulpips));
    // The maths alone, on one layer of features.
    let a = enc.run(&[&usq::imaging::preprocess::ulpips_input(&frame)]).unwrap().remove(0);
    let n = enc.run(&[&usq::imaging::preprocess::ulpips_input(&noisy)]).unwrap().remove(0);
    let (ga, gn) = (TokenGrid::from_encoder_output(&a.layers[0]), TokenGrid::from_encoder_output(&n.layers[0]));
    group.bench_function("layer_terms", |b| b.iter(|| layer_terms(black_box(&ga), black_box(&gn))));
    group.finish();
}

fn preprocessing(c: &mut Criterion) {
    let frame = frame();
    let mut group = c.benchmark_group("preprocess");
    group.bench_function("ulpips_input_800x540", |b| {
        b.iter(|| usq::imaging::preprocess::ulpips_input(black_box(&frame)))
    });
    group.bench_function("pad_and_grid_800x540", |b| b.iter(|| usq::quality::nrq_patches(black_box(&frame), None)));
    // The acquisition checks the live engine runs on every frame: the measures and the change
    // from the previous frame.
    group.bench_function("checks_measure_800x540", |b| {
        b.iter(|| usq::checks::measure(black_box(&frame.pixels), frame.width, frame.height))
    });
    let previous: Vec<u8> = frame.pixels.iter().map(|v| v.wrapping_add(1)).collect();
    group.bench_function("checks_frame_change_800x540", |b| {
        b.iter(|| usq::checks::frame_change(black_box(&previous), black_box(&frame.pixels)))
    });
    group.finish();
}

/// The project's int8 linear kernels on the model's four layer shapes (197 tokens; qkv, proj,
/// fc1, fc2), one thread: every kernel this CPU runs (the op's pick, and the 256-bit VNNI body
/// beside the 512-bit one). One forward runs each shape 12 times.
fn linear_i8(c: &mut Criterion) {
    use usq::bench_hooks::Int8Linear;
    let mut group = c.benchmark_group("linear_i8");
    group.sample_size(30);
    let mut rng = fastrand::Rng::with_seed(3);
    for (name, k, n) in [("qkv", 192, 576), ("proj", 192, 192), ("fc1", 192, 768), ("fc2", 768, 192)] {
        let x: Vec<i8> = (0..197 * k).map(|_| rng.i8(..)).collect();
        let w: Vec<i8> = (0..k * n).map(|_| rng.i8(..)).collect();
        let op = Int8Linear::new(&w, k, n);
        let mut out = vec![0i32; 197 * n];
        for kernel in Int8Linear::kernels() {
            group
                .bench_function(BenchmarkId::new(kernel, name), |b| b.iter(|| op.run(kernel, black_box(&x), &mut out)));
        }
    }
    group.finish();
}

criterion_group!(benches, forward, nrq_frame, ulpips_pair, preprocessing, linear_i8);
criterion_main!(benches);
