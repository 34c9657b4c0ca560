//! Hooks for `benches/` into the project's tract ops; not a public API.

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
