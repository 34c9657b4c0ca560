//! `FrameRing`: fixed-capacity, preallocated frame slots between the scanner's frame-grabber
//! thread (one producer) and the engine's worker (one consumer).
//!
//! Memory: every slot's buffer is allocated at creation, sized for the largest frame. `push`,
//! `acquire`/`commit` and `take_newest` allocate nothing, take no lock and never block: slot
//! ownership moves through one atomic state per slot (free -> writing -> ready -> reading ->
//! free). When no slot is free the oldest unscored frame is dropped and counted.

use crate::error::Result;
use crate::imaging::pixel::FrameLayout;
use std::cell::UnsafeCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;
const READING: u8 = 3;

/// What the producer says about a frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    /// The ring's frame id: from 1, in commit order (what `push` and `commit` return).
    pub id: u64,
    /// Size, pixel format and row stride of the frame's bytes.
    pub layout: FrameLayout,
    /// The capture timestamp the producer gave, in microseconds (opaque to the engine).
    pub timestamp_us: u64,
    /// When the frame was committed; latency is measured from here.
    pub committed_at: Instant,
}

struct Slot {
    state: AtomicU8,
    /// The frame id, readable by both sides while the state is being contended.
    id: AtomicU64,
    meta: UnsafeCell<Option<FrameMeta>>,
    data: UnsafeCell<Box<[u8]>>,
}

/// Counters of the ring, monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Frames committed.
    pub pushed: u64,
    /// Unscored frames overwritten because every slot was taken.
    pub dropped: u64,
    /// Unscored frames passed over because a newer one was ready.
    pub skipped: u64,
}

/// Preallocated frame slots between one producer (the frame grabber) and the engine's worker;
/// lock-free and allocation-free after [`FrameRing::new`] (see the module docs).
pub struct FrameRing {
    slots: Box<[Slot]>,
    max_bytes: usize,
    next_id: AtomicU64,
    producer_busy: AtomicBool,
    pushed: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    consumer: OnceLock<std::thread::Thread>,
}

// Slot contents are only touched by the side that owns the slot's state.
unsafe impl Sync for FrameRing {}
unsafe impl Send for FrameRing {}

impl FrameRing {
    /// A ring of `capacity` slots of `max_bytes` each. At least 3 slots: one being written,
    /// one being scored, one ready.
    pub fn new(capacity: usize, max_bytes: usize) -> Result<FrameRing> {
        if capacity < 3 {
            crate::bail!(InvalidArgument, "a frame ring needs at least 3 slots, got {capacity}");
        }
        if max_bytes == 0 {
            crate::bail!(InvalidArgument, "frame slots must hold at least one byte");
        }
        let slots = (0..capacity)
            .map(|_| Slot {
                state: AtomicU8::new(FREE),
                id: AtomicU64::new(0),
                meta: UnsafeCell::new(None),
                data: UnsafeCell::new(vec![0u8; max_bytes].into_boxed_slice()),
            })
            .collect();
        Ok(FrameRing {
            slots,
            max_bytes,
            next_id: AtomicU64::new(1),
            producer_busy: AtomicBool::new(false),
            pushed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            consumer: OnceLock::new(),
        })
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes per slot: the largest frame the ring accepts.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// A snapshot of the counters (relaxed atomic reads: never blocks, any thread).
    pub fn counters(&self) -> RingCounters {
        RingCounters {
            pushed: self.pushed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// Registers the thread to wake when a frame is committed.
    pub fn set_consumer(&self, t: std::thread::Thread) {
        let _ = self.consumer.set(t);
    }

    fn seq(&self, i: usize) -> u64 {
        self.slots[i].id.load(Ordering::Acquire)
    }

    /// Takes a slot to write a frame into, dropping the oldest unscored frame when none is
    /// free. Fails (without blocking) if another producer call is in progress.
    pub fn acquire(&self) -> Result<FrameWriter<'_>> {
        if self.producer_busy.swap(true, Ordering::Acquire) {
            crate::bail!(Busy, "another thread is pushing into this frame ring");
        }
        for _ in 0..4 {
            for (i, s) in self.slots.iter().enumerate() {
                if s.state.compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return Ok(FrameWriter { ring: self, slot: i, committed: false });
                }
            }
            let oldest = (0..self.slots.len())
                .filter(|&i| self.slots[i].state.load(Ordering::Acquire) == READY)
                .min_by_key(|&i| self.seq(i));
            if let Some(i) = oldest
                && self.slots[i].state.compare_exchange(READY, WRITING, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(FrameWriter { ring: self, slot: i, committed: false });
            }
        }
        self.producer_busy.store(false, Ordering::Release);
        crate::bail!(Busy, "no frame slot could be taken")
    }

    /// The slot-level form of [`FrameRing::acquire`] for callers that cannot hold a borrow
    /// across calls (the C ABI): returns a ticket; finish with [`FrameRing::commit_ticket`] or
    /// [`FrameRing::abandon_ticket`], from the same producer.
    pub fn acquire_ticket(&self) -> Result<SlotTicket> {
        let w = self.acquire()?;
        let slot = w.slot;
        std::mem::forget(w); // keeps the producer flag set until the ticket is finished
        Ok(SlotTicket { slot })
    }

    /// The buffer of an acquired slot.
    ///
    /// # Safety
    /// `ticket` must come from this ring's `acquire_ticket` and not be finished yet; the
    /// slice must not outlive it.
    #[allow(clippy::mut_from_ref)] // the slot is an UnsafeCell owned by the ticket holder
    pub unsafe fn ticket_buffer(&self, ticket: &SlotTicket) -> &mut [u8] {
        unsafe { &mut *self.slots[ticket.slot].data.get() }
    }

    /// Publishes the frame written through `ticket` and returns its id, finishing the ticket;
    /// on an error (a frame larger than a slot) the slot is given back unpublished.
    pub fn commit_ticket(&self, ticket: SlotTicket, layout: FrameLayout, timestamp_us: u64) -> Result<u64> {
        let w = FrameWriter { ring: self, slot: ticket.slot, committed: false };
        w.commit(layout, timestamp_us)
    }

    /// Gives an acquired slot back without publishing a frame, finishing the ticket.
    pub fn abandon_ticket(&self, ticket: SlotTicket) {
        drop(FrameWriter { ring: self, slot: ticket.slot, committed: false });
    }

    /// Copies a frame in: acquire, copy, commit. Returns the frame id.
    pub fn push(&self, data: &[u8], layout: FrameLayout, timestamp_us: u64) -> Result<u64> {
        let need = layout.required_bytes()?;
        if need > self.max_bytes {
            crate::bail!(InvalidArgument, "a {need}-byte frame does not fit slots of {} bytes", self.max_bytes);
        }
        if data.len() < need {
            crate::bail!(InvalidArgument, "frame buffer holds {} bytes, the layout needs {need}", data.len());
        }
        let mut w = self.acquire()?;
        w.buffer()[..need].copy_from_slice(&data[..need]);
        w.commit(layout, timestamp_us)
    }

    /// The newest ready frame, for scoring; older ready frames are released as skipped.
    pub fn take_newest(&self) -> Option<FrameReader<'_>> {
        loop {
            let newest = (0..self.slots.len())
                .filter(|&i| self.slots[i].state.load(Ordering::Acquire) == READY)
                .max_by_key(|&i| self.seq(i))?;
            if self.slots[newest].state.compare_exchange(READY, READING, Ordering::Acquire, Ordering::Relaxed).is_err()
            {
                continue; // the producer took it as the oldest meanwhile
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
            return Some(FrameReader { ring: self, slot: newest });
        }
    }
}

/// An acquired slot, held across calls by the C ABI; see [`FrameRing::acquire_ticket`].
#[derive(Debug)]
pub struct SlotTicket {
    slot: usize,
}

/// A slot being written by the producer: fill `buffer()`, then `commit`. Dropping it
/// without committing gives the slot back.
pub struct FrameWriter<'a> {
    ring: &'a FrameRing,
    slot: usize,
    committed: bool,
}

impl FrameWriter<'_> {
    /// The whole slot (`max_bytes`), to be filled in place (zero-copy capture).
    pub fn buffer(&mut self) -> &mut [u8] {
        unsafe { &mut *self.ring.slots[self.slot].data.get() }
    }

    /// Publishes the frame. Returns its id.
    pub fn commit(mut self, layout: FrameLayout, timestamp_us: u64) -> Result<u64> {
        let need = layout.required_bytes()?;
        if need > self.ring.max_bytes {
            crate::bail!(InvalidArgument, "a {need}-byte frame does not fit slots of {} bytes", self.ring.max_bytes);
        }
        let id = self.ring.next_id.fetch_add(1, Ordering::Relaxed);
        let meta = FrameMeta { id, layout, timestamp_us, committed_at: Instant::now() };
        unsafe { *self.ring.slots[self.slot].meta.get() = Some(meta) };
        self.ring.slots[self.slot].id.store(id, Ordering::Release);
        self.ring.slots[self.slot].state.store(READY, Ordering::Release);
        self.committed = true;
        self.ring.pushed.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = self.ring.consumer.get() {
            t.unpark();
        }
        Ok(id)
    }
}

impl Drop for FrameWriter<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.ring.slots[self.slot].state.store(FREE, Ordering::Release);
        }
        self.ring.producer_busy.store(false, Ordering::Release);
    }
}

/// A frame taken for scoring; released when dropped.
pub struct FrameReader<'a> {
    ring: &'a FrameRing,
    slot: usize,
}

impl FrameReader<'_> {
    /// The frame's id, layout, timestamp and commit time.
    pub fn meta(&self) -> FrameMeta {
        unsafe { (*self.ring.slots[self.slot].meta.get()).expect("a ready slot has its meta") }
    }

    /// The whole slot (`max_bytes`); the frame is its first `meta().layout.required_bytes()` bytes.
    pub fn data(&self) -> &[u8] {
        unsafe { &*self.ring.slots[self.slot].data.get() }
    }
}

impl Drop for FrameReader<'_> {
    fn drop(&mut self) {
        self.ring.slots[self.slot].state.store(FREE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::pixel::PixelFormat;

    fn layout() -> FrameLayout {
        FrameLayout::packed(4, 2, PixelFormat::Gray8)
    }

    #[test]
    fn newest_wins_and_older_are_skipped() {
        let ring = FrameRing::new(4, 8).unwrap();
        for v in 1..=3u8 {
            ring.push(&[v; 8], layout(), v as u64).unwrap();
        }
        let r = ring.take_newest().unwrap();
        assert_eq!(r.data()[0], 3);
        assert_eq!(r.meta().timestamp_us, 3);
        drop(r);
        assert!(ring.take_newest().is_none());
        assert_eq!(ring.counters(), RingCounters { pushed: 3, dropped: 0, skipped: 2 });
    }

    #[test]
    fn full_ring_drops_the_oldest() {
        let ring = FrameRing::new(3, 8).unwrap();
        let reading = {
            ring.push(&[1; 8], layout(), 1).unwrap();
            ring.take_newest().unwrap()
        };
        for v in 2..=5u8 {
            ring.push(&[v; 8], layout(), 0).unwrap();
        }
        // Slots: one being read (1), two ready; 2 and 3 were overwritten in turn.
        assert_eq!(ring.counters().dropped, 2);
        drop(reading);
        assert_eq!(ring.take_newest().unwrap().data()[0], 5);
    }

    #[test]
    fn zero_copy_acquire_and_abandon() {
        let ring = FrameRing::new(3, 8).unwrap();
        let t = ring.acquire_ticket().unwrap();
        assert!(ring.acquire().is_err(), "a ticket holds the producer side");
        unsafe { ring.ticket_buffer(&t)[..8].copy_from_slice(&[5; 8]) };
        let id = ring.commit_ticket(t, layout(), 1).unwrap();
        assert_eq!(ring.take_newest().unwrap().meta().id, id);
        let t = ring.acquire_ticket().unwrap();
        ring.abandon_ticket(t);
        let mut w = ring.acquire().unwrap();
        assert!(ring.acquire().is_err(), "one producer at a time");
        w.buffer()[..8].copy_from_slice(&[9; 8]);
        drop(w); // not committed: nothing to read
        assert!(ring.take_newest().is_none());
        let mut w = ring.acquire().unwrap();
        w.buffer()[..8].copy_from_slice(&[7; 8]);
        let id = w.commit(layout(), 42).unwrap();
        let r = ring.take_newest().unwrap();
        assert_eq!((r.meta().id, r.data()[0]), (id, 7));
    }

    #[test]
    fn oversize_and_short_frames_are_refused() {
        let ring = FrameRing::new(3, 8).unwrap();
        assert!(ring.push(&[0; 16], FrameLayout::packed(4, 4, PixelFormat::Gray8), 0).is_err());
        assert!(ring.push(&[0; 7], layout(), 0).is_err());
        assert!(FrameRing::new(2, 8).is_err());
        assert_eq!(ring.counters().pushed, 0);
    }

    #[test]
    fn producer_and_consumer_threads() {
        let ring = std::sync::Arc::new(FrameRing::new(4, 8).unwrap());
        let r2 = ring.clone();
        let producer = std::thread::spawn(move || {
            for v in 0..2000u64 {
                r2.push(&[(v % 251) as u8; 8], layout(), v).unwrap();
            }
        });
        let mut last = 0;
        let mut seen = 0;
        while !producer.is_finished() || seen == 0 {
            if let Some(r) = ring.take_newest() {
                let m = r.meta();
                assert!(m.id > last, "ids increase");
                assert!(r.data().iter().all(|&b| b == (m.timestamp_us % 251) as u8), "frame is whole");
                last = m.id;
                seen += 1;
            }
        }
        producer.join().unwrap();
        while ring.take_newest().is_some() {
            seen += 1;
        }
        let c = ring.counters();
        assert_eq!(c.pushed, 2000);
        assert_eq!(seen + c.dropped + c.skipped, 2000);
    }
}
