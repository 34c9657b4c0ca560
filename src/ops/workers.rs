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
