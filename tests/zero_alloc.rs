//! After start-up, pushing frames, scoring them and reading their results make no call to
//! the system allocator: every Rust allocation (tract's per-run ones included) is served by
//! the fixed pool. The engine's own per-frame path — push and result reading on the
//! producer's thread — makes no allocation at all, not even from the pool.

// The shared helpers of tests/it; this binary uses two of them.
#[allow(dead_code)]
#[path = "it/common.rs"]
mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use usq::engine::{Engine, EngineConfig};
use usq::imaging::pixel::{FrameLayout, PixelFormat};
use usq::pool::PoolAllocator;

/// The system allocator, counting every call made to it.
struct CountingSystem;
static SYSTEM_CALLS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingSystem {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        SYSTEM_CALLS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        SYSTEM_CALLS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        SYSTEM_CALLS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(p, l, n) }
    }
}

/// The pool, also counting allocations made by the current thread.
struct Global(PoolAllocator<CountingSystem>);
thread_local! {
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { self.0.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { self.0.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { self.0.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Global = Global(PoolAllocator::new(CountingSystem, 512 << 20));

fn thread_allocs() -> u64 {
    THREAD_ALLOCS.with(|c| c.get())
}

/// One encoder, then two (a helper thread shares each frame's patches): run one after the
/// other, since the system-call count is global.
#[test]
fn no_system_allocation_after_start_up() {
    // Two encoders score twice the patches a frame: fewer frames make the same check.
    for (threads, warm, measured) in [(1, 50, 200), (2, 30, 100)] {
        no_system_allocation_with(threads, warm, measured);
    }
}

fn no_system_allocation_with(threads: usize, warm: u64, measured: u64) {
    let f = usq::GrayFrame::open(at("tests/fixtures/sim_sector_800x540.png")).unwrap();
    // The shipped manifolds carry clean statistics, so the acquisition checks judge every frame.
    let manifolds = usq::ManifoldSet::load_dir(at("models/nrq")).unwrap();
    let encoder = usq::Encoder::from_path(seeded_model(), 1).unwrap();
    // A budget that affords several patches per frame, so every path runs.
    let cfg = EngineConfig { budget_ms: 150.0, window_frames: 10, ..EngineConfig::for_frames(f.width, f.height) };
    let mut scorer = usq::Scorer::from_parts(encoder, manifolds).unwrap();
    scorer.set_frame_threads(threads).unwrap();
    let engine = Engine::start(scorer, cfg).unwrap();
    let layout = FrameLayout::packed(f.width, f.height, PixelFormat::Gray8);
    let run = |frames: u64| -> (u64, u64) {
        let (sys0, thread0) = (SYSTEM_CALLS.load(Ordering::SeqCst), thread_allocs());
        for i in 0..frames {
            engine.push(&f.pixels, layout, i).unwrap();
            let r = engine.results().recv_timeout(Duration::from_secs(60)).expect("a result");
            assert!(r.nrq.is_finite() && r.checks.judged);
        }
        (SYSTEM_CALLS.load(Ordering::SeqCst) - sys0, thread_allocs() - thread0)
    };
    // The first frames warm everything up (the frame size's grid, tract's buffers).
    let (sys_first, _) = run(warm);
    let stats_before = GLOBAL.0.stats();
    let (sys_next, producer_allocs) = run(measured);
    let pool = GLOBAL.0.stats();
    let s = engine.stop();
    eprintln!(
        "{threads} encoders: system allocator calls: {sys_first} in the first {warm} frames, {sys_next} in the next \
         {measured}; pool peak {} MiB, {} pool allocations for {measured} frames, {} fallbacks; engine {s:?}",
        pool.peak >> 20,
        pool.allocations - stats_before.allocations,
        pool.fallbacks
    );
    assert_eq!(sys_next, 0, "frames after the first {warm} reached the system allocator");
    assert_eq!(pool.fallbacks, 0, "the pool was too small");
    assert_eq!(producer_allocs, 0, "push and result reading allocated");
    assert!(pool.allocations > stats_before.allocations, "tract's allocations go through the pool");
    assert_eq!(s.frames_scored, warm + measured);
}
