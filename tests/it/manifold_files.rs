//! Reading and writing manifold files: the published organ files (reference format, `D`
//! for the dimension, Fortran-ordered components), the project's own, and broken ones.

use crate::common::*;
use ndarray::{Array1, Array2, arr0};
use ndarray_npy::NpzWriter;
use usq::{ErrorKind, ManifoldSet, OrganModel};

#[test]
fn reads_the_published_organ_files() {
    let Some(dir) = resolve("../shared/data/us-metrics-nrq") else {
        return skip("../shared/data/us-metrics-nrq is absent");
    };
    let set = ManifoldSet::load_dir(&dir).unwrap();
    let names: Vec<&str> = set.organs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names.len(), 11, "{names:?}");
    assert!(names.contains(&"Liver") && names.contains(&"Neck_Nerve"));
    for o in &set.organs {
        assert_eq!((o.features, o.dim, o.components), (768, 128, 4), "{}", o.name);
        // The stored log_det is sum(log var) + d log(2 pi): the full Gaussian normaliser.
        let ld: f64 =
            o.gmm_covariances[..128].iter().map(|v| v.ln()).sum::<f64>() + 128.0 * (2.0 * std::f64::consts::PI).ln();
        assert!((o.log_det[0] - ld).abs() < 1e-6 * ld.abs().max(1.0), "{}: {} vs {ld}", o.name, o.log_det[0]);
    }
    set.check_features(usq::contract::DESCRIPTOR_LEN).unwrap();
}

#[test]
fn reads_both_dimension_spellings() {
    let set = ManifoldSet::load_dir(at("tests/fixtures/manifold")).unwrap();
    let dims: Vec<(String, usize)> = set.organs.iter().map(|o| (o.name.clone(), o.dim)).collect();
    assert_eq!(dims, vec![("Fetal".into(), 16), ("Phantom".into(), 24)]);
}

#[test]
fn save_then_load_round_trips() {
    let set = ManifoldSet::load_dir(at("tests/fixtures/manifold")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for o in &set.organs {
        o.save(dir.path().join(format!("{}.npz", o.name))).unwrap();
    }
    assert_eq!(ManifoldSet::load_dir(dir.path()).unwrap(), set);
}

/// Writes an organ file with the given arrays left out or replaced.
fn write_organ(path: &std::path::Path, drop: &[&str], nan_in_means: bool, features: usize) {
    let (d, k) = (3usize, 2usize);
    let mut npz = NpzWriter::new(std::fs::File::create(path).unwrap());
    let mut means = Array2::<f64>::zeros((k, d));
    if nan_in_means {
        means[[1, 2]] = f64::NAN;
    }
    type WriteArray = Box<dyn Fn(&mut NpzWriter<std::fs::File>)>;
    let arrays: Vec<(&str, WriteArray)> = vec![
        ("pca_mean", Box::new(move |w| w.add_array("pca_mean", &Array1::<f64>::zeros(features)).unwrap())),
        (
            "pca_components",
            Box::new(move |w| {
                w.add_array("pca_components", &Array2::<f64>::eye(features).slice_move(ndarray::s![..d, ..])).unwrap()
            }),
        ),
        ("gmm_weights", Box::new(move |w| w.add_array("gmm_weights", &Array1::from_elem(k, 0.5)).unwrap())),
        ("gmm_means", Box::new(move |w| w.add_array("gmm_means", &means).unwrap())),
        ("gmm_covariances", Box::new(move |w| w.add_array("gmm_covariances", &Array2::<f64>::ones((k, d))).unwrap())),
        ("log_weights", Box::new(move |w| w.add_array("log_weights", &Array1::from_elem(k, 0.5f64.ln())).unwrap())),
        ("log_det", Box::new(move |w| w.add_array("log_det", &Array1::<f64>::zeros(k)).unwrap())),
        ("dim", Box::new(move |w| w.add_array("dim", &arr0(d as i64)).unwrap())),
    ];
    for (name, add) in &arrays {
        if !drop.contains(name) {
            add(&mut npz);
        }
    }
    npz.finish().unwrap();
}

#[test]
fn loglik_of_a_hand_made_organ() {
    // PCA = first 3 axes, two unit-variance components at 0 with weights 1/2, log_det 0:
    // loglik = log(2 * 0.5 * exp(-0.5 |x|^2)) = -0.5 |x|^2.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("Toy.npz");
    write_organ(&p, &[], false, 768);
    let o = OrganModel::load(&p).unwrap();
    let mut z = vec![0f64; 768];
    z[0] = 0.6;
    z[1] = 0.8;
    z[700] = 5.0; // outside the PCA subspace: ignored
    let ll = o.loglik(&z, &mut Vec::new());
    assert!((ll + 0.5).abs() < 1e-12, "{ll}");
}

#[test]
fn broken_files_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("Bad.npz");
    write_organ(&p, &["gmm_means"], false, 768);
    let e = OrganModel::load(&p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Manifold);
    assert!(e.to_string().contains("missing key 'gmm_means'"), "{e}");

    write_organ(&p, &["dim"], false, 768);
    assert!(OrganModel::load(&p).unwrap_err().to_string().contains("'dim' (or 'D')"));

    write_organ(&p, &[], true, 768);
    let e = OrganModel::load(&p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");

    write_organ(&p, &[], false, 100);
    let set = ManifoldSet { organs: vec![OrganModel::load(&p).unwrap()] };
    let e = set.check_features(768).unwrap_err();
    assert!(e.to_string().contains("100-value descriptors"), "{e}");

    std::fs::write(&p, b"PK\x03\x04 not really a zip").unwrap();
    assert_eq!(OrganModel::load(&p).unwrap_err().kind(), ErrorKind::Manifold);

    let empty = tempfile::tempdir().unwrap();
    let e = ManifoldSet::load_dir(empty.path()).unwrap_err();
    assert!(e.to_string().contains("no .npz"), "{e}");
}

/// A `.npy` entry (format 1.0) with this header dictionary and these data bytes.
fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{dict}\n").into_bytes();
    while (10 + header.len()) % 64 != 0 {
        header.insert(header.len() - 1, b' ');
    }
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header);
    out.extend(data);
    out
}

/// An archive holding one entry `pca_mean.npy` with these bytes.
fn one_entry_npz(path: &std::path::Path, entry: &[u8]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    zip.start_file("pca_mean.npy", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(entry).unwrap();
    zip.finish().unwrap();
}

/// Files built to hurt the parser get an error before anything is allocated from their
/// headers (ndarray-npy allocates what a header declares): three billion elements in a few
/// bytes, a header length past the entry, an unknown format version. Before the check the first
/// asked for 24 GB and aborted `usq score`.
#[test]
fn hostile_array_headers_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("Hostile.npz");
    let cases: [(Vec<u8>, &str); 4] = [
        (npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3000000000,), }", &[0; 16]), "more elements than"),
        (
            npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000, 100000, 100000, 100000), }",
                &[0; 8],
            ),
            "more elements than",
        ),
        ([b"\x93NUMPY\x01\x00\xff\xff".as_slice(), b"{'descr'"].concat(), "longer than the entry"),
        ([b"\x93NUMPY\x09\x00\x10\x00".as_slice(), &[b' '; 16]].concat(), "unknown .npy version"),
    ];
    for (entry, needle) in cases {
        one_entry_npz(&p, &entry);
        let e = OrganModel::load(&p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Manifold, "{e}");
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
    // Through the CLI: a message and a non-zero exit, not an abort.
    let out = usq_command()
        .args(["score", "tests/fixtures/sim_small_200x150.png", "--manifold", dir.path().to_str().unwrap()])
        .current_dir(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Hostile.npz") && err.contains("unknown .npy version"), "{err}");
}

#[test]
fn unknown_organ_names_the_known_ones() {
    let set = ManifoldSet::load_dir(at("tests/fixtures/manifold")).unwrap();
    let e = set.organ("Spleen").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("Fetal, Phantom"), "{e}");
}

/// The acquisition checks' clean statistics travel as extra `usq_clean_*` keys: written and
/// read back exactly, absent from the published files, refused when only some are there.
#[test]
fn clean_statistics_round_trip_and_are_all_or_none() {
    use usq::checks::{CleanStats, FrameMeasures};
    let mut set = ManifoldSet::load_dir(at("tests/fixtures/manifold")).unwrap();
    assert!(set.organs.iter().all(|o| o.clean.is_none()), "the fixtures carry no statistics");
    let m = [
        FrameMeasures { echo_level: 80.0, clipped_share: 0.001, dead_width: 0.05, pixel_std: 30.0 },
        FrameMeasures { echo_level: 120.0, clipped_share: 0.004, dead_width: 0.1, pixel_std: 45.0 },
    ];
    set.organs[0].clean = Some(CleanStats::from_frames(&m, &[-12.5, -9.0]).unwrap());
    let dir = tempfile::tempdir().unwrap();
    for o in &set.organs {
        o.save(dir.path().join(format!("{}.npz", o.name))).unwrap();
    }
    let back = ManifoldSet::load_dir(dir.path()).unwrap();
    assert_eq!(back, set);
    assert_eq!(back.organs_without_clean_stats(None), vec!["Phantom"]);
    assert!(back.clean_stats_warning(Some("Fetal")).is_none());
    assert!(back.clean_stats_warning(None).unwrap().contains("Phantom"));

    // A copy of the file with its keys renamed, or left out where `rename` says None.
    let rewrite = |to: &str, rename: &dyn Fn(&str) -> Option<String>| {
        let out = dir.path().join(to);
        let mut r = ndarray_npy::NpzReader::new(std::fs::File::open(dir.path().join("Fetal.npz")).unwrap()).unwrap();
        let mut w = NpzWriter::new(std::fs::File::create(&out).unwrap());
        for name in r.names().unwrap() {
            let Some(key) = rename(name.trim_end_matches(".npy")) else { continue };
            if key == "dim" || key == "usq_clean_frames" {
                let v: ndarray::Array0<i64> = r.by_name(&name).unwrap();
                w.add_array(key.as_str(), &v).unwrap();
            } else {
                let v: ndarray::ArrayD<f64> = r.by_name(&name).unwrap();
                w.add_array(key.as_str(), &v).unwrap();
            }
        }
        w.finish().unwrap();
        out
    };
    // A file with some of the keys: refused, naming them.
    let partial = rewrite("Partial.npz", &|k| (k != "usq_clean_pixel_std_p0_5").then(|| k.to_string()));
    let e = OrganModel::load(&partial).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Manifold, "{e}");
    assert!(e.to_string().contains("usq_clean_"), "{e}");
    // The statistics of an older usq (a side balance, the echo level over the whole frame):
    // read as none, so the checks are not judged against them and the warning says so.
    let older = rewrite("Older.npz", &|k| {
        Some(match k {
            "usq_clean_dead_width_p99_5" => "usq_clean_side_balance_p0_5".into(),
            "usq_clean_image_echo_level_p0_5" => "usq_clean_echo_level_p0_5".into(),
            k => k.into(),
        })
    });
    let o = OrganModel::load(&older).unwrap();
    assert_eq!((o.clean, o.pca_mean.clone()), (None, set.organs[0].pca_mean.clone()));
}

/// The shipped manifolds carry clean statistics: `usq fit-nrq` wrote them.
#[test]
fn shipped_manifolds_carry_clean_statistics() {
    let set = ManifoldSet::load_dir(at("models/nrq")).unwrap();
    for o in &set.organs {
        let c = o.clean.as_ref().unwrap_or_else(|| panic!("{} has no clean statistics", o.name));
        assert!(c.frames >= 100 && c.echo_level > 10.0 && c.pixel_std > 5.0, "{}: {c:?}", o.name);
        // And the quality index's scale, from a hundred or more clean frames outside the fit.
        let q = o.quality.as_ref().unwrap_or_else(|| panic!("{} has no quality scale", o.name));
        assert!(q.values().len() >= 100, "{}: {} frames", o.name, q.values().len());
        assert_eq!(q.index(q.values()[q.values().len() / 2]).round(), 50.0);
    }
}

/// The quality scale round-trips through the file, and a scale that is not sorted is refused.
#[test]
fn quality_scale_round_trips_and_is_checked() {
    let mut o = OrganModel::load(at("models/nrq/FetalHead.npz")).unwrap();
    o.quality = Some(usq::manifold::calibration::QualityScale::new(vec![3.0, 1.0, 2.0, 5.0, 4.0]).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("X.npz");
    o.save(&p).unwrap();
    let back = OrganModel::load(&p).unwrap();
    assert_eq!(back.quality.as_ref().unwrap().values(), [1.0, 2.0, 3.0, 4.0, 5.0]);
    // Rewrite the key unsorted: refused with the key named.
    let mut r = ndarray_npy::NpzReader::new(std::fs::File::open(&p).unwrap()).unwrap();
    let names = r.names().unwrap();
    let bad = dir.path().join("Bad.npz");
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&bad).unwrap());
    for name in names {
        let key = name.trim_end_matches(".npy").to_string();
        if key == "usq_quality_nrq" {
            w.add_array(key.as_str(), &ndarray::arr1(&[5.0, 4.0, 3.0, 2.0, 1.0])).unwrap();
        } else {
            let v: ndarray::ArrayD<f64> = match r.by_name(&name) {
                Ok(v) => v,
                Err(_) => {
                    let v: ndarray::ArrayD<i64> = r.by_name(&name).unwrap();
                    w.add_array(key.as_str(), &v).unwrap();
                    continue;
                }
            };
            w.add_array(key.as_str(), &v).unwrap();
        }
    }
    w.finish().unwrap();
    let e = OrganModel::load(&bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Manifold, "{e}");
    assert!(e.to_string().contains("usq_quality_nrq"), "{e}");
}
