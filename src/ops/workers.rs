//! Who runs the independent pieces of a project op: the calling thread, or the threads of
//! tract's executor when the encoder runs on several.

/// Who runs an op's independent pieces (heads, row blocks): the calling thread, or the pool of tract's current executor.
pub(crate) enum Workers {
    /// tract's executor of the running plan (one thread unless the encoder has more).
    Current,
    /// This many threads of a pool of our own (tests).
    #[cfg(all(test, feature = "multithread"))]
    Pool(std::sync::Arc<tract_linalg::multithread::Executor>),
}

impl Workers {
    /// Runs `work(w, n)` for w in 0..n, n workers at most `items`.
    pub(crate) fn run(&self, items: usize, work: &(dyn Fn(usize, usize) + Sync)) {
        #[cfg(feature = "multithread")]
        {
            use tract_linalg::multithread::Executor;
            let executor = match self {
                Workers::Current => tract_linalg::multithread::current_tract_executor(),
                #[cfg(test)]
                Workers::Pool(e) => (**e).clone(),
            };
            if let Executor::MultiThread(pool) = executor {
                let n = pool.current_num_threads().min(items);
                if n > 1 {
                    pool.scope(|s| {
                        for w in 0..n {
                            s.spawn(move |_| work(w, n));
                        }
                    });
                    return;
                }
            }
        }
        let _ = items;
        work(0, 1);
    }
}

/// An output that several workers write at once, each through ranges no other worker touches
/// (rows of a block, a head's columns): the one place the ops share a `&mut` slice across
/// threads.
pub(crate) struct Disjoint<'a, T> {
    ptr: *mut T,
    len: usize,
    _out: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: every user hands each range to one worker, and the slice outlives the workers (the
// pool's scope joins them before `Workers::run` returns).
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub(crate) fn new(out: &'a mut [T]) -> Self {
        Disjoint { ptr: out.as_mut_ptr(), len: out.len(), _out: std::marker::PhantomData }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Values `start..start + len`. The caller keeps each range to one worker at a time.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn range(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "range {start}+{len} of {}", self.len);
        // SAFETY: in bounds (checked above); disjoint between workers (the callers' contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}
