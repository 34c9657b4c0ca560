//! `usq live --input`: frames played through the live engine, as plain lines, JSON lines and a
//! CSV record, from a folder, a .y4m video and raw GRAY8; and its bad inputs.

mod common;

use common::*;
use std::process::Output;

fn live(args: &[&str]) -> Output {
    let m = seeded_model().display().to_string();
    let mut v = vec!["live"];
    v.extend_from_slice(args);
    v.extend(["--model", m.as_str(), "--manifold", "tests/fixtures/manifold"]);
    usq_command().args(&v).current_dir(repo()).output().expect("usq runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn plays_a_folder_as_plain_lines_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip");
    std::fs::create_dir(&clip).unwrap();
    for f in ["sim_linear_640x480.png", "sim_linear_640x480_noise.png"] {
        std::fs::copy(at(&format!("tests/fixtures/{f}")), clip.join(f)).unwrap();
    }
    let csv = dir.path().join("rec.csv");
    let args = ["--input", clip.to_str().unwrap(), "--frames", "4", "--fps", "50", "--budget-ms", "10000"];
    let mut with_csv = args.to_vec();
    with_csv.extend(["--record", csv.to_str().unwrap()]);
    let out = ok(&live(&with_csv));
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.starts_with("frame=") && l.contains(" nrq=")), "{out}");
    let rec = std::fs::read_to_string(&csv).unwrap();
    assert!(rec.starts_with("frame_id,timestamp_us,nrq,"), "{rec}");
    assert_eq!(rec.lines().count(), lines.len() + 1);

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let o = live(&json_args);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    for l in ok(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["nrq"].as_f64().unwrap().is_finite() && v["frame_id"].as_u64().is_some(), "{l}");
    }
    assert!(stderr.contains("4 frames pushed"), "the summary: {stderr}");
}

#[test]
fn plays_y4m_and_raw_frames() {
    let f = usq::GrayFrame::open(at("tests/fixtures/sim_small_200x150.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A two-frame 4:2:0 y4m at 25 fps; its luma planes are the gray frame.
    let y4m = dir.path().join("clip.y4m");
    let mut bytes = format!("YUV4MPEG2 W{} H{} F25:1 Ip A1:1 C420jpeg\n", f.width, f.height).into_bytes();
    for _ in 0..2 {
        bytes.extend(b"FRAME\n");
        bytes.extend(&f.pixels);
        bytes.extend(vec![128u8; 2 * f.width.div_ceil(2) * f.height.div_ceil(2)]);
    }
    std::fs::write(&y4m, bytes).unwrap();
    let out = ok(&live(&["--input", y4m.to_str().unwrap(), "--frames", "3", "--budget-ms", "10000", "--json"]));
    assert!(out.lines().count() >= 1, "{out}");
    let raw = dir.path().join("clip.gray");
    std::fs::write(&raw, [f.pixels.clone(), f.pixels.clone()].concat()).unwrap();
    let size = format!("{}x{}", f.width, f.height);
    let out = ok(&live(&["--input", raw.to_str().unwrap(), "--size", &size, "--frames", "3", "--budget-ms", "10000"]));
    assert!(out.lines().count() >= 1, "{out}");
}

#[test]
fn bad_live_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("bad.y4m");
    std::fs::write(&corrupt, b"YUV4MPEG2 W10 H10 F25:1\nNOTAFRAME\n").unwrap();
    let raw = dir.path().join("x.gray");
    std::fs::write(&raw, [0u8; 10]).unwrap();
    for (args, needle) in [
        (vec!["--frames", "1"], "--input"),
        (vec!["--input", "tests/fixtures", "--format", "YUYV"], "--device"),
        (vec!["--input", "tests/fixtures/manifold"], "no images"),
        (vec!["--input", raw.to_str().unwrap()], "--size"),
        (vec!["--input", raw.to_str().unwrap(), "--size", "4x4"], "no whole 4x4"),
        (vec!["--input", corrupt.to_str().unwrap()], "FRAME"),
        (vec!["--input", "tests/fixtures", "--roi", "0,0,5000,10"], "region of interest"),
    ]
    .into_iter()
    .chain(device_errors())
    {
        let o = live(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected '{needle}' in {err}");
    }
}

#[cfg(not(feature = "v4l2"))]
fn device_errors() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![(vec!["--device", "/dev/video0"], "built without V4L2 capture")]
}

#[cfg(feature = "v4l2")]
fn device_errors() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (vec!["--device", "/nonexistent/video9"], "no such device"),
        (vec!["--device", "/dev/null"], "not a V4L2 device"),
        (vec!["--device", "/dev/null", "--format", "H264"], "unknown capture format"),
    ]
}
