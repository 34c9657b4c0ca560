//! A fixed memory pool to serve every Rust allocation of a process from, for firmware that
//! must not call the system allocator after start-up (tract allocates on every run).
//!
//! `PoolAllocator` is a `GlobalAlloc`: a TLSF allocator (bounded-time allocate and free,
//! the `rlsf` crate) over one block taken from a backing allocator on first use, behind a
//! mutex. An allocation the pool cannot serve goes to the backing allocator and is counted
//! (`PoolStats::fallbacks`), so an undersized pool shows up instead of failing.
//!
//! ```ignore
//! #[global_allocator]
//! static POOL: usq::pool::PoolAllocator = usq::pool::PoolAllocator::new(std::alloc::System, 256 << 20);
//! ```

use rlsf::Tlsf;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::Mutex;

type Heap = Tlsf<'static, u32, u32, 28, 16>;

/// Alignment of the pool block itself.
const BLOCK_ALIGN: usize = 4096;

struct PoolState {
    heap: Heap,
    /// 0 until the block is taken; `usize::MAX` if taking it failed.
    base: usize,
    end: usize,
    in_use: usize,
    peak: usize,
    allocations: u64,
    fallbacks: u64,
}

// The heap holds raw pointers into the pool block, which lives as long as the process.
unsafe impl Send for PoolState {}

/// What the pool has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Size of the pool block in bytes; 0 before the first allocation or if taking it failed.
    pub pool_bytes: usize,
    /// Bytes currently allocated from the pool (requested sizes).
    pub in_use: usize,
    /// The most ever allocated at once: what sizes the pool.
    pub peak: usize,
    /// Allocations and in-pool reallocations the pool served.
    pub allocations: u64,
    /// Allocations the pool could not serve, sent to the backing allocator.
    pub fallbacks: u64,
}

/// A `GlobalAlloc` serving allocations from one fixed TLSF pool, falling back to `backing`;
/// every call takes one mutex (see the module docs).
pub struct PoolAllocator<B: GlobalAlloc = System> {
    backing: B,
    bytes: usize,
    state: Mutex<PoolState>,
}

impl<B: GlobalAlloc> PoolAllocator<B> {
    /// A pool of `bytes`, taken from `backing` on the first allocation.
    pub const fn new(backing: B, bytes: usize) -> PoolAllocator<B> {
        PoolAllocator {
            backing,
            bytes,
            state: Mutex::new(PoolState {
                heap: Tlsf::new(),
                base: 0,
                end: 0,
                in_use: 0,
                peak: 0,
                allocations: 0,
                fallbacks: 0,
            }),
        }
    }

    /// What the pool has done so far; takes the pool's mutex, allocates nothing.
    pub fn stats(&self) -> PoolStats {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        PoolStats {
            pool_bytes: if s.base == 0 || s.base == usize::MAX { 0 } else { s.end - s.base },
            in_use: s.in_use,
            peak: s.peak,
            allocations: s.allocations,
            fallbacks: s.fallbacks,
        }
    }

    /// Takes the pool block on first use.
    unsafe fn ensure_block(&self, s: &mut PoolState) {
        if s.base != 0 {
            return;
        }
        let Ok(layout) = Layout::from_size_align(self.bytes, BLOCK_ALIGN) else {
            s.base = usize::MAX;
            return;
        };
        let ptr = unsafe { self.backing.alloc(layout) };
        let Some(block) = NonNull::new(std::ptr::slice_from_raw_parts_mut(ptr, self.bytes)) else {
            s.base = usize::MAX;
            return;
        };
        unsafe { s.heap.insert_free_block_ptr(block) };
        s.base = ptr as usize;
        s.end = s.base + self.bytes;
    }

    fn owns(s: &PoolState, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        s.base != usize::MAX && p >= s.base && p < s.end
    }
}

unsafe impl<B: GlobalAlloc> GlobalAlloc for PoolAllocator<B> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            unsafe { self.ensure_block(&mut s) };
            if let Some(p) = s.heap.allocate(layout) {
                s.in_use += layout.size();
                s.peak = s.peak.max(s.in_use);
                s.allocations += 1;
                return p.as_ptr();
            }
            s.fallbacks += 1;
        }
        unsafe { self.backing.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if Self::owns(&s, ptr) {
                unsafe { s.heap.deallocate(NonNull::new_unchecked(ptr), layout.align()) };
                s.in_use -= layout.size();
                return;
            }
        }
        unsafe { self.backing.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if Self::owns(&s, ptr) {
                if let Some(p) = unsafe { s.heap.reallocate(NonNull::new_unchecked(ptr), new_layout) } {
                    s.in_use = s.in_use - layout.size() + new_size;
                    s.peak = s.peak.max(s.in_use);
                    s.allocations += 1;
                    return p.as_ptr();
                }
            } else {
                drop(s);
                return unsafe { self.backing.realloc(ptr, layout, new_size) };
            }
        }
        // In the pool but it cannot grow there: move it out to wherever alloc puts it.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Returns the block to the backing allocator. A `#[global_allocator]` static is never
/// dropped; a pool owned otherwise must outlive everything it served, as any allocator must.
impl<B: GlobalAlloc> Drop for PoolAllocator<B> {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if s.base != 0 && s.base != usize::MAX {
            let layout = Layout::from_size_align(self.bytes, BLOCK_ALIGN).expect("the block was taken with it");
            // SAFETY: the block `ensure_block` took from `backing` with this layout, freed once.
            unsafe { self.backing.dealloc(s.base as *mut u8, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting(AtomicU64);
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            self.0.fetch_add(1, Ordering::Relaxed);
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { System.dealloc(p, l) }
        }
    }

    #[test]
    fn serves_from_the_pool_and_falls_back_visibly() {
        let pool = PoolAllocator::new(Counting(AtomicU64::new(0)), 1 << 20);
        unsafe {
            let l = Layout::from_size_align(1000, 8).unwrap();
            let a = pool.alloc(l);
            let b = pool.alloc(l);
            assert!(!a.is_null() && !b.is_null());
            assert_eq!(pool.backing.0.load(Ordering::Relaxed), 1, "one block taken, once");
            let a = pool.realloc(a, l, 5000);
            a.write_bytes(7, 5000);
            pool.dealloc(b, l);
            let big = Layout::from_size_align(4 << 20, 8).unwrap();
            let c = pool.alloc(big);
            assert!(!c.is_null());
            let s = pool.stats();
            assert_eq!((s.fallbacks, s.in_use), (1, 5000));
            pool.dealloc(c, big);
            pool.dealloc(a, Layout::from_size_align(5000, 8).unwrap());
            assert_eq!(pool.stats().in_use, 0);
            assert_eq!(pool.stats().pool_bytes, 1 << 20);
        }
    }
}
