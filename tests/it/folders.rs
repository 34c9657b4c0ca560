//! Folder-scale runs of the CLI: folders walked and counted, threads across images giving the
//! same results as one thread, CSV and the aligned table, folder comparisons paired by path,
//! and the calibrated quality index that `fit-nrq` writes and every score reports.

use crate::common::*;
use std::path::Path;
use std::process::Output;

const MANIFOLD: &str = "tests/fixtures/manifold";
const IMAGES: [&str; 5] = [
    "tests/fixtures/sim_linear_640x480.png",
    "tests/fixtures/sim_linear_640x480_blur.png",
    "tests/fixtures/sim_sector_800x540.png",
    "tests/fixtures/sim_small_200x150.png",
    "tests/fixtures/sim_tall_180x400.png",
];

fn usq(args: &[&str]) -> Output {
    let out = usq_command().args(args).current_dir(repo()).output().expect("usq runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    out
}

fn ok(args: &[&str]) -> (String, String) {
    let out = usq(args);
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

fn json(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn copy(rel: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(at(rel), to).unwrap();
}

/// A folder of the fixtures, two levels deep, with files that are not images beside them.
fn image_folder() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy(IMAGES[0], &d.path().join("a/1.png"));
    copy(IMAGES[1], &d.path().join("a/2.png"));
    copy(IMAGES[2], &d.path().join("b/deeper/3.png"));
    copy(IMAGES[3], &d.path().join("c.PNG"));
    std::fs::write(d.path().join("notes.txt"), "not an image").unwrap();
    std::fs::write(d.path().join("._c.PNG"), "a macOS companion file").unwrap();
    d
}

#[test]
fn a_folder_scores_like_its_files_and_threads_change_nothing() {
    let m = seeded_model().display().to_string();
    let dir = image_folder();
    let root = dir.path().to_str().unwrap();
    let (folder, stderr) = ok(&["score", root, "--manifold", MANIFOLD, "--model", &m, "--json", "--threads", "2"]);
    assert!(stderr.contains("skipped 2 files: 1 hidden file, 1 not an image file (.txt)"), "{stderr}");
    assert!(stderr.contains("scored 4 of 4 images"), "{stderr}");
    // stderr is a pipe here: no progress bar (it draws only on a terminal).
    assert!(!stderr.contains("/s,") && !stderr.contains('\u{1b}') && !stderr.contains('\r'), "{stderr}");
    let folder = json(&folder);
    let files: Vec<String> = ["a/1.png", "a/2.png", "b/deeper/3.png", "c.PNG"]
        .iter()
        .map(|r| dir.path().join(r).display().to_string())
        .collect();
    let mut args = vec!["score", "--manifold", MANIFOLD, "--model", &m, "--json"];
    args.extend(files.iter().map(String::as_str));
    let single = json(&ok(&args).0);
    assert_eq!(folder.len(), 4);
    for (f, (s, path)) in folder.iter().zip(single.iter().zip(&files)) {
        assert_eq!(f["path"].as_str().unwrap(), path.as_str(), "sorted, recursive order");
        // Exactly equal: each thread runs the same optimised model on the same inputs.
        assert_eq!(f["nrq"], s["nrq"], "{path}");
        assert_eq!(f["patches"], s["patches"], "{path}");
    }
}

#[test]
fn heatmaps_of_a_folder_are_named_by_path_below_it() {
    let m = seeded_model().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    copy(IMAGES[3], &dir.path().join("a/x.png"));
    copy(IMAGES[3], &dir.path().join("b/x.png"));
    let out = tempfile::tempdir().unwrap();
    let heat = out.path().join("heat.png");
    ok(&[
        "score",
        dir.path().to_str().unwrap(),
        "--manifold",
        MANIFOLD,
        "--model",
        &m,
        "--heatmap",
        heat.to_str().unwrap(),
    ]);
    let mut names: Vec<String> =
        std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["heat-a_x.png", "heat-b_x.png"], "two images of one name do not overwrite each other");
}

#[test]
fn csv_and_the_text_table_whatever_the_path_lengths() {
    let m = seeded_model().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("a folder, with a comma and a much longer name than the table's columns/x.png");
    copy(IMAGES[3], &long);
    copy(IMAGES[4], &dir.path().join("y.png"));
    let root = dir.path().to_str().unwrap();
    let (csv, _) = ok(&["score", root, "--manifold", MANIFOLD, "--model", &m, "--csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..4], ["path", "nrq", "quality", "quality_organ"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], long.to_str().unwrap(), "a path with a comma survives as one cell");
    assert!(rows[0][1].parse::<f64>().unwrap().is_finite());
    assert_eq!(&rows[0][2], "", "no quality without a scale");

    let (text, _) = ok(&["score", root, "--manifold", MANIFOLD, "--model", &m]);
    let lines: Vec<&str> = text.lines().collect();
    let column = lines[0].find("image").unwrap();
    assert_eq!(lines[1].find(long.to_str().unwrap()), Some(column), "{text}");
    assert_eq!(lines[2].find(dir.path().join("y.png").to_str().unwrap()), Some(column), "{text}");
}

#[test]
fn empty_and_missing_inputs_are_clear_errors() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.md"), "x").unwrap();
    let out = usq(&["score", empty.path().to_str().unwrap(), "--manifold", MANIFOLD]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no image files found") && err.contains("1 not an image file"),
        "{err}"
    );
    let out = usq(&["score", "no/such/folder", "--manifold", MANIFOLD]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no/such/folder"));
    let out = usq(&["score", IMAGES[0], "--manifold", MANIFOLD, "--threads", "0"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--threads"));
}

#[test]
fn folders_compare_pair_by_relative_path() {
    let m = seeded_model().display().to_string();
    let (refs, imgs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy("tests/fixtures/sim_linear_640x480.png", &refs.path().join("s1/frame.png"));
    copy("tests/fixtures/sim_linear_640x480.jpg", &imgs.path().join("s1/frame.jpg"));
    copy("tests/fixtures/sim_sector_800x540.png", &refs.path().join("sector.png"));
    copy("tests/fixtures/sim_sector_800x540_jpeg.png", &imgs.path().join("sector.png"));
    copy("tests/fixtures/sim_small_200x150.png", &refs.path().join("only-ref.png"));
    copy("tests/fixtures/sim_small_200x150.png", &imgs.path().join("only-img.png"));
    let (r, i) = (refs.path().to_str().unwrap(), imgs.path().to_str().unwrap());
    let (out, stderr) = ok(&["compare", r, i, "--model", &m, "--json", "--threads", "2"]);
    assert!(stderr.contains("1 references have no image: only-ref.png"), "{stderr}");
    assert!(stderr.contains("1 images have no reference: only-img.png"), "{stderr}");
    let lines = json(&out);
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["ref"].as_str().unwrap().ends_with("s1/frame.png"));
    assert!(lines[0]["img"].as_str().unwrap().ends_with("s1/frame.jpg"));
    // Each pair's value is the one a single comparison gives.
    for l in &lines {
        let single =
            json(&ok(&["compare", l["ref"].as_str().unwrap(), l["img"].as_str().unwrap(), "--model", &m, "--json"]).0);
        assert_eq!(l["ulpips"], single[0]["ulpips"]);
    }
    let (csv, _) = ok(&["compare", r, i, "--model", &m, "--csv"]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("ref,img,ulpips,ulpips_weighted,layer0_block"), "{csv}");
    let out = usq(&["compare", r, IMAGES[0], "--model", &m]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("both be files or both be folders"));
}

#[test]
fn fit_nrq_writes_a_quality_scale_that_every_score_reports() {
    let m = seeded_model().display().to_string();
    let (root, cal, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fit_frames = [
        "tests/fixtures/sim_linear_640x480.png",
        "tests/fixtures/sim_linear_640x480_16bit.png",
        "tests/fixtures/sim_linear_640x480_rgb.png",
        "tests/fixtures/sim_sector_800x540.png",
        "tests/fixtures/sim_tall_180x400.png",
    ];
    for (k, f) in fit_frames.iter().enumerate() {
        copy(f, &root.path().join(format!("Phantom/{k}.png")));
    }
    // Five other clean frames calibrate (the fit's own frames would flatter the scale).
    let cal_frames = [
        "tests/fixtures/sim_linear_640x480.jpg",
        "tests/fixtures/sim_linear_640x480_blur.png",
        "tests/fixtures/sim_linear_640x480_noise.png",
        "tests/fixtures/sim_sector_800x540_jpeg.png",
        "tests/fixtures/sim_small_200x150.png",
    ];
    for (k, f) in cal_frames.iter().enumerate() {
        let ext = Path::new(f).extension().unwrap().to_str().unwrap();
        copy(f, &cal.path().join(format!("Phantom/{k}.{ext}")));
    }
    let (r, c, o) = (root.path().to_str().unwrap(), cal.path().to_str().unwrap(), out.path().to_str().unwrap());
    let (report, _) =
        ok(&["fit-nrq", r, "--out", o, "--model", &m, "--pca-dim", "6", "--calibration", c, "--threads", "2"]);
    assert!(report.contains("quality scale from 5 calibration frames"), "{report}");
    let organ = usq::OrganModel::load(out.path().join("Phantom.npz")).unwrap();
    let scale = organ.quality.expect("a scale from 5 frames");

    // Scoring the calibration frames against the organ gives their ranks: 0, 25, 50, 75, 100.
    let mut args = vec!["score", "--manifold", o, "--model", &m, "--organ", "Phantom", "--json", c];
    let lines = json(&ok(&args).0);
    let mut got: Vec<(f64, f64)> =
        lines.iter().map(|l| (l["nrq"].as_f64().unwrap(), l["quality"].as_f64().unwrap())).collect();
    got.sort_by(|a, b| a.0.total_cmp(&b.0));
    let nrqs: Vec<f64> = got.iter().map(|g| g.0).collect();
    for (a, b) in nrqs.iter().zip(scale.values()) {
        assert!((a - b).abs() < 1e-9, "the scale holds the frames' NRQs: {nrqs:?} vs {:?}", scale.values());
    }
    let ranks: Vec<f64> = got.iter().map(|g| g.1).collect();
    for (q, want) in ranks.iter().zip([0.0, 25.0, 50.0, 75.0, 100.0]) {
        assert!((q - want).abs() < 1e-6, "{ranks:?}");
    }
    assert!(lines.iter().all(|l| l["quality_organ"] == "Phantom"));
    // Without --organ, the organ the frame fits best reads it; CSV and the table carry it.
    args.retain(|a| *a != "--organ" && *a != "Phantom");
    assert!(json(&ok(&args).0).iter().all(|l| l["quality"].as_f64().is_some()));
    let (table, _) = ok(&["score", "--manifold", o, "--model", &m, IMAGES[0]]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(row[1].parse::<f64>().is_ok_and(|q| (0.0..=100.0).contains(&q)), "{table}");

    // The default hold-out needs 25 frames for 5; with 5 frames there is no scale, and it says so.
    let (report, _) = ok(&["fit-nrq", r, "--out", o, "--model", &m, "--pca-dim", "6"]);
    assert!(report.contains("no quality scale (0 calibration frames; at least 5 needed)"), "{report}");
    assert!(usq::OrganModel::load(out.path().join("Phantom.npz")).unwrap().quality.is_none());
    let lines = json(&ok(&["score", "--manifold", o, "--model", &m, "--json", IMAGES[0]]).0);
    assert!(lines[0]["quality"].is_null());
}
