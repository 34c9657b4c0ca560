//! The lock-free slot state machine under [`super::ring::FrameRing`]: preallocated byte slots,
//! each owned through one atomic state (free -> writing -> ready -> reading -> free), between
//! one producer and one consumer.
//!
//! This file uses nothing from the crate, only `std` (or `loom` under `cfg(loom)`), so the
//! model checker in `tests/loom` compiles this very file and explores every interleaving of
//! a producer and the consumer over it, and Miri runs its unit tests.

#[cfg(loom)]
use loom::{
    cell::UnsafeCell,
    sync::atomic::{AtomicU8, AtomicU64, Ordering},
};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;
const READING: u8 = 3;

/// `loom::cell::UnsafeCell`'s interface over the std cell, so one body serves both builds.
#[cfg(not(loom))]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    fn new(v: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(v))
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

struct Slot<M> {
    state: AtomicU8,
    /// The frame id, readable by both sides while the state is being contended.
    id: AtomicU64,
    meta: UnsafeCell<Option<M>>,
    data: UnsafeCell<Box<[u8]>>,
}

/// Counters, monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCounters {
    /// Frames published.
    pub pushed: u64,
    /// Ready frames the producer took back because every slot was taken.
    pub dropped: u64,
    /// Ready frames the consumer passed over because a newer one was ready.
    pub skipped: u64,
}

/// `capacity` slots of `bytes` each, allocated once. The producer takes a slot
/// ([`Slots::take_for_writing`]), fills it and [`Slots::publish`]es it (or
/// [`Slots::release`]s it unpublished); the consumer takes the newest ready one
/// ([`Slots::take_newest`]) and releases it. Nothing here allocates, locks or blocks.
pub struct Slots<M> {
    slots: Box<[Slot<M>]>,
    next_id: AtomicU64,
    pushed: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
}

// Slot contents are only touched by the side that owns the slot's state.
unsafe impl<M: Send> Sync for Slots<M> {}
unsafe impl<M: Send> Send for Slots<M> {}

impl<M: Copy> Slots<M> {
    /// `capacity` slots of `bytes` bytes.
    pub fn new(capacity: usize, bytes: usize) -> Slots<M> {
        let slots = (0..capacity)
            .map(|_| Slot {
                state: AtomicU8::new(FREE),
                id: AtomicU64::new(0),
                meta: UnsafeCell::new(None),
                data: UnsafeCell::new(vec![0u8; bytes].into_boxed_slice()),
            })
            .collect();
        Slots {
            slots,
            next_id: AtomicU64::new(1),
            pushed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// A snapshot of the counters (relaxed reads: any thread, never blocks).
    pub fn counters(&self) -> SlotCounters {
        SlotCounters {
            pushed: self.pushed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn seq(&self, i: usize) -> u64 {
        self.slots[i].id.load(Ordering::Acquire)
    }

    /// Producer only: a slot to write into, the oldest ready frame taken back (and counted
    /// as dropped) when none is free; `None` when every attempt lost its race to the consumer.
    pub fn take_for_writing(&self) -> Option<usize> {
        for _ in 0..4 {
            for (i, s) in self.slots.iter().enumerate() {
                if s.state.compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return Some(i);
                }
            }
            let oldest = (0..self.slots.len())
                .filter(|&i| self.slots[i].state.load(Ordering::Acquire) == READY)
                .min_by_key(|&i| self.seq(i));
            if let Some(i) = oldest
                && self.slots[i].state.compare_exchange(READY, WRITING, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Some(i);
            }
        }
        None
    }

    /// The bytes of a slot the caller owns (taken for writing, or for reading).
    ///
    /// # Safety
    /// The caller owns `slot` (it is WRITING by this producer, or READING by this consumer)
    /// for as long as the slice lives, and takes no other reference to it meanwhile.
    #[allow(clippy::mut_from_ref)] // ownership moves through the slot's atomic state
    pub unsafe fn data_mut(&self, slot: usize) -> &mut [u8] {
        // SAFETY: the caller's contract.
        self.slots[slot].data.with_mut(|p| unsafe { &mut **p })
    }

    /// The bytes of a slot the caller owns.
    ///
    /// # Safety
    /// As [`Slots::data_mut`], for reading.
    pub unsafe fn data(&self, slot: usize) -> &[u8] {
        // SAFETY: the caller's contract.
        self.slots[slot].data.with(|p| unsafe { &**p })
    }

    /// The meta of a slot taken by [`Slots::take_newest`].
    ///
    /// # Safety
    /// The caller owns `slot` for reading.
    pub unsafe fn meta(&self, slot: usize) -> Option<M> {
        // SAFETY: the caller's contract.
        self.slots[slot].meta.with(|p| unsafe { *p })
    }

    /// Producer only: makes a slot it took ready, with the meta `make` builds from the
    /// frame's id (from 1, in publish order), and returns the id.
    pub fn publish(&self, slot: usize, make: impl FnOnce(u64) -> M) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let meta = make(id);
        // SAFETY: the slot is WRITING, so only the producer touches it.
        self.slots[slot].meta.with_mut(|p| unsafe { *p = Some(meta) });
        self.slots[slot].id.store(id, Ordering::Release);
        self.slots[slot].state.store(READY, Ordering::Release);
        self.pushed.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Frees a slot its owner is done with (read, or written and not published).
    pub fn release(&self, slot: usize) {
        self.slots[slot].state.store(FREE, Ordering::Release);
    }

    /// Consumer only: takes the newest ready slot for reading; older ready slots are freed and
    /// counted as skipped. Release the slot when done.
    pub fn take_newest(&self) -> Option<usize> {
        loop {
            let newest = (0..self.slots.len())
                .filter(|&i| self.slots[i].state.load(Ordering::Acquire) == READY)
                .max_by_key(|&i| self.seq(i))?;
            if self.slots[newest].state.compare_exchange(READY, READING, Ordering::Acquire, Ordering::Relaxed).is_err()
            {
                continue; // the producer took it back as the oldest meanwhile
            }
            let id = self.seq(newest);
            for (i, s) in self.slots.iter().enumerate() {
                if i != newest
                    && s.state.load(Ordering::Acquire) == READY
                    && self.seq(i) < id
                    && s.state.compare_exchange(READY, FREE, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            return Some(newest);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Writes `v` into a taken slot and publishes it with `v` as its meta.
    fn push(s: &Slots<u8>, v: u8) -> u64 {
        let slot = s.take_for_writing().unwrap();
        // SAFETY: taken for writing above.
        unsafe { s.data_mut(slot) }.fill(v);
        s.publish(slot, |_| v)
    }

    #[test]
    fn newest_is_read_older_are_skipped_full_drops_the_oldest() {
        let s = Slots::<u8>::new(3, 4);
        assert_eq!(push(&s, 1), 1);
        push(&s, 2);
        let r = s.take_newest().unwrap();
        // SAFETY: taken for reading above.
        assert_eq!((unsafe { s.meta(r) }, unsafe { s.data(r) }), (Some(2), &[2u8; 4][..]));
        for v in 3..=5 {
            push(&s, v);
        }
        s.release(r);
        let r = s.take_newest().unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { s.data(r) }, &[5u8; 4]);
        s.release(r);
        assert!(s.take_newest().is_none());
        assert_eq!(s.counters(), SlotCounters { pushed: 5, dropped: 1, skipped: 2 });
    }

    #[test]
    fn an_unpublished_slot_is_never_read() {
        let s = Slots::<u8>::new(3, 1);
        let w = s.take_for_writing().unwrap();
        assert!(s.take_newest().is_none());
        s.release(w);
        assert!(s.take_newest().is_none());
        assert_eq!(s.counters().pushed, 0);
    }
}
