//! Shared pieces of the guest tools and selftests: TAP output in the
//! kselftest style, access to the accel device node, the DMA copy job the
//! tests run, child processes, and command lines.

pub mod accel;
pub mod args;
pub mod child;
pub mod copyjob;
pub mod kmod;
pub mod npy;
pub mod onnx_model;
pub mod tap;
