//! The ONPU device model: the hardware specified in
//! Documentation/hw/npu-hw.rst, as a library.
//!
//! Nothing here knows about vfio-user: the `npu-device-server` binary wraps a
//! [`Device`] in a vfio-user server for QEMU, and tests (this crate's and
//! libnpu's) drive it in-process through [`testbench::Bench`].

pub mod cost;
pub mod device;
pub mod exec;
pub mod gemm;
pub mod inject;
pub mod mem;
pub mod mmu;
pub mod regs;
pub mod server;
pub mod testbench;

pub use device::{DelayEnder, Device, DeviceConfig, IrqSink};
pub use npu_isa as isa;
