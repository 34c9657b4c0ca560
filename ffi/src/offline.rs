//! Single-frame scoring for offline use: NRQ of a frame, uLPIPS of a pair, and image files
//! decoded to gray for programs without a decoder of their own.

use crate::engine::layout_of;
use crate::{
    boundary, check_ptr, check_struct_size, fail, from_error, load_scorer, opt_str, try_mut, try_out, try_status,
    try_take, usq_checks, usq_frame_desc, usq_status,
};
use std::ffi::c_char;
use usq_core::imaging::pixel::gray_frame;
use usq_core::{GrayFrame, ScoreOptions, ScoreReport, Scorer};

/// An encoder and a manifold set for offline scoring.
///
/// Underneath: a `Box`. Created by `usq_scorer_new`, freed by `usq_scorer_free`. Not for
/// concurrent use: one thread at a time per scorer (distinct scorers are independent).
pub struct usq_scorer {
    scorer: Scorer,
}

/// Loads a model and a manifold folder (NULL for the shipped defaults: the fp32 reference
/// model and the shipped manifolds). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_scorer_new(
    model_path: *const c_char,
    manifold_dir: *const c_char,
    out: *mut *mut usq_scorer,
) -> usq_status {
    boundary(|| {
        let out = try_status!(try_out(out, "out"));
        let scorer = try_status!(unsafe {
            load_scorer(model_path, manifold_dir, usq_core::EncoderOptions::batch(1), usq_core::ModelSource::Reference)
        });
        out.write(Box::into_raw(Box::new(usq_scorer { scorer })));
        usq_status::USQ_OK
    })
}

/// Frees a scorer; NULL is accepted. The handle must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_scorer_free(scorer: *mut usq_scorer) {
    boundary(|| drop(unsafe { try_take(scorer, "scorer") }));
}

unsafe fn gray_of(data: *const u8, len: usize, desc: *const usq_frame_desc) -> Result<GrayFrame, usq_status> {
    check_ptr(data, "data")?;
    let layout = unsafe { layout_of(desc) }?;
    // SAFETY: the caller vouches for `len` readable bytes at `data`; the library checks that
    // they cover the layout.
    let bytes = unsafe { std::slice::from_raw_parts(data, len) };
    gray_frame(bytes, &layout).map_err(from_error)
}

/// The rest of the arguments of `usq_scorer_score` and `usq_scorer_score_report` checked (the
/// scorer and the out-pointer already are), then the frame scored over its whole grid.
unsafe fn score_frame(
    s: &mut usq_scorer,
    data: *const u8,
    len: usize,
    desc: *const usq_frame_desc,
    organ: *const c_char,
) -> Result<ScoreReport, usq_status> {
    let organ = unsafe { opt_str(organ, "organ") }?;
    let frame = unsafe { gray_of(data, len, desc) }?;
    let opts = ScoreOptions { organ: organ.map(String::from), max_patches: None };
    s.scorer.score(&frame, &opts).map_err(from_error)
}

/// TinyUSFM-NRQ of one frame over its whole patch grid (higher is better). `organ` may be
/// NULL to combine all organs. Allocates (offline use).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_scorer_score(
    scorer: *mut usq_scorer,
    data: *const u8,
    len: usize,
    desc: *const usq_frame_desc,
    organ: *const c_char,
    nrq: *mut f64,
) -> usq_status {
    boundary(|| {
        let s = try_status!(unsafe { try_mut(scorer, "scorer") });
        let nrq = try_status!(try_out(nrq, "nrq"));
        let r = try_status!(unsafe { score_frame(s, data, len, desc, organ) });
        nrq.write(r.nrq);
        usq_status::USQ_OK
    })
}

/// One frame's NRQ with its acquisition checks (`usq_scorer_score_report`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct usq_score_report {
    /// Set by the caller to `sizeof(usq_score_report)`.
    pub struct_size: u32,
    /// TinyUSFM-NRQ over the whole patch grid (higher is better): the paper's value.
    pub nrq: f64,
    /// The acquisition checks beside it (`frame_change` is NaN: one frame has no previous one).
    pub checks: usq_checks,
    /// The calibrated quality index beside NRQ, 0-100: where the frame's NRQ falls among the
    /// NRQs of the organ's clean frames held out of the manifold's fit (50 a typical clean
    /// frame, 0 at or below the worst of them). NaN when the organ's manifold has no scale. A
    /// program built against a header from before it sets the shorter `struct_size` and gets
    /// the fields above only.
    pub quality: f64,
}

/// `sizeof(usq_score_report)` in headers from before `quality`: still accepted.
const REPORT_V03_SIZE: usize = std::mem::offset_of!(usq_score_report, quality);

/// As `usq_scorer_score`, with the frame's acquisition checks: which faults (gain, saturation,
/// contact, blank, organ mismatch) the organ's clean statistics raise, and the measured
/// values. With `organ` NULL, the checks judge against the organ the frame fits best.
/// Allocates (offline use).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_scorer_score_report(
    scorer: *mut usq_scorer,
    data: *const u8,
    len: usize,
    desc: *const usq_frame_desc,
    organ: *const c_char,
    report: *mut usq_score_report,
) -> usq_status {
    boundary(|| {
        let s = try_status!(unsafe { try_mut(scorer, "scorer") });
        let out = try_status!(try_out(report, "report"));
        // SAFETY: checked pointer; the caller set struct_size.
        let size = unsafe { (*out.as_ptr()).struct_size };
        if size as usize != REPORT_V03_SIZE {
            try_status!(check_struct_size::<usq_score_report>(size, "report"));
        }
        let r = try_status!(unsafe { score_frame(s, data, len, desc, organ) });
        out.write_prefix(
            usq_score_report {
                struct_size: size,
                nrq: r.nrq,
                checks: usq_checks::of(&r.checks, r.faults),
                quality: r.quality.map_or(f64::NAN, |q| q.index),
            },
            size as usize,
        );
        usq_status::USQ_OK
    })
}

/// TinyUSFM-uLPIPS of `img` against `reference` (lower is closer). Allocates (offline use).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_scorer_compare(
    scorer: *mut usq_scorer,
    reference: *const u8,
    reference_len: usize,
    reference_desc: *const usq_frame_desc,
    img: *const u8,
    img_len: usize,
    img_desc: *const usq_frame_desc,
    ulpips: *mut f64,
) -> usq_status {
    boundary(|| {
        let s = try_status!(unsafe { try_mut(scorer, "scorer") });
        let ulpips = try_status!(try_out(ulpips, "ulpips"));
        let r = try_status!(unsafe { gray_of(reference, reference_len, reference_desc) });
        let i = try_status!(unsafe { gray_of(img, img_len, img_desc) });
        let rep = try_status!(s.scorer.compare(&r, &i).map_err(from_error));
        ulpips.write(rep.ulpips);
        usq_status::USQ_OK
    })
}

/// Decodes an image file (PNG, JPEG, BMP, TIFF) to 8-bit gray into `buffer` (`capacity`
/// bytes), row-major with no padding. `*width` and `*height` are always set when the file
/// decodes; if `capacity` is too small the call returns `USQ_ERR_WRONG_SIZE` and the caller
/// may retry with `width * height` bytes. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usq_image_load_gray(
    path: *const c_char,
    buffer: *mut u8,
    capacity: usize,
    width: *mut u32,
    height: *mut u32,
) -> usq_status {
    boundary(|| {
        if path.is_null() {
            return fail(usq_status::USQ_ERR_NULL_ARGUMENT, "path is NULL");
        }
        let path = try_status!(unsafe { opt_str(path, "path") }).unwrap_or_default();
        let width = try_status!(try_out(width, "width"));
        let height = try_status!(try_out(height, "height"));
        let frame = try_status!(GrayFrame::open(path).map_err(from_error));
        width.write(frame.width as u32);
        height.write(frame.height as u32);
        if capacity < frame.pixels.len() {
            return fail(
                usq_status::USQ_ERR_WRONG_SIZE,
                format!("{path} is {}x{}: the buffer needs {} bytes", frame.width, frame.height, frame.pixels.len()),
            );
        }
        try_status!(check_ptr(buffer, "buffer"));
        unsafe { std::ptr::copy_nonoverlapping(frame.pixels.as_ptr(), buffer, frame.pixels.len()) };
        usq_status::USQ_OK
    })
}
