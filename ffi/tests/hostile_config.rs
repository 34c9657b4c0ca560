//! Engine configurations a firmware may pass by mistake, through the C API: each gets
//! `USQ_ERR_INVALID_ARGUMENT` at once (before the model loads), never a panic at the boundary
//! or an allocation that aborts the process. Found by the fuzz target `c_api_sequence`:
//! `usq_engine_config_default` with a width near `UINT32_MAX` overflowed (a caught panic,
//! `USQ_ERR_PANIC`), and the ring's and results' sizes were not bounded.

use std::ptr::{null, null_mut};
use usq_ffi::*;

fn config(w: u32, h: u32) -> (usq_status, usq_engine_config) {
    // SAFETY: a zeroed plain C struct, filled by the call.
    let mut c: usq_engine_config = unsafe { std::mem::zeroed() };
    let s = unsafe { usq_engine_config_default(&mut c, w, h) };
    (s, c)
}

fn start(c: &usq_engine_config) -> usq_status {
    let mut e = null_mut();
    // SAFETY: valid pointers; NULL paths mean the shipped defaults.
    let s = unsafe { usq_engine_start(null(), null(), null(), c, &mut e) };
    if !e.is_null() {
        unsafe { usq_engine_free(e) };
    }
    s
}

#[test]
fn hostile_engine_configs_are_refused_before_loading() {
    for (w, h) in [(u32::MAX, u32::MAX), (u32::MAX, 1), (1 << 20, 1 << 20), (16385, 16385)] {
        let (s, c) = config(w, h);
        assert_eq!(s, usq_status::USQ_OK, "filling defaults never fails");
        assert_eq!(start(&c), usq_status::USQ_ERR_INVALID_ARGUMENT, "{w}x{h}");
    }
    let (_, ok) = config(640, 480);
    for bad in [
        usq_engine_config { ring_capacity: u32::MAX, ..ok },
        usq_engine_config { ring_capacity: 1, ..ok },
        usq_engine_config { result_capacity: u32::MAX, ..ok },
        usq_engine_config { budget_ms: f64::INFINITY, ..ok },
    ] {
        assert_eq!(start(&bad), usq_status::USQ_ERR_INVALID_ARGUMENT);
    }
}
