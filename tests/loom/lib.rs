//! The frame ring's slot state machine, the file the library builds, checked here.

#[path = "../../src/engine/slots.rs"]
pub mod slots;

#[cfg(test)]
mod model;
