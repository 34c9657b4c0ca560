//! Hooks for `benches/` into the project's tract ops; not a public API.

use crate::ops::linear::{Kernel, LinearI8};
use crate::ops::workers::Workers;

/// The int8 linear op on weights `[K, N]`, its kernels one by one.
pub struct Int8Linear(LinearI8);

impl Int8Linear {
    pub fn new(weights: &[i8], k: usize, n: usize) -> Int8Linear {
        Int8Linear(LinearI8::new(weights, k, n).expect("int8 linear weights"))
    }

    /// The kernels this CPU runs, by name: the one the op picks, then the ones it runs only
    /// when asked (the 256-bit VNNI body beside the 512-bit one, the ARMv8.0 kernel beside the
    /// dot product).
    pub fn kernels() -> Vec<&'static str> {
        Self::choices().map(Kernel::name).collect()
    }

    /// `out = x · W` on this thread with the kernel of that name ([`Self::kernels`]).
    pub fn run(&self, kernel: &str, x: &[i8], out: &mut [i32]) {
        let choice = Self::choices().find(|k| k.name() == kernel).expect("no such kernel here");
        self.0.run(choice, x, out, &Workers::Current)
    }

    fn choices() -> impl Iterator<Item = Kernel> {
        std::iter::once(Kernel::Auto).chain(Kernel::on_request())
    }
}
