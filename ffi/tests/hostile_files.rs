//! Models and manifolds built to hurt, given to the C library as firmware would (a path from
//! its configuration): each call answers with a status, never a panic at the boundary or an
//! abort, and the next call with good files works in the same process.

use std::ffi::CString;
use std::io::Write;
use std::path::Path;
use std::ptr::{null, null_mut};
use usq_ffi::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn c(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

/// A scorer from these files (NULL = the shipped default); its status, and the handle freed.
fn scorer_status(model: Option<&Path>, manifold: Option<&Path>) -> usq_status {
    let (m, d) = (model.map(c), manifold.map(c));
    let mut s = null_mut();
    // SAFETY: valid C strings or NULL, and an out pointer.
    let status = unsafe {
        usq_scorer_new(m.as_ref().map_or(null(), |p| p.as_ptr()), d.as_ref().map_or(null(), |p| p.as_ptr()), &mut s)
    };
    assert_eq!(status == usq_status::USQ_OK, !s.is_null());
    unsafe { usq_scorer_free(s) };
    status
}

fn engine_status(model: Option<&Path>, manifold: Option<&Path>) -> usq_status {
    let (m, d) = (model.map(c), manifold.map(c));
    // SAFETY: a zeroed plain C struct, filled by the call.
    let mut cfg: usq_engine_config = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { usq_engine_config_default(&mut cfg, 200, 150) }, usq_status::USQ_OK);
    let mut e = null_mut();
    // SAFETY: as above.
    let status = unsafe {
        usq_engine_start(
            m.as_ref().map_or(null(), |p| p.as_ptr()),
            d.as_ref().map_or(null(), |p| p.as_ptr()),
            null(),
            &cfg,
            &mut e,
        )
    };
    assert_eq!(status == usq_status::USQ_OK, !e.is_null());
    unsafe { usq_engine_free(e) };
    status
}

/// A manifold folder holding one organ whose `pca_mean.npy` declares three billion elements.
fn hostile_manifold(dir: &Path) {
    let mut header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3000000000,), }\n".to_vec();
    while !(10 + header.len()).is_multiple_of(64) {
        header.insert(header.len() - 1, b' ');
    }
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header);
    npy.extend([0u8; 16]);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.join("Hostile.npz")).unwrap());
    zip.start_file("pca_mean.npy", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(&npy).unwrap();
    zip.finish().unwrap();
}

#[test]
fn hostile_files_get_a_status_and_leave_the_library_working() {
    let tmp = tempfile::tempdir().unwrap();
    let manifold = tmp.path().join("manifold");
    std::fs::create_dir(&manifold).unwrap();
    hostile_manifold(&manifold);
    let int8 = std::fs::read(repo().join("models/tinyusfm-int8.onnx")).unwrap();
    let half = tmp.path().join("half.onnx");
    std::fs::write(&half, &int8[..int8.len() / 2]).unwrap();
    // The real model with bytes in the middle of its weights and graph overwritten.
    let mut scrambled = int8.clone();
    for i in (int8.len() / 3..int8.len() * 2 / 3).step_by(997) {
        scrambled[i] ^= 0x5a;
    }
    let scrambled_path = tmp.path().join("scrambled.onnx");
    std::fs::write(&scrambled_path, &scrambled).unwrap();
    let png_as_model = repo().join("tests/fixtures/sim_small_200x150.png");

    assert_eq!(scorer_status(None, Some(&manifold)), usq_status::USQ_ERR_MANIFOLD);
    assert_eq!(engine_status(None, Some(&manifold)), usq_status::USQ_ERR_MANIFOLD);
    for model in [&half, &png_as_model] {
        assert_eq!(scorer_status(Some(model), None), usq_status::USQ_ERR_MODEL, "{model:?}");
        assert_eq!(engine_status(Some(model), None), usq_status::USQ_ERR_MODEL, "{model:?}");
    }
    // Scrambled weights may still load (the graph can survive): then it scores or refuses, but
    // it never takes the process down.
    let s = scorer_status(Some(&scrambled_path), None);
    assert!(matches!(s, usq_status::USQ_OK | usq_status::USQ_ERR_MODEL), "{s:?}");

    // The library is not left broken: the shipped defaults still start and score.
    assert_eq!(engine_status(None, None), usq_status::USQ_OK);
    let mut scorer = null_mut();
    assert_eq!(unsafe { usq_scorer_new(null(), null(), &mut scorer) }, usq_status::USQ_OK);
    let img = image::open(repo().join("tests/fixtures/sim_small_200x150.png")).unwrap().to_luma8();
    let desc = usq_frame_desc {
        struct_size: std::mem::size_of::<usq_frame_desc>() as u32,
        width: img.width(),
        height: img.height(),
        stride: 0,
        format: usq_pixel_format::USQ_PIXEL_GRAY8 as u32,
    };
    let mut nrq = f64::NAN;
    // SAFETY: the buffer covers the frame `desc` describes.
    let s = unsafe { usq_scorer_score(scorer, img.as_ptr(), img.len(), &desc, null(), &mut nrq) };
    assert_eq!(s, usq_status::USQ_OK);
    assert!(nrq.is_finite());
    unsafe { usq_scorer_free(scorer) };
}
