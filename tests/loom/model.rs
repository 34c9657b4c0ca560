//! Model checks of the slot state machine: one producer (push, acquire/commit, acquire/abandon,
//! as `usq::engine::Producer` drives it) against the engine's worker (take the newest, read,
//! release). Under `--cfg loom` each test runs every interleaving within the preemption bound
//! (and loom's cells report any read or write of a slot not ordered by its state); without it,
//! the same bodies run once on std threads.
//!
//! What must hold in every interleaving: a frame read is whole and is the frame its meta
//! names (no torn read), frames are read in increasing id order, an abandoned slot is never
//! read, and every published frame is read, dropped or skipped exactly once (no lost frame,
//! counts that add up).

use crate::slots::Slots;
use std::sync::Arc;

#[cfg(loom)]
use loom::thread;
#[cfg(not(loom))]
use std::thread;

const BYTES: usize = 3;

#[cfg(loom)]
fn check(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    // Every interleaving with up to this many preemptions (loom's recommended bound: the
    // bugs found in practice need two or three); `USQ_LOOM_PREEMPTIONS=none`: no bound.
    b.preemption_bound = match std::env::var("USQ_LOOM_PREEMPTIONS").as_deref() {
        Ok("none") => None,
        Ok(v) => Some(v.parse().expect("USQ_LOOM_PREEMPTIONS: a number or none")),
        Err(_) => Some(3),
    };
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    b.check(move || {
        r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!("loom: {} interleavings explored", runs.load(std::sync::atomic::Ordering::Relaxed));
}

#[cfg(not(loom))]
fn check(f: impl Fn() + Sync + Send + 'static) {
    f();
}

/// Producer: writes the frame byte by byte (a torn read would see a mix) and publishes it
/// with the value as its meta; `None` when no slot could be taken (the frame is not pushed).
fn push(s: &Slots<u8>, v: u8) -> Option<u64> {
    let slot = s.take_for_writing()?;
    // SAFETY: taken for writing above; released by publish.
    let buf = unsafe { s.data_mut(slot) };
    for b in buf.iter_mut() {
        *b = v;
    }
    Some(s.publish(slot, |_| v))
}

/// Worker: takes the newest frame, checks it is whole, returns (id, value).
fn read(s: &Slots<u8>) -> Option<u8> {
    let slot = s.take_newest()?;
    // SAFETY: taken for reading above; released below.
    let (meta, data) = unsafe { (s.meta(slot), s.data(slot)) };
    let v = meta.expect("a ready slot has its meta");
    assert!(data.iter().all(|&b| b == v), "torn read: meta {v}, bytes {data:?}");
    s.release(slot);
    Some(v)
}

/// Drains what is left and checks the books: every pushed frame read, dropped or skipped.
fn settle(s: &Slots<u8>, pushed: u64, mut read_count: u64, mut last: u8) {
    while let Some(v) = read(s) {
        assert!(v > last, "read {v} after {last}");
        last = v;
        read_count += 1;
    }
    let c = s.counters();
    assert_eq!(c.pushed, pushed, "pushed");
    assert_eq!(read_count + c.dropped + c.skipped, c.pushed, "lost or doubled frames: {c:?}, {read_count} read");
}

/// Four frames pushed into three slots while the worker reads twice: drops, skips and
/// reads all interleave.
#[test]
fn push_against_the_worker() {
    check(|| {
        let s = Arc::new(Slots::<u8>::new(3, BYTES));
        let p = {
            let s = s.clone();
            thread::spawn(move || (1..=4u8).filter(|&v| push(&s, v).is_some()).count() as u64)
        };
        let (mut n, mut last) = (0, 0);
        for _ in 0..2 {
            if let Some(v) = read(&s) {
                assert!(v > last, "read {v} after {last}");
                last = v;
                n += 1;
            }
        }
        let pushed = p.join().unwrap();
        settle(&s, pushed, n, last);
    });
}

/// Acquire, write, abandon, then acquire, write, commit, against the worker: the abandoned
/// frame is never read and its slot comes back.
#[test]
fn acquire_abandon_commit_against_the_worker() {
    const ABANDONED: u8 = 200;
    check(|| {
        let s = Arc::new(Slots::<u8>::new(3, BYTES));
        let p = {
            let s = s.clone();
            thread::spawn(move || {
                let slot = s.take_for_writing().expect("a free slot");
                // SAFETY: taken for writing; released unpublished.
                unsafe { s.data_mut(slot) }.fill(ABANDONED);
                s.release(slot);
                push(&s, 1).is_some() as u64 + push(&s, 2).is_some() as u64
            })
        };
        let (mut n, mut last) = (0, 0);
        for _ in 0..2 {
            if let Some(v) = read(&s) {
                assert_ne!(v, ABANDONED, "an abandoned slot was read");
                assert!(v > last);
                last = v;
                n += 1;
            }
        }
        let pushed = p.join().unwrap();
        settle(&s, pushed, n, last);
    });
}

/// The worker holding a frame while the producer fills every other slot: the frame being
/// read is never taken back, the oldest ready one is.
#[test]
fn the_frame_being_read_is_never_overwritten() {
    check(|| {
        let s = Arc::new(Slots::<u8>::new(3, BYTES));
        push(&s, 1).unwrap();
        let held = s.take_newest().unwrap();
        let p = {
            let s = s.clone();
            thread::spawn(move || (2..=5u8).filter(|&v| push(&s, v).is_some()).count() as u64)
        };
        // Reading the held frame while the producer runs: loom's cells flag any overlap.
        // SAFETY: taken for reading above.
        let data = unsafe { s.data(held) }.to_vec();
        assert_eq!(data, vec![1; BYTES]);
        let pushed = p.join().unwrap();
        s.release(held);
        assert_eq!(pushed, 4, "with one slot held, the producer always finds a slot");
        settle(&s, pushed + 1, 1, 1);
    });
}
