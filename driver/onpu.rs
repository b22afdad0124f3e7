// SPDX-License-Identifier: GPL-2.0-only

//! DRM accel driver for the open NPU.
//!
//! The hardware is specified in Documentation/hw/npu-hw.rst, the uAPI in
//! Documentation/uapi/onpu.rst. Files: `drv` (PCI probe and the DRM driver),
//! `hw` (register access and hardware bring-up), `file` (per-open state and
//! ioctls), `regs` (register map), `uapi` (the ABI shared with userspace:
//! a link to uapi/src/abi.rs).

mod drv;
mod engine;
mod file;
mod gem;
mod hw;
mod regs;
mod selftest;
// Shared with userspace, which uses all of it; the driver uses what it needs.
#[allow(dead_code, unreachable_pub)]
mod uapi;

kernel::module_pci_driver! {
    type: drv::OnpuPciDriver,
    name: "onpu",
    authors: ["The open NPU stack developers"],
    description: "DRM accel driver for the open NPU",
    license: "GPL v2",
}
