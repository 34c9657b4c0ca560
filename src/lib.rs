#![warn(missing_docs)]
//! usq: live ultrasound image quality from the TinyUSFM foundation model.
//!
//! - [`contract`]: the model contract's sizes, names and metadata keys;
//! - [`scorer`]: a model and its manifolds, checked once; NRQ, uLPIPS and heatmaps;
//! - [`imaging`]: images from bytes to encoder inputs: decoding, pixel formats with stride,
//!   gray conversion, OpenCV-exact resampling, the NRQ patch grid, heatmaps;
//! - [`dataset`]: folders of images as one job: listing, pairing, scoring on several threads;
//! - [`fitting`]: organ manifolds fitted from folders of clean frames (fit and quality scale);
//! - [`encoder`]: the TinyUSFM contract model through tract;
//! - [`metrics`]: the uLPIPS and NRQ maths over features (pure);
//! - [`manifold`]: organ manifolds (reading, writing, fitting);
//! - [`quality`]: the metrics end to end;
//! - [`checks`]: acquisition checks beside NRQ (gain, saturation, contact, frozen, blank,
//!   organ mismatch), judged against the organ's clean statistics;
//! - [`capture`]: capture-card frames (V4L2 with feature `v4l2`) and their formats;
//! - [`engine`]: the live engine (frame ring, latency budget, rotating patch schedule);
//! - `ops` (crate-private): tract ops the project owns (faster casts, int8 quantisation and
//!   attention);
//! - [`weighting`]: task-anchored uLPIPS weights (beside the paper's equal weights);
//! - [`pool`]: a fixed-pool global allocator for allocation-free firmware;
//! - [`defaults`]: the shipped models and manifold, and which a scorer uses;
//! - [`error`]: the crate's one error type: a kind to branch on and a chain of context.

pub mod capture;
pub mod checks;
pub mod clip;
pub mod contract;
pub mod dataset;
pub mod defaults;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod fitting;
pub mod imaging;
pub mod manifold;
pub mod metrics;
pub(crate) mod ops;
pub mod pool;
pub mod quality;
pub mod scorer;
pub mod weighting;

/// Hooks for `benches/` into the project's tract ops; not a public API.
#[doc(hidden)]
pub mod bench_hooks {
    use crate::ops::linear::{Kernel, LinearI8};
    use crate::ops::workers::Workers;

    /// The int8 linear op on weights `[K, N]`, its kernels one by one.
    pub struct Int8Linear(LinearI8);

    impl Int8Linear {
        pub fn new(weights: &[i8], k: usize, n: usize) -> Int8Linear {
            Int8Linear(LinearI8::new(weights, k, n).expect("int8 linear weights"))
        }

        /// The kernels this CPU runs, by name: the one the op picks, then the ones it runs
        /// only when asked (the 256-bit VNNI body beside the 512-bit one).
        pub fn kernels() -> Vec<&'static str> {
            #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
            let mut names = vec![Kernel::Auto.name()];
            #[cfg(target_arch = "x86_64")]
            if !names.contains(&Kernel::Ymm.name()) && Kernel::Ymm.name() != Kernel::Portable.name() {
                names.push(Kernel::Ymm.name());
            }
            names
        }

        /// `out = x · W` on this thread with the kernel of that name ([`Self::kernels`]).
        pub fn run(&self, kernel: &str, x: &[i8], out: &mut [i32]) {
            #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
            let mut choice = Kernel::Auto;
            #[cfg(target_arch = "x86_64")]
            if kernel == Kernel::Ymm.name() {
                choice = Kernel::Ymm;
            }
            assert_eq!(choice.name(), kernel, "no such kernel here");
            self.0.run(choice, x, out, &Workers::Current)
        }
    }
}

pub use defaults::{LiveModel, ManifoldSource, ModelSource};
pub use encoder::{Encoder, EncoderOptions, ImageFeatures, ModelInfo};
pub use error::{Context, Error, ErrorKind, Result};
pub use imaging::frame::GrayFrame;
pub use manifold::{ManifoldSet, OrganModel};
pub use quality::{CompareReport, ScoreOptions, ScoreReport};
pub use scorer::Scorer;
pub use weighting::UlpipsWeights;
