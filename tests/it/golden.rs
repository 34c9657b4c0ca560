//! Parity with the independent NumPy/onnxruntime reference (models/reference/), on the
//! seeded contract model and the project's simulated fixtures. Goldens: tests/golden/golden.json.

use crate::common::*;
use sha2::{Digest, Sha256};
use usq::{Encoder, GrayFrame, ScoreOptions, Scorer};

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().expect("number")
}

#[test]
fn decoding_matches_the_reference() {
    for d in golden()["decode"].as_array().unwrap() {
        let path = d["path"].as_str().unwrap();
        let frame = GrayFrame::open(at(path)).unwrap();
        assert_eq!(
            (frame.width as u64, frame.height as u64),
            (d["width"].as_u64().unwrap(), d["height"].as_u64().unwrap()),
            "{path}"
        );
        let sum: u64 = frame.pixels.iter().map(|&p| p as u64).sum();
        match d["gray_sha256"].as_str() {
            Some(sha) => {
                let got = format!("{:x}", Sha256::digest(&frame.pixels));
                assert_eq!(got, sha, "{path}: gray plane differs from the reference");
            }
            None => {
                // JPEG decoders may round a few pixels differently: the mean may move by little.
                let want = d["gray_sum"].as_u64().unwrap();
                let mean_diff = (sum as f64 - want as f64).abs() / frame.pixels.len() as f64;
                assert!(mean_diff < 0.05, "{path}: mean gray differs by {mean_diff}");
            }
        }
    }
}

fn check_ulpips(records: &[serde_json::Value]) -> usize {
    let mut scorer = Scorer::for_comparison(Encoder::from_path(seeded_model(), 1).unwrap());
    let mut checked = 0;
    for g in records {
        let (r, i) = (g["ref"].as_str().unwrap(), g["img"].as_str().unwrap());
        let (Some(rp), Some(ip)) = (resolve(r), resolve(i)) else {
            skip(&format!("{r} or {i} is not here"));
            continue;
        };
        let rep = scorer.compare(&GrayFrame::open(rp).unwrap(), &GrayFrame::open(ip).unwrap()).unwrap();
        let want = f(&g["ulpips"]);
        let tol = 1e-4 * want.abs() + 1e-9;
        assert!((rep.ulpips - want).abs() <= tol, "{r} vs {i}: {} against reference {want}", rep.ulpips);
        for (l, wl) in rep.layers.iter().zip(g["layers"].as_array().unwrap()) {
            assert_eq!(l.block as u64, wl["block"].as_u64().unwrap());
            for (got, key) in [(l.structure, "structure"), (l.gram, "gram")] {
                let w = f(&wl[key]);
                assert!((got - w).abs() <= 1e-4 * w.abs() + 1e-9, "{r} vs {i} block {} {key}: {got} vs {w}", l.block);
            }
        }
        checked += 1;
    }
    checked
}

#[test]
fn ulpips_matches_the_reference() {
    assert!(check_ulpips(golden()["ulpips"].as_array().unwrap()) >= 6);
}

fn check_nrq(records: &[serde_json::Value], scorer: &mut Scorer) -> usize {
    let mut checked = 0;
    for g in records {
        let path = g["path"].as_str().unwrap();
        let (Some(image), Some(dir)) = (resolve(path), resolve(g["manifold"].as_str().unwrap())) else {
            skip(&format!("{path} or manifold {} is not here", g["manifold"]));
            continue;
        };
        scorer.set_manifolds(usq::ManifoldSource::Dir(dir)).unwrap();
        let opts = ScoreOptions { organ: g["organ"].as_str().map(String::from), max_patches: None };
        let rep = scorer.score(&GrayFrame::open(image).unwrap(), &opts).unwrap();
        let want = f(&g["nrq"]);
        // The bar is 0.01 absolute; parity is far tighter than that.
        assert!(
            (rep.nrq - want).abs() < 1e-3 * want.abs().max(1.0),
            "{path} organ {:?}: {} vs {want}",
            g["organ"],
            rep.nrq
        );
        assert_eq!(rep.worst.len() as u64, g["k"].as_u64().unwrap(), "{path}: k");
        let patches = g["patches"].as_array().unwrap();
        assert_eq!(rep.patches.len(), patches.len(), "{path}: patch count");
        for (p, w) in rep.patches.iter().zip(patches) {
            assert_eq!(
                (p.x as u64, p.y as u64),
                (w["x"].as_u64().unwrap(), w["y"].as_u64().unwrap()),
                "{path}: patch order"
            );
            let wl = f(&w["loglik"]);
            assert!(
                (p.loglik - wl).abs() < 1e-3 * wl.abs().max(1.0),
                "{path} patch ({}, {}): {} vs {wl}",
                p.x,
                p.y,
                p.loglik
            );
        }
        checked += 1;
    }
    checked
}

#[test]
fn nrq_matches_the_reference() {
    let mut scorer = Scorer::for_comparison(Encoder::from_path(seeded_model(), 4).unwrap());
    let n = check_nrq(golden()["nrq"].as_array().unwrap(), &mut scorer);
    assert!(n >= 5);
}

#[test]
fn nrq_with_the_published_organ_files_matches_the_reference() {
    if shared_data().is_none() {
        return skip("../shared/data is absent: published organ files not checked");
    }
    let mut scorer = Scorer::for_comparison(Encoder::from_path(seeded_model(), 4).unwrap());
    check_nrq(golden()["nrq_published"].as_array().unwrap(), &mut scorer);
}

#[test]
fn patch_descriptor_matches_the_reference() {
    let mut enc = Encoder::from_path(seeded_model(), 1).unwrap();
    for g in golden()["patch_features"].as_array().unwrap() {
        let frame = GrayFrame::open(at(g["path"].as_str().unwrap())).unwrap();
        let at = usq::imaging::preprocess::PatchOrigin {
            x: g["x"].as_u64().unwrap() as usize,
            y: g["y"].as_u64().unwrap() as usize,
        };
        let z = &usq::quality::patch_descriptors(&mut enc, &frame, &[at]).unwrap()[0];
        let want: Vec<f64> = g["z"].as_array().unwrap().iter().map(f).collect();
        assert_eq!(z.len(), want.len());
        let max = z.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(max < 1e-5, "descriptor differs by {max}");
    }
}

#[test]
fn worst_k_matches_pythons_round() {
    for (n, k) in golden()["worst_k"].as_object().unwrap() {
        assert_eq!(usq::metrics::nrq::worst_k(n.parse().unwrap()) as u64, k.as_u64().unwrap(), "n = {n}");
    }
}

/// Real fetal-head frames (HC18, read from ../shared at run time; goldens in hc18.json).
fn hc18() -> Option<serde_json::Value> {
    if resolve("../shared/data/hc18/images").is_none() {
        skip("../shared/data/hc18 is absent: real-frame parity not checked");
        return None;
    }
    let text = std::fs::read_to_string(at("tests/golden/hc18.json")).unwrap();
    Some(serde_json::from_str(&text).unwrap())
}

#[test]
fn ulpips_on_real_frames_matches_the_reference() {
    if let Some(g) = hc18() {
        assert_eq!(check_ulpips(g["ulpips"].as_array().unwrap()), 8);
    }
}

#[test]
fn nrq_on_real_frames_matches_the_reference() {
    if let Some(g) = hc18() {
        let mut scorer = Scorer::for_comparison(Encoder::from_path(seeded_model(), 4).unwrap());
        assert!(check_nrq(g["nrq"].as_array().unwrap(), &mut scorer) >= 11);
    }
}
