//! The C API driven as a careless firmware would: arbitrary sequences of calls on the engine,
//! producer and scorer handles, with null pointers, wrong `struct_size`s, frame descriptions
//! and lengths that do not match, calls out of order and in the wrong state.
//!
//! Every call must return a status of the header (never `USQ_ERR_PANIC`, which is a caught
//! bug), results must be whole, and after any sequence a good frame must still score (no
//! state left broken). One engine and one scorer live across inputs (starting one loads the
//! model); each input ends with its producer freed.
//!
//! The model is `tests/fixtures/tiny_contract.onnx`, a contract model of a few kilobytes whose
//! forward takes microseconds: the subject here is the API's state machine, and with the ViT
//! under AddressSanitizer each input cost about half a second (2 inputs a second), too slow
//! to ever reach a coverage plateau. The encoder's own loading is the `onnx_model` target's;
//! the ViT through the C API is `ffi/tests`' and the C tests'.
use std::ffi::CString;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;
use usq_ffi::*;

struct Handles {
    engine: *mut usq_engine,
    scorer: *mut usq_scorer,
}
// SAFETY: the handles are documented as usable from any thread (one call at a time here:
// libFuzzer runs one input at a time).
unsafe impl Send for Handles {}
unsafe impl Sync for Handles {}

const MAX: u32 = 64;

fn root(rel: &str) -> CString {
    CString::new(format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn handles() -> &'static Handles {
    static H: OnceLock<Handles> = OnceLock::new();
    H.get_or_init(|| unsafe {
        let (model, manifold) = (root("tests/fixtures/tiny_contract.onnx"), root("tests/fixtures/manifold"));
        let mut config = std::mem::zeroed::<usq_engine_config>();
        assert_eq!(usq_engine_config_default(&mut config, MAX, MAX), usq_status::USQ_OK);
        let mut engine = null_mut();
        let s = usq_engine_start(model.as_ptr(), manifold.as_ptr(), null(), &config, &mut engine);
        assert_eq!(s, usq_status::USQ_OK, "engine: {:?}", std::ffi::CStr::from_ptr(usq_last_error()));
        let mut scorer = null_mut();
        assert_eq!(usq_scorer_new(model.as_ptr(), manifold.as_ptr(), &mut scorer), usq_status::USQ_OK);
        Handles { engine, scorer }
    })
}

/// Reads the input as a stream of small numbers.
struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A size: mostly near the valid ones, sometimes anything.
    fn size(&mut self) -> u32 {
        match self.u8() % 4 {
            0 => self.u32(),
            _ => self.u8() as u32,
        }
    }
}

fn ok(s: usq_status) {
    assert_ne!(s, usq_status::USQ_ERR_PANIC, "a panic crossed to the boundary: {:?}", unsafe {
        std::ffi::CStr::from_ptr(usq_last_error())
    });
}

pub fn run(data: &[u8]) {
    let h = handles();
    let mut b = Bytes(data);
    let pixels = vec![90u8; (MAX * MAX * 4) as usize];
    let mut producer: *mut usq_producer = null_mut();
    let mut acquired = false;
    for _ in 0..64 {
        if b.0.is_empty() {
            break;
        }
        let desc = usq_frame_desc {
            struct_size: if b.u8() % 8 == 0 { b.u32() } else { std::mem::size_of::<usq_frame_desc>() as u32 },
            width: b.size(),
            height: b.size(),
            stride: b.size(),
            format: b.u8() as u32 % 9,
        };
        let len = match b.u8() % 3 {
            0 => pixels.len(),
            1 => b.u32() as usize % (pixels.len() + 1),
            _ => (desc.width as usize).saturating_mul(desc.height as usize).min(pixels.len()),
        };
        let nullish = b.u8() % 8 == 0;
        unsafe {
            match b.u8() % 10 {
                0 => {
                    let s = usq_engine_producer_new(h.engine, if nullish { null_mut() } else { &mut producer });
                    ok(s);
                    assert!(producer.is_null() == (s != usq_status::USQ_OK) || !producer.is_null());
                }
                1 if !producer.is_null() => {
                    let data = if nullish { null() } else { pixels.as_ptr() };
                    ok(usq_producer_push(producer, data, len, &desc, 7, null_mut()));
                }
                2 if !producer.is_null() => {
                    let (mut buf, mut cap) = (null_mut(), 0usize);
                    let s = usq_producer_acquire(producer, &mut buf, &mut cap);
                    ok(s);
                    if s == usq_status::USQ_OK {
                        // Fill what was given, as a DMA would.
                        std::slice::from_raw_parts_mut(buf, cap).fill(b.u8());
                        acquired = true;
                    }
                }
                3 if !producer.is_null() => {
                    ok(usq_producer_commit(producer, if nullish { null() } else { &desc }, 9, null_mut()));
                    acquired = false;
                }
                4 if !producer.is_null() => {
                    ok(usq_producer_abandon(producer));
                    acquired = false;
                }
                5 => {
                    let mut r = std::mem::zeroed::<usq_result>();
                    r.struct_size = if nullish { b.u32() } else { std::mem::size_of::<usq_result>() as u32 };
                    let s = usq_engine_next_result(h.engine, &mut r);
                    ok(s);
                    if s == usq_status::USQ_OK {
                        assert!(r.nrq.is_finite() && r.coverage > 0.0 && r.coverage <= 1.0, "result {}", r.nrq);
                    }
                }
                6 => {
                    let mut st = std::mem::zeroed::<usq_engine_stats>();
                    st.struct_size = if nullish { b.u32() } else { std::mem::size_of::<usq_engine_stats>() as u32 };
                    ok(usq_engine_get_stats(h.engine, &mut st));
                }
                7 => {
                    // Offline scoring with the same careless arguments (small frames only:
                    // each real one runs the encoder).
                    let organ = CString::new(vec![b'A' + b.u8() % 26; (b.u8() % 12) as usize]).unwrap();
                    let mut nrq = 0.0;
                    let organ_ptr = if nullish { null() } else { organ.as_ptr() };
                    ok(usq_scorer_score(h.scorer, pixels.as_ptr(), len, &desc, organ_ptr, &mut nrq));
                }
                8 => {
                    let mut c = std::mem::zeroed::<usq_engine_config>();
                    ok(usq_engine_config_default(if nullish { null_mut() } else { &mut c }, b.u32(), b.u32()));
                    // A start that must fail before loading anything: a wrong struct_size.
                    c.struct_size = c.struct_size.wrapping_add(1 + b.u8() as u32);
                    let mut e = null_mut();
                    let s = usq_engine_start(null(), null(), null(), &c, &mut e);
                    assert_ne!(s, usq_status::USQ_OK);
                    ok(s);
                }
                _ => {
                    usq_producer_free(producer);
                    producer = null_mut();
                    acquired = false;
                    let _ = (usq_status_name(b.u32()), usq_fault_name(b.u32()), usq_fault_reason(b.u32()));
                }
            }
        }
    }
    let _ = acquired;
    unsafe {
        usq_producer_free(producer);
        // Whatever happened, the handles still work: a good frame is taken and scored.
        let mut p = null_mut();
        assert_eq!(usq_engine_producer_new(h.engine, &mut p), usq_status::USQ_OK, "the producer was freed");
        let desc = usq_frame_desc {
            struct_size: std::mem::size_of::<usq_frame_desc>() as u32,
            width: MAX,
            height: MAX,
            stride: 0,
            format: 1,
        };
        assert_eq!(
            usq_producer_push(p, pixels.as_ptr(), (MAX * MAX) as usize, &desc, 1, null_mut()),
            usq_status::USQ_OK
        );
        usq_producer_free(p);
    }
}
