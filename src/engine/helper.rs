//! `Helper`: one more encoder of the live engine, on its own thread, so that a frame's patches
//! are encoded on several cores at once. Per frame the worker publishes the padded frame
//! ([`SharedFrame`]), hands each helper a share of the patches it chose and, after encoding
//! its own, collects each helper's log-likelihoods into the window. Buffers are sized when the
//! frame size changes; a frame allocates nothing. The hand-over is a mutex and a condition
//! variable, not a channel: a channel allocates the first time a thread waits on it, which
//! would happen at a moment that depends on timing.

use super::MAX_BATCH;
use crate::contract::{DESCRIPTOR_LEN, INPUT_SIDE};
use crate::encoder::Encoder;
use crate::error::{Error, ErrorKind, Result};
use crate::imaging::preprocess::{self, PatchOrigin};
use crate::manifold::ManifoldSet;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

/// The frame as the worker publishes it to its helpers.
#[derive(Debug, Default)]
pub(crate) struct SharedFrame {
    /// Gray pixels padded to the encoder's input ([`preprocess::pad_into`]).
    pub padded: Vec<u8>,
    pub padded_width: usize,
    /// The patch grid, top-left corners in the padded frame.
    pub grid: Vec<PatchOrigin>,
}

/// A helper's share of one frame: the patches (grid indices) it encodes and, per patch, the
/// log-likelihood the window records and each organ's.
#[derive(Debug, Default)]
pub(crate) struct Share {
    pub patches: Vec<usize>,
    pub logliks: Vec<f64>,
    /// `patches.len()` rows of one value per organ.
    pub each: Vec<f64>,
}

/// Where the worker and a helper stand on the current job.
#[derive(Debug)]
enum Turn {
    /// No job: the helper waits.
    Idle,
    /// A job for the helper.
    Job,
    /// The helper's answer, for the worker.
    Done(Result<()>),
    /// The worker is gone: the helper ends.
    Closed,
}

/// One job at a time between the worker and a helper.
#[derive(Debug)]
struct Mailbox {
    turn: Mutex<Turn>,
    changed: Condvar,
}

impl Mailbox {
    fn set(&self, turn: Turn) {
        *self.turn.lock().unwrap_or_else(PoisonError::into_inner) = turn;
        self.changed.notify_all();
    }

    /// Posts a job, unless the helper is gone (`Closed` stays for good).
    fn post_job(&self) -> Result<()> {
        let mut turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*turn, Turn::Closed) {
            return Err(stopped());
        }
        *turn = Turn::Job;
        self.changed.notify_all();
        Ok(())
    }

    /// Waits until the turn is `Closed` or one that `ready` accepts, and takes it (leaving
    /// `Idle`; `Closed` stays).
    fn take(&self, ready: impl Fn(&Turn) -> bool) -> Turn {
        let mut turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        while !(ready(&turn) || matches!(*turn, Turn::Closed)) {
            turn = self.changed.wait(turn).unwrap_or_else(PoisonError::into_inner);
        }
        if matches!(*turn, Turn::Closed) {
            return Turn::Closed;
        }
        std::mem::replace(&mut *turn, Turn::Idle)
    }
}

/// A helper thread and its mailbox: one job per frame, one answer per job.
pub(crate) struct Helper {
    mailbox: Arc<Mailbox>,
    share: Arc<Mutex<Share>>,
    thread: Option<JoinHandle<()>>,
}

/// What the helper thread owns.
struct Encoding {
    encoder: Encoder,
    manifolds: ManifoldSet,
    organ: Option<usize>,
    frame: Arc<RwLock<SharedFrame>>,
    share: Arc<Mutex<Share>>,
    inputs: Vec<Vec<f32>>,
    descriptor: Vec<f64>,
    scratch: Vec<f64>,
    each: Vec<f64>,
}

fn stopped() -> Error {
    Error::new(ErrorKind::Inference, "a helper encoder thread of the live engine stopped")
}

impl Helper {
    /// Starts a helper thread with its own (warmed-up) encoder, a fork of the worker's.
    pub fn start(
        encoder: Encoder,
        manifolds: ManifoldSet,
        organ: Option<usize>,
        frame: Arc<RwLock<SharedFrame>>,
        name: String,
    ) -> Result<Helper> {
        let mailbox = Arc::new(Mailbox { turn: Mutex::new(Turn::Idle), changed: Condvar::new() });
        let share = Arc::new(Mutex::new(Share::default()));
        let scratch = manifolds.organs.iter().map(|o| o.dim + o.components).max().unwrap_or(0);
        let organs = manifolds.organs.len();
        let batch = encoder.batch();
        let mut work = Encoding {
            encoder,
            manifolds,
            organ,
            frame,
            share: share.clone(),
            inputs: vec![vec![0f32; INPUT_SIDE * INPUT_SIDE]; batch],
            descriptor: vec![0f64; DESCRIPTOR_LEN],
            scratch: Vec::with_capacity(scratch),
            each: vec![f64::NAN; organs],
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn({
                let mailbox = mailbox.clone();
                move || {
                    // A panic in `encode` ends the thread; the guard tells the worker.
                    let closed = CloseOnDrop(&mailbox);
                    while let Turn::Job = mailbox.take(|t| matches!(t, Turn::Job)) {
                        let answer = work.encode();
                        mailbox.set(Turn::Done(answer));
                    }
                    drop(closed);
                }
            })
            .map_err(|e| Error::from_source(ErrorKind::Io, &e).context("starting a helper encoder thread"))?;
        Ok(Helper { mailbox, share, thread: Some(thread) })
    }

    /// Room for every patch of a grid of `patches` and `organs` organs (at a new frame size).
    pub fn reserve(&self, patches: usize, organs: usize) {
        let mut s = self.share.lock().unwrap_or_else(PoisonError::into_inner);
        let Share { patches: p, logliks, each } = &mut *s;
        for v in [&mut *logliks, &mut *each] {
            v.clear();
        }
        p.clear();
        p.reserve(patches);
        logliks.reserve(patches);
        each.reserve(patches * organs);
    }

    /// Hands the helper these patches of the published frame. Each call is answered by
    /// [`Helper::wait`] before the next.
    pub fn send(&self, patches: &[usize]) -> Result<()> {
        {
            let mut s = self.share.lock().unwrap_or_else(PoisonError::into_inner);
            s.patches.clear();
            s.patches.extend_from_slice(patches);
        }
        self.mailbox.post_job()
    }

    /// Whether the helper still takes jobs (it stops only if an encoder run panicked).
    pub fn is_alive(&self) -> bool {
        !matches!(*self.mailbox.turn.lock().unwrap_or_else(PoisonError::into_inner), Turn::Closed)
    }

    /// Waits for the patches sent last, then gives their results to `record`, patch by patch:
    /// `(grid index, log-likelihood, each organ's)`.
    pub fn wait(&self, organs: usize, mut record: impl FnMut(usize, f64, &[f64])) -> Result<()> {
        match self.mailbox.take(|t| matches!(t, Turn::Done(_))) {
            Turn::Done(answer) => answer?,
            _ => return Err(stopped()),
        }
        let s = self.share.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, &p) in s.patches.iter().enumerate() {
            record(p, s.logliks[i], &s.each[i * organs..][..organs]);
        }
        Ok(())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing the mailbox ends the thread's loop.
        self.mailbox.set(Turn::Closed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Encoding {
    fn encode(&mut self) -> Result<()> {
        let frame = self.frame.read().unwrap_or_else(PoisonError::into_inner);
        let mut share = self.share.lock().unwrap_or_else(PoisonError::into_inner);
        let Share { patches, logliks, each: each_out } = &mut *share;
        let organs = self.each.len();
        logliks.clear();
        logliks.resize(patches.len(), f64::NAN);
        each_out.clear();
        each_out.resize(patches.len() * organs, f64::NAN);
        let organ = self.organ.map(|i| &self.manifolds.organs[i]);
        let batch = self.encoder.batch();
        for (c, chunk) in patches.chunks(batch).enumerate() {
            let mut refs: heapless::Vec<&[f32], MAX_BATCH> = heapless::Vec::new();
            for (buf, &p) in self.inputs.iter_mut().zip(chunk) {
                preprocess::crop_patch_from(&frame.padded, frame.padded_width, frame.grid[p], buf);
            }
            for buf in &self.inputs[..chunk.len()] {
                let _ = refs.push(buf);
            }
            let (descriptor, scratch, each, manifolds) =
                (&mut self.descriptor, &mut self.scratch, &mut self.each, &self.manifolds);
            self.encoder.run_with(&refs, |i, layers| {
                crate::metrics::nrq::patch_descriptor_into(&layers, descriptor);
                let k = c * batch + i;
                logliks[k] = manifolds.loglik_each(organ, descriptor, scratch, each);
                each_out[k * organs..][..organs].copy_from_slice(each);
            })?;
        }
        Ok(())
    }
}

/// Sets the mailbox `Closed` when the helper thread ends, panicking or not, so that a worker
/// waiting for an answer learns that none will come.
struct CloseOnDrop<'a>(&'a Mailbox);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(Turn::Closed);
    }
}
