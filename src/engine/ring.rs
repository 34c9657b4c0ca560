//! `FrameRing`: fixed-capacity, preallocated frame slots between the scanner's frame-grabber
//! thread (one producer) and the engine's worker (one consumer).
//!
//! Memory: every slot's buffer is allocated at creation, sized for the largest frame. The
//! [`Producer`]'s `push`, `acquire`/`commit` and the consumer's `take_newest` allocate nothing,
//! take no lock and never block: slot ownership moves through one atomic state per slot (the
//! state machine of [`super::slots`], model-checked by `tests/loom`). When no slot is free the
//! oldest unscored frame is dropped and counted. One guard keeps the producer side single: a
//! ring has at most one [`Producer`] at a time.

use super::slots::Slots;
use crate::error::Result;
use crate::imaging::pixel::FrameLayout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

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

/// Counters of the ring, monotonic.
pub type RingCounters = super::slots::SlotCounters;

/// Preallocated frame slots between one producer (the frame grabber) and the engine's worker;
/// lock-free and allocation-free after [`FrameRing::new`] (see the module docs).
pub struct FrameRing {
    slots: Slots<FrameMeta>,
    max_bytes: usize,
    producer_busy: AtomicBool,
    consumer: OnceLock<std::thread::Thread>,
}

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
        Ok(FrameRing {
            slots: Slots::new(capacity, max_bytes),
            max_bytes,
            producer_busy: AtomicBool::new(false),
            consumer: OnceLock::new(),
        })
    }

    /// A snapshot of the counters (relaxed atomic reads: never blocks, any thread).
    pub fn counters(&self) -> RingCounters {
        self.slots.counters()
    }

    /// Registers the thread to wake when a frame is committed.
    pub fn set_consumer(&self, t: std::thread::Thread) {
        let _ = self.consumer.set(t);
    }

    /// The producer side of this ring: the only way frames go in. One producer exists at a
    /// time (the ring's one guard); a second gets `Busy` until the first is dropped.
    pub fn producer(self: &Arc<Self>) -> Result<Producer> {
        if self.producer_busy.swap(true, Ordering::Acquire) {
            crate::bail!(Busy, "this frame ring already has a producer");
        }
        Ok(Producer { ring: self.clone(), pending: None })
    }

    /// The bytes a frame with `layout` takes, if it fits a slot.
    fn frame_bytes(&self, layout: &FrameLayout) -> Result<usize> {
        let need = layout.required_bytes()?;
        if need > self.max_bytes {
            crate::bail!(WrongSize, "a {need}-byte frame does not fit slots of {} bytes", self.max_bytes);
        }
        Ok(need)
    }

    /// A slot to write into, dropping the oldest unscored frame when none is free.
    fn take_slot(&self) -> Result<usize> {
        match self.slots.take_for_writing() {
            Some(slot) => Ok(slot),
            None => crate::bail!(Busy, "no frame slot could be taken"),
        }
    }

    /// Makes a written slot ready for the consumer, wakes it, and returns the frame's id.
    fn publish(&self, slot: usize, layout: FrameLayout, timestamp_us: u64) -> u64 {
        let id = self.slots.publish(slot, |id| FrameMeta { id, layout, timestamp_us, committed_at: Instant::now() });
        if let Some(t) = self.consumer.get() {
            t.unpark();
        }
        id
    }

    /// The newest ready frame, for scoring; older ready frames are released as skipped.
    pub fn take_newest(&self) -> Option<FrameReader<'_>> {
        self.slots.take_newest().map(|slot| FrameReader { ring: self, slot })
    }
}

/// The producer side of a [`FrameRing`], from [`FrameRing::producer`]: copy frames in with
/// [`Producer::push`], or write them in place with [`Producer::acquire`] then
/// [`Producer::commit`] (or [`Producer::abandon`]).
///
/// It holds at most one acquired slot; while it does, `push` and `acquire` fail with
/// `WrongState`. Dropping it gives an acquired slot back. `Send`, not `Sync`: one thread at a
/// time. Memory: no call allocates, takes a lock or blocks.
pub struct Producer {
    ring: Arc<FrameRing>,
    pending: Option<usize>,
}

impl Producer {
    /// The largest frame a slot holds, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.ring.max_bytes
    }

    /// Copies a frame in (`data` holds at least the layout's bytes) and returns its id.
    pub fn push(&mut self, data: &[u8], layout: FrameLayout, timestamp_us: u64) -> Result<u64> {
        self.no_pending()?;
        let need = self.ring.frame_bytes(&layout)?;
        if data.len() < need {
            crate::bail!(WrongSize, "the frame buffer holds {} bytes, its layout needs {need}", data.len());
        }
        let slot = self.ring.take_slot()?;
        // SAFETY: the slot is WRITING and only this producer touches it until published.
        let buffer = unsafe { self.ring.slots.data_mut(slot) };
        buffer[..need].copy_from_slice(&data[..need]);
        Ok(self.ring.publish(slot, layout, timestamp_us))
    }

    /// Takes a slot and gives its whole buffer ([`Producer::max_frame_bytes`]) to fill in
    /// place (zero-copy capture); finish with [`Producer::commit`] or [`Producer::abandon`].
    pub fn acquire(&mut self) -> Result<&mut [u8]> {
        self.no_pending()?;
        let slot = self.ring.take_slot()?;
        self.pending = Some(slot);
        // SAFETY: the slot is WRITING and owned by this producer until commit or abandon; the
        // borrow of `self` keeps every other producer call out while the slice lives.
        Ok(unsafe { self.ring.slots.data_mut(slot) })
    }

    /// The buffer of the acquired slot, for callers that cannot hold the borrow from
    /// [`Producer::acquire`] (the C ABI); `None` when no slot is acquired.
    pub fn acquired_buffer(&mut self) -> Option<&mut [u8]> {
        let slot = self.pending?;
        // SAFETY: as in `acquire`.
        Some(unsafe { self.ring.slots.data_mut(slot) })
    }

    /// Publishes the acquired slot as a frame with `layout` and returns its id. A layout
    /// larger than a slot fails with `WrongSize` and gives the slot back (the frame is lost).
    pub fn commit(&mut self, layout: FrameLayout, timestamp_us: u64) -> Result<u64> {
        let Some(slot) = self.pending.take() else {
            crate::bail!(WrongState, "no slot is acquired: acquire one first");
        };
        if let Err(e) = self.ring.frame_bytes(&layout) {
            self.ring.slots.release(slot);
            return Err(e);
        }
        Ok(self.ring.publish(slot, layout, timestamp_us))
    }

    /// Gives the acquired slot back without publishing a frame.
    pub fn abandon(&mut self) -> Result<()> {
        let Some(slot) = self.pending.take() else {
            crate::bail!(WrongState, "no slot is acquired");
        };
        self.ring.slots.release(slot);
        Ok(())
    }

    fn no_pending(&self) -> Result<()> {
        if self.pending.is_some() {
            crate::bail!(WrongState, "a slot is acquired: commit or abandon it first");
        }
        Ok(())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(slot) = self.pending.take() {
            self.ring.slots.release(slot);
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
        // SAFETY: this reader owns the slot (READING) until dropped.
        unsafe { self.ring.slots.meta(self.slot) }.expect("a ready slot has its meta")
    }

    /// The whole slot (`max_bytes`); the frame is its first `meta().layout.required_bytes()` bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: as in `meta`.
        unsafe { self.ring.slots.data(self.slot) }
    }
}

impl Drop for FrameReader<'_> {
    fn drop(&mut self) {
        self.ring.slots.release(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::imaging::pixel::PixelFormat;

    fn layout() -> FrameLayout {
        FrameLayout::packed(4, 2, PixelFormat::Gray8)
    }

    fn ring(capacity: usize) -> Arc<FrameRing> {
        Arc::new(FrameRing::new(capacity, 8).unwrap())
    }

    #[test]
    fn newest_wins_and_older_are_skipped() {
        let ring = ring(4);
        let mut p = ring.producer().unwrap();
        for v in 1..=3u8 {
            p.push(&[v; 8], layout(), v as u64).unwrap();
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
        let ring = ring(3);
        let mut p = ring.producer().unwrap();
        let reading = {
            p.push(&[1; 8], layout(), 1).unwrap();
            ring.take_newest().unwrap()
        };
        for v in 2..=5u8 {
            p.push(&[v; 8], layout(), 0).unwrap();
        }
        // Slots: one being read (1), two ready; 2 and 3 were overwritten in turn.
        assert_eq!(ring.counters().dropped, 2);
        drop(reading);
        assert_eq!(ring.take_newest().unwrap().data()[0], 5);
    }

    #[test]
    fn one_producer_and_one_acquired_slot_at_a_time() {
        let ring = ring(3);
        let mut p = ring.producer().unwrap();
        assert_eq!(ring.producer().err().unwrap().kind(), ErrorKind::Busy, "one producer at a time");
        assert_eq!(p.commit(layout(), 0).unwrap_err().kind(), ErrorKind::WrongState, "commit without acquire");
        assert_eq!(p.abandon().unwrap_err().kind(), ErrorKind::WrongState, "abandon without acquire");
        p.acquire().unwrap()[..8].copy_from_slice(&[5; 8]);
        assert_eq!(p.acquire().err().unwrap().kind(), ErrorKind::WrongState, "a second acquire");
        assert_eq!(p.push(&[1; 8], layout(), 0).unwrap_err().kind(), ErrorKind::WrongState, "push while acquired");
        let id = p.commit(layout(), 1).unwrap();
        assert_eq!(ring.take_newest().unwrap().meta().id, id);
        p.acquire().unwrap()[..8].copy_from_slice(&[9; 8]);
        p.abandon().unwrap(); // not committed: nothing to read
        assert!(ring.take_newest().is_none());
        p.acquire().unwrap()[..8].copy_from_slice(&[7; 8]);
        let id = p.commit(layout(), 42).unwrap();
        let r = ring.take_newest().unwrap();
        assert_eq!((r.meta().id, r.data()[0]), (id, 7));
        drop(r);
        // Dropping the producer with a slot acquired gives the slot back and frees the guard.
        p.acquire().unwrap();
        drop(p);
        let mut p = ring.producer().unwrap();
        for v in 0..3u8 {
            p.push(&[v; 8], layout(), 0).unwrap();
        }
        assert_eq!(ring.counters().dropped, 0, "every slot was free again");
    }

    #[test]
    fn oversize_and_short_frames_are_refused() {
        let ring = ring(3);
        let mut p = ring.producer().unwrap();
        let big = FrameLayout::packed(4, 4, PixelFormat::Gray8);
        assert_eq!(p.push(&[0; 16], big, 0).unwrap_err().kind(), ErrorKind::WrongSize);
        assert_eq!(p.push(&[0; 7], layout(), 0).unwrap_err().kind(), ErrorKind::WrongSize);
        p.acquire().unwrap();
        assert_eq!(p.commit(big, 0).unwrap_err().kind(), ErrorKind::WrongSize);
        assert!(p.acquired_buffer().is_none(), "a refused commit gives the slot back");
        assert!(FrameRing::new(2, 8).is_err());
        assert_eq!(ring.counters().pushed, 0);
    }

    #[test]
    fn producer_and_consumer_threads() {
        let ring = ring(4);
        let mut p = ring.producer().unwrap();
        let producer = std::thread::spawn(move || {
            for v in 0..2000u64 {
                p.push(&[(v % 251) as u8; 8], layout(), v).unwrap();
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
