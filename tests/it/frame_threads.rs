//! A frame's work spread over several encoders (`Scorer::set_frame_threads`, `Scorer::for_job`)
//! gives the same scores as one encoder, bit for bit, with the seeded model.

use crate::common::*;
use usq::{Encoder, GrayFrame, ManifoldSet, ScoreOptions, Scorer};

fn scorer(batch: usize) -> Scorer {
    let manifolds = ManifoldSet::load_dir(at("tests/fixtures/manifold")).unwrap();
    Scorer::from_parts(Encoder::from_path(seeded_model(), batch).unwrap(), manifolds).unwrap()
}

#[test]
fn patches_split_over_encoders_score_the_same() {
    let f = GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    // Batch 3 on the 28-patch grid: the encoders take runs of whole batches (a short last one).
    let mut s = scorer(3);
    let opts = ScoreOptions::default();
    let one = s.score(&f, &opts).unwrap();
    assert_eq!(one.patches.len(), 28);
    for threads in [2, 3, 5, 16] {
        s.set_frame_threads(threads).unwrap();
        assert_eq!(s.frame_threads(), threads);
        let many = s.score(&f, &opts).unwrap();
        assert_eq!(many.patches, one.patches, "{threads} threads");
        assert_eq!(many.nrq.to_bits(), one.nrq.to_bits(), "{threads} threads");
        assert_eq!(many.worst, one.worst);
        assert_eq!(many.checks, one.checks);
    }
    // Fewer patches than encoders: the spare ones stay idle.
    let few = ScoreOptions { max_patches: Some(2), ..ScoreOptions::default() };
    s.set_frame_threads(1).unwrap();
    let serial = s.score(&f, &few).unwrap();
    s.set_frame_threads(4).unwrap();
    assert_eq!(s.score(&f, &few).unwrap().patches, serial.patches);
    assert!(s.set_frame_threads(0).is_err());
}

#[test]
fn a_pair_on_two_encoders_compares_the_same() {
    let r = GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    let mut i = r.clone();
    for (k, p) in i.pixels.iter_mut().enumerate() {
        *p = p.saturating_add((k % 7) as u8 * 3);
    }
    let mut s = scorer(1);
    let one = s.compare(&r, &i).unwrap();
    s.set_frame_threads(2).unwrap();
    let two = s.compare(&r, &i).unwrap();
    assert_eq!(two, one);
    assert!(two.ulpips > 0.0);
    assert_eq!(s.compare(&r, &r).unwrap().ulpips, 0.0, "identical frames are exactly 0 on two encoders too");
}

#[test]
fn a_job_gives_spare_threads_to_its_items() {
    let s = scorer(1);
    let shape =
        |threads, items| s.for_job(threads, items).unwrap().iter().map(Scorer::frame_threads).collect::<Vec<_>>();
    assert_eq!(shape(1, 10), [1]);
    assert_eq!(shape(2, 10), [1, 1], "whole items first");
    assert_eq!(shape(2, 1), [2], "one image: its patches on both");
    assert_eq!(shape(5, 2), [3, 2]);
    assert_eq!(shape(3, 0), [3], "an empty job still gets a scorer");
    assert!(s.for_job(0, 3).is_err());
}
