//! The `usq` binary as a user runs it: outputs, and a clear message with a non-zero exit
//! (never a panic) for each kind of bad input.

use crate::common::*;
use std::path::Path;
use std::process::Output;

const LINEAR: &str = "tests/fixtures/sim_linear_640x480.png";
const SMALL: &str = "tests/fixtures/sim_small_200x150.png";

fn usq(args: &[&str]) -> Output {
    usq_command().args(args).current_dir(repo()).output().expect("usq runs")
}

fn with_model<'a>(args: &[&'a str], model: &'a str) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--model", model]);
    v
}

fn model() -> String {
    seeded_model().display().to_string()
}

/// Runs, expects failure with `needle` in stderr and no panic.
fn fails_with(args: &[&str], needle: &str) {
    let out = usq(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail; stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(err.contains(needle), "{args:?}: expected '{needle}' in stderr: {err}");
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn score_json_has_the_documented_shape() {
    let m = model();
    let out = usq(&with_model(&["score", LINEAR, SMALL, "--manifold", "tests/fixtures/manifold", "--json"], &m));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    let l = &lines[0];
    assert_eq!(l["path"], LINEAR);
    assert!(l["nrq"].as_f64().unwrap().is_finite());
    assert!(l["organ"].is_null());
    let patches = l["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 20);
    for p in patches {
        assert!(p["x"].is_u64() && p["y"].is_u64() && p["loglik"].is_f64(), "{p}");
    }
    assert_eq!(lines[1]["patches"].as_array().unwrap().len(), 1);
    // The acquisition checks beside NRQ: the fixtures' manifolds have no clean statistics, so
    // the values are measured but nothing judges them, and stderr says why.
    assert_eq!(l["faults"], serde_json::json!([]));
    let c = &l["checks"];
    assert_eq!((c["judged"].as_bool(), c["organ"].is_null(), c["organ_margin"].is_null()), (Some(false), true, true));
    for k in ["echo_level", "clipped_share", "dead_width", "pixel_std"] {
        assert!(c[k].as_f64().is_some_and(|v| (0.0..=255.0).contains(&v)), "{k}: {c}");
    }
    assert!(c["frame_change"].is_null(), "one image has no previous frame: {c}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no clean-frame statistics for Fetal, Phantom"));
}

/// A reader that stops early (`usq score ... | head`) ends usq quietly: no panic on the broken pipe.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::process::Stdio;
    let m = model();
    let mut child = usq_command()
        .args(with_model(&["score", LINEAR, SMALL, "--manifold", "tests/fixtures/manifold", "--json"], &m))
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("usq runs");
    // Closed before usq has loaded its model, so its first write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {:?} {stderr}", out.status);
}

#[test]
fn score_with_organ_and_max_patches() {
    let m = model();
    let out = usq(&with_model(
        &[
            "score",
            LINEAR,
            "--manifold",
            "tests/fixtures/manifold",
            "--organ",
            "Phantom",
            "--max-patches",
            "5",
            "--json",
        ],
        &m,
    ));
    let l = &json_lines(&out)[0];
    assert_eq!(l["organ"], "Phantom");
    assert_eq!(l["patches"].as_array().unwrap().len(), 5);
}

#[test]
fn score_table_and_heatmap() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let heat = dir.path().join("heat.png");
    let out = usq(&with_model(
        &["score", LINEAR, "--manifold", "tests/fixtures/manifold", "--heatmap", heat.to_str().unwrap()],
        &m,
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().next().unwrap().contains("nrq"), "{text}");
    assert!(text.contains(LINEAR), "{text}");
    let img = image::open(&heat).unwrap();
    assert_eq!((img.width(), img.height()), (640, 480 + 14));
}

#[test]
fn compare_json_has_the_documented_shape() {
    let m = model();
    let out = usq(&with_model(&["compare", LINEAR, "tests/fixtures/sim_linear_640x480_noise.png", "--json"], &m));
    let l = &json_lines(&out)[0];
    assert_eq!(l["ref"], LINEAR);
    assert_eq!(l["img"], "tests/fixtures/sim_linear_640x480_noise.png");
    assert!(l["ulpips"].as_f64().unwrap() > 0.0);
    let blocks: Vec<u64> = l["layers"].as_array().unwrap().iter().map(|x| x["block"].as_u64().unwrap()).collect();
    assert_eq!(blocks, vec![2, 4, 6, 10]);
    let out = usq(&with_model(&["compare", LINEAR, LINEAR], &m));
    assert!(String::from_utf8(out.stdout).unwrap().contains("uLPIPS     0.000000"));
}

/// The weighted uLPIPS is the file's weights applied to the reported per-layer terms, beside an
/// unchanged reference value; weights fitted for other encoder weights, or malformed, are refused.
#[test]
fn compare_weighted_applies_the_weights_file() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.json");
    let layer = |b: u32, s: f64, g: f64| format!(r#"{{"block": {b}, "structure": {s}, "gram": {g}}}"#);
    let write = |label: &str| {
        let layers = [layer(2, 0.5, 0.0), layer(4, 0.25, 1.0), layer(6, 0.0, 0.0), layer(10, 0.1, 0.15)].join(",");
        let text = format!(r#"{{"format": "usq-ulpips-weights/1", "weights": "{label}", "layers": [{layers}]}}"#);
        std::fs::write(&weights, text).unwrap();
    };
    write("seeded-random:numpy-default_rng-20261127 (not trained)");
    let (m, w) = (model(), weights.to_str().unwrap());
    let noise = "tests/fixtures/sim_linear_640x480_noise.png";
    let out = usq(&with_model(&["compare", LINEAR, noise, "--json", "--weights", w], &m));
    let l = &json_lines(&out)[0];
    let t: Vec<(f64, f64)> = l["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["structure"].as_f64().unwrap(), x["gram"].as_f64().unwrap()))
        .collect();
    let expect = 0.5 * t[0].0 + 0.25 * t[1].0 + t[1].1 + 0.1 * t[3].0 + 0.15 * t[3].1;
    let got = l["ulpips_weighted"].as_f64().unwrap();
    assert!((got - expect).abs() <= 1e-12 * expect.abs(), "{got} vs {expect}");
    let plain = &json_lines(&usq(&with_model(&["compare", LINEAR, noise, "--json"], &m)))[0];
    assert_eq!(plain["ulpips"], l["ulpips"], "the reference value does not change");
    assert!(plain.get("ulpips_weighted").is_none(), "no weighted field unless asked");

    write("some other weights");
    fails_with(&with_model(&["compare", LINEAR, noise, "--weights", w], &m), "fitted for encoder weights");
    std::fs::write(&weights, "[1, 2]").unwrap();
    fails_with(&with_model(&["compare", LINEAR, noise, "--weights", w], &m), "not a uLPIPS weights file");
    fails_with(&with_model(&["compare", LINEAR, noise, "--weights", "no/such.json"], &m), "no/such.json");
    // The shipped weights belong to the shipped model, not to the seeded one.
    fails_with(&with_model(&["compare", LINEAR, noise, "--weighted"], &m), "fitted for encoder weights");
}

/// The shipped weights file parses and fits the shipped models (both share their weights).
#[test]
fn the_shipped_ulpips_weights_fit_the_shipped_models() {
    let w = usq::defaults::ulpips_weights().unwrap();
    for model in ["models/tinyusfm.onnx", "models/tinyusfm-int8.onnx"] {
        let enc = usq::Encoder::from_path(at(model), 1).unwrap();
        w.check_model(enc.info()).unwrap();
    }
    let out = usq(&["compare", LINEAR, "tests/fixtures/sim_linear_640x480_blur.png", "--weighted"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("weighted   "));
}

#[test]
fn the_shipped_defaults_need_no_flags() {
    let out = usq(&["score", SMALL, "--json"]);
    let l = &json_lines(&out)[0];
    assert!(l["nrq"].as_f64().unwrap().is_finite());
}

/// A PNG whose header declares a 0x0 image (valid signature and CRC).
fn zero_size_png(path: &Path) {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend([0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]);
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    std::fs::write(path, png).unwrap();
}

#[test]
fn bad_images() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let full = std::fs::read(at(LINEAR)).unwrap();
    std::fs::write(d("truncated.png"), &full[..full.len() / 3]).unwrap();
    std::fs::write(d("corrupt.png"), b"\x89PNG\r\n\x1a\n this is not a png body").unwrap();
    std::fs::write(d("empty.png"), b"").unwrap();
    zero_size_png(&dir.path().join("zero.png"));
    let manifold = ["--manifold", "tests/fixtures/manifold"];
    for (file, needle) in [
        (d("missing.png"), "missing.png"),
        (d("truncated.png"), "truncated.png"),
        (d("corrupt.png"), "corrupt.png"),
        (d("empty.png"), "empty"),
        (d("zero.png"), "zero.png"),
    ] {
        let mut args = vec!["score", file.as_str()];
        args.extend(manifold);
        fails_with(&with_model(&args, &m), needle);
        fails_with(&with_model(&["compare", LINEAR, &file], &m), needle);
    }
    // One bad image among good ones: the good ones are still scored, the exit is non-zero.
    let out = usq(&with_model(
        &["score", LINEAR, &d("missing.png"), SMALL, "--json", "--manifold", "tests/fixtures/manifold"],
        &m,
    ));
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
}

#[test]
fn bad_models() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("model.onnx");
    std::fs::write(&text, "not a model").unwrap();
    fails_with(&["compare", LINEAR, LINEAR, "--model", text.to_str().unwrap()], "not an ONNX model");
    fails_with(&["compare", LINEAR, LINEAR, "--model", "no/such/model.onnx"], "no/such/model.onnx");
    // An ONNX file that is not a contract model: any fixture-free one will do, so strip the
    // seeded model's metadata.
    use prost::Message;
    let mut p = tract_onnx::pb::ModelProto::decode(std::fs::read(seeded_model()).unwrap().as_slice()).unwrap();
    p.metadata_props.clear();
    let bare = dir.path().join("bare.onnx");
    std::fs::write(&bare, p.encode_to_vec()).unwrap();
    fails_with(
        &["score", SMALL, "--manifold", "tests/fixtures/manifold", "--model", bare.to_str().unwrap()],
        "usq.layers",
    );
}

#[test]
fn bad_manifolds_and_arguments() {
    let m = model();
    let empty = tempfile::tempdir().unwrap();
    fails_with(&with_model(&["score", SMALL, "--manifold", empty.path().to_str().unwrap()], &m), "no .npz");
    fails_with(&with_model(&["score", SMALL, "--manifold", "no/such/dir"], &m), "no/such/dir");
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("Liver.npz"), b"PK\x03\x04garbage").unwrap();
    fails_with(&with_model(&["score", SMALL, "--manifold", broken.path().to_str().unwrap()], &m), "Liver.npz");
    fails_with(
        &with_model(&["score", SMALL, "--manifold", "tests/fixtures/manifold", "--organ", "Spleen"], &m),
        "unknown organ 'Spleen'",
    );
    fails_with(
        &with_model(&["score", SMALL, "--manifold", "tests/fixtures/manifold", "--max-patches", "0"], &m),
        "at least 1",
    );
    // A manifold with a NaN: refused when loaded.
    let nan = tempfile::tempdir().unwrap();
    let mut o = usq::OrganModel::load(at("tests/fixtures/manifold/Fetal.npz")).unwrap();
    o.gmm_means[3] = f64::NAN;
    // `save` writes what it is given; loading validates.
    o.save(nan.path().join("Fetal.npz")).unwrap();
    fails_with(&with_model(&["score", SMALL, "--manifold", nan.path().to_str().unwrap()], &m), "non-finite");
    // An organ fitted on descriptors of another length than the model's 768.
    let short = tempfile::tempdir().unwrap();
    let (f, d, k) = (100, 2, 1);
    let organ = usq::OrganModel {
        name: "Short".into(),
        features: f,
        dim: d,
        components: k,
        pca_mean: vec![0.0; f],
        pca_components: vec![0.01; d * f],
        gmm_weights: vec![1.0],
        gmm_means: vec![0.0; d],
        gmm_covariances: vec![1.0; d],
        log_weights: vec![0.0],
        log_det: vec![0.0],
        clean: None,
        quality: None,
    };
    organ.save(short.path().join("Short.npz")).unwrap();
    fails_with(
        &with_model(&["score", SMALL, "--manifold", short.path().to_str().unwrap()], &m),
        "100-value descriptors",
    );
}

#[test]
fn a_model_with_nan_weights_gives_no_score() {
    use prost::Message;
    let mut p = tract_onnx::pb::ModelProto::decode(std::fs::read(seeded_model()).unwrap().as_slice()).unwrap();
    let w = p.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name == "patch_b").unwrap();
    w.raw_data[..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inf.onnx");
    std::fs::write(&path, p.encode_to_vec()).unwrap();
    let model = path.to_str().unwrap();
    fails_with(&["compare", LINEAR, SMALL, "--model", model], "non-finite");
    fails_with(&["score", SMALL, "--manifold", "tests/fixtures/manifold", "--model", model], "non-finite");
}

#[test]
fn bmp_and_tiff_decode_like_png() {
    let png = usq::GrayFrame::open(at(SMALL)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = image::GrayImage::from_raw(png.width as u32, png.height as u32, png.pixels.clone()).unwrap();
    for ext in ["bmp", "tif"] {
        let p = dir.path().join(format!("small.{ext}"));
        img.save(&p).unwrap();
        assert_eq!(usq::GrayFrame::open(&p).unwrap(), png, "{ext}");
    }
    // Colour BMP: gray through the same weights as colour PNG.
    let rgb = image::open(at("tests/fixtures/sim_linear_640x480_rgb.png")).unwrap().to_rgb8();
    let p = dir.path().join("rgb.bmp");
    rgb.save(&p).unwrap();
    assert_eq!(
        usq::GrayFrame::open(&p).unwrap(),
        usq::GrayFrame::open(at("tests/fixtures/sim_linear_640x480_rgb.png")).unwrap()
    );
}

#[test]
fn fit_nrq_then_score_with_the_result() {
    let m = model();
    let root = tempfile::tempdir().unwrap();
    let organ = root.path().join("Phantom");
    std::fs::create_dir(&organ).unwrap();
    for f in [LINEAR, "tests/fixtures/sim_sector_800x540.png", "tests/fixtures/sim_tall_180x400.png"] {
        std::fs::copy(at(f), organ.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = usq(&with_model(
        &["fit-nrq", root.path().to_str().unwrap(), "--out", out_dir.path().to_str().unwrap(), "--pca-dim", "6"],
        &m,
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let set = usq::ManifoldSet::load_dir(out_dir.path()).unwrap();
    assert_eq!(set.organs[0].name, "Phantom");
    assert_eq!(set.organs[0].dim, 6);
    let scored = usq(&with_model(&["score", SMALL, "--manifold", out_dir.path().to_str().unwrap(), "--json"], &m));
    assert!(json_lines(&scored)[0]["nrq"].as_f64().unwrap().is_finite());

    // fit-nrq wrote the clean statistics: its own frames pass the checks, and the same frame
    // with the gain turned down 9.5 dB (past the 3 dB margin below the darkest fitted frame,
    // short of the 12 dB of lost contact), or blank, raises the fault by name (text and JSON).
    let clean = set.organs[0].clean.expect("fit-nrq writes clean statistics");
    assert_eq!(clean.frames, 3);
    let dark = out_dir.path().join("dark.png");
    let blank = out_dir.path().join("blank.png");
    let frame = image::open(at(LINEAR)).unwrap().to_luma8();
    image::GrayImage::from_fn(frame.width(), frame.height(), |x, y| image::Luma([frame.get_pixel(x, y)[0] / 3]))
        .save(&dark)
        .unwrap();
    image::GrayImage::from_pixel(frame.width(), frame.height(), image::Luma([0])).save(&blank).unwrap();
    let manifold = out_dir.path().to_str().unwrap();
    let (d, b) = (dark.to_str().unwrap(), blank.to_str().unwrap());
    let lines = json_lines(&usq(&with_model(&["score", LINEAR, d, b, "--manifold", manifold, "--json"], &m)));
    let faults: Vec<&serde_json::Value> = lines.iter().map(|l| &l["faults"]).collect();
    assert_eq!(faults, [&serde_json::json!([]), &serde_json::json!(["gain_low"]), &serde_json::json!(["blank"])]);
    assert_eq!(lines[0]["checks"]["organ"], "Phantom");
    assert!(lines[0]["checks"]["judged"].as_bool().unwrap() && lines[0]["checks"]["organ_margin"].as_f64().is_some());
    let table = usq(&with_model(&["score", d, "--manifold", manifold], &m));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().next().unwrap().contains(" faults ") && text.contains(" gain_low "), "{text}");

    // A corrupt image in an organ folder stops the fit and names the file.
    std::fs::write(organ.join("broken.png"), b"nope").unwrap();
    fails_with(
        &with_model(&["fit-nrq", root.path().to_str().unwrap(), "--out", out_dir.path().to_str().unwrap()], &m),
        "broken.png",
    );
    let empty = tempfile::tempdir().unwrap();
    fails_with(
        &with_model(&["fit-nrq", empty.path().to_str().unwrap(), "--out", out_dir.path().to_str().unwrap()], &m),
        "no organ sub-folders",
    );
}

#[test]
fn bench_json_and_profile() {
    let m = model();
    let base = ["bench", "--iterations", "2", "--frame-iterations", "1", "--warmup", "1", "--image", SMALL];
    let records = json_lines(&usq(&with_model(&[&base[..], &["--json"]].concat(), &m)));
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["forward", "nrq_frame"], "{records:?}");
    for r in &records {
        for key in ["p50_ms", "p99_ms", "mean_ms", "load_ms", "peak_rss_mb"] {
            assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {r}");
        }
        assert_eq!((r["threads"].as_u64(), r["batch"].as_u64()), (Some(1), Some(1)), "{r}");
    }
    // 200x150 pads to one 224x224 patch.
    assert_eq!(records[1]["patches"].as_u64(), Some(1));
    // The profile names the project's ops, and only tract's with --tract-ops-only.
    let text = |args: &[&str]| {
        let out = usq(&with_model(args, &m));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let ours = text(&[&base[..], &["--profile"]].concat());
    assert!(ours.contains("UsqAttention") && !ours.contains("Softmax"), "{ours}");
    let tracts = text(&[&base[..], &["--profile", "--tract-ops-only"]].concat());
    assert!(tracts.contains("Softmax") && !tracts.contains("Usq"), "{tracts}");
    fails_with(&["bench", "--tract-ops-only", "--model", "/no/such/model.onnx"], "/no/such/model.onnx");
    fails_with(&["bench", "--model", &m, "--threads", "0"], "threads");
}
