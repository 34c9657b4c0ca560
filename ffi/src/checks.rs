//! The acquisition checks over C: the fault bits, their names and reasons, and the measured
//! values that come with every live result and offline score (`usq_core::checks`).

use crate::boundary;
use std::ffi::{CStr, c_char};
use usq_core::checks::{Fault, Faults, FrameChecks};

/// Echo far below the organ's clean frames: gain turned down.
pub const USQ_FAULT_GAIN_LOW: u32 = 1;
/// Clipped highlights over a meaningful area: gain too high.
pub const USQ_FAULT_SATURATED: u32 = 2;
/// No echo left: the probe is off the skin or out of gel.
pub const USQ_FAULT_CONTACT_LOST: u32 = 4;
/// One lateral side of the image dark: part of the aperture lost contact.
pub const USQ_FAULT_CONTACT_PARTIAL: u32 = 8;
/// The image does not change between frames (live only).
pub const USQ_FAULT_FROZEN: u32 = 16;
/// A uniform frame: black, or a capture card's "no signal" screen.
pub const USQ_FAULT_BLANK: u32 = 32;
/// The frame looks like another organ than the one scored, or lies far below its organ's
/// clean frames: NRQ means little.
pub const USQ_FAULT_ORGAN_MISMATCH: u32 = 64;

// The C bits mirror the library's faults; a change on either side stops the build here.
const _: () = {
    assert!(USQ_FAULT_GAIN_LOW == Fault::GainLow as u32);
    assert!(USQ_FAULT_SATURATED == Fault::Saturated as u32);
    assert!(USQ_FAULT_CONTACT_LOST == Fault::ContactLost as u32);
    assert!(USQ_FAULT_CONTACT_PARTIAL == Fault::ContactPartial as u32);
    assert!(USQ_FAULT_FROZEN == Fault::Frozen as u32);
    assert!(USQ_FAULT_BLANK == Fault::Blank as u32);
    assert!(USQ_FAULT_ORGAN_MISMATCH == Fault::OrganMismatch as u32);
};

/// A frame's acquisition checks, beside NRQ (never in place of it): the faults raised and the
/// values measured. Embedded in `usq_result` and `usq_score_report`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct usq_checks {
    /// Bit set of `USQ_FAULT_*`; 0 when none.
    pub faults: u32,
    /// 1 when the organ's clean statistics judged the frame; 0 when the manifold has none
    /// (fitted elsewhere or by an older usq): then only `USQ_FAULT_FROZEN` can be raised.
    pub judged: u32,
    /// Echo level: 90th percentile of the 16-pixel block means inside the image (gray levels).
    pub echo_level: f32,
    /// Share of pixels at 250 or above, 0..1.
    pub clipped_share: f32,
    /// Share of the image's width in its widest run of columns without echo, 0..1.
    pub dead_width: f32,
    /// Standard deviation of the pixels (gray levels).
    pub pixel_std: f32,
    /// Mean absolute change from the previous scored frame (gray levels); NaN offline and for
    /// an engine's first frame.
    pub frame_change: f32,
    /// Median patch log-likelihood minus the start of the organ's clean range (nats; negative:
    /// below it, see `USQ_FAULT_ORGAN_MISMATCH`); NaN when not judged.
    pub organ_margin: f64,
}

impl usq_checks {
    pub(crate) fn of(checks: &FrameChecks, faults: Faults) -> usq_checks {
        let m = &checks.measures;
        usq_checks {
            faults: faults.0,
            judged: checks.judged as u32,
            echo_level: m.echo_level,
            clipped_share: m.clipped_share,
            dead_width: m.dead_width,
            pixel_std: m.pixel_std,
            frame_change: checks.frame_change.unwrap_or(f32::NAN),
            organ_margin: checks.organ_margin.unwrap_or(f64::NAN),
        }
    }
}

fn c_name(fault: Fault) -> &'static CStr {
    match fault {
        Fault::GainLow => c"gain_low",
        Fault::Saturated => c"saturated",
        Fault::ContactLost => c"contact_lost",
        Fault::ContactPartial => c"contact_partial",
        Fault::Frozen => c"frozen",
        Fault::Blank => c"blank",
        Fault::OrganMismatch => c"organ_mismatch",
    }
}

fn c_reason(fault: Fault) -> &'static CStr {
    match fault {
        Fault::GainLow => c"gain low",
        Fault::Saturated => c"saturated",
        Fault::ContactLost => c"no contact",
        Fault::ContactPartial => c"partial contact",
        Fault::Frozen => c"frozen",
        Fault::Blank => c"blank frame",
        Fault::OrganMismatch => c"organ not in manifold",
    }
}

/// The name of one `USQ_FAULT_*` bit ("gain_low", ...), "" for anything else. Static storage;
/// never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn usq_fault_name(fault: u32) -> *const c_char {
    boundary(|| Fault::ALL.into_iter().find(|f| *f as u32 == fault).map_or(c"", c_name).as_ptr())
}

/// A short reason for a gauge from a set of faults: the one that explains the others
/// ("no contact" before "gain low"), "" when none. Static storage; never NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn usq_fault_reason(faults: u32) -> *const c_char {
    boundary(|| Faults(faults).main().map_or(c"", c_reason).as_ptr())
}
