//! Images, from bytes to encoder inputs: decoding files to gray ([`frame`]), frames in memory
//! in a grabber's pixel format with a stride and their conversion to gray ([`pixel`]),
//! OpenCV-exact resampling, padding and the NRQ patch grid ([`preprocess`]), and the picture
//! of a score ([`heatmap`]). No model, no I/O beyond reading an image file.

pub mod frame;
pub mod heatmap;
pub mod pixel;
pub mod preprocess;
