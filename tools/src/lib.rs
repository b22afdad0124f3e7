//! Shared pieces of the guest tools and selftests: TAP output in the
//! kselftest style, the DMA copy job the tests run, child processes, and
//! command lines. The device node and its ioctls are libnpu's
//! (`npu::device`, and `npu::device::raw` for tests of the uAPI itself).

pub mod args;
pub mod child;
pub mod copyjob;
pub mod debugfs;
pub mod faultinject;
pub mod kmod;
pub mod npy;
pub mod onnx_model;
pub mod syncfile;
pub mod tap;
