// SPDX-License-Identifier: GPL-2.0-only

//! DRM accel driver for the open NPU.
//!
//! The hardware is specified in Documentation/hw/npu-hw.rst, the uAPI in
//! Documentation/uapi/onpu.rst, the design in Documentation/driver/onpu.rst.
//! Files: `drv` (PCI probe and the DRM driver), `hw` and `regs` (register
//! access, bring-up, the register map), `engine` (the device-wide
//! object), `ring` (the rings: entries, doorbell, records), `inflight`
//! (the jobs in the ring, their entry, completion and end), `irq`
//! (interrupts),
//! `reset` (reset recovery, watchdog), `sched` (queues, scheduler pass),
//! `job` (SUBMIT and the job life cycle),
//! `context` and `mmu` (per-file address spaces and page tables), `gem`
//! (buffer objects), `userptr` (objects of pinned user memory), `fence`
//! (DMA fences, syncobjs, reservation objects), `file` (per-open state,
//! ioctls, fdinfo), `debugfs` (counters, state, wedged), `query` (QUERY),
//! `selftest` (the probe-time job). The ioctl ABI is `kernel::uapi`: the
//! kernel's bindgen output of include/uapi/drm/onpu_accel.h, the header
//! userspace's npu-uapi crate is generated from too.

mod context;
mod coredump;
mod debugfs;
mod drv;
mod engine;
mod fence;
mod file;
mod gem;
mod hw;
mod inflight;
mod irq;
mod job;
mod mmu;
mod query;
mod regs;
mod reset;
mod ring;
mod sched;
mod selftest;
mod slots;
mod userptr;
// One name for the uAPI types in every module: `use crate::uapi;`.
use kernel::uapi;

kernel::module_pci_driver! {
    type: drv::OnpuPciDriver,
    name: "onpu",
    authors: ["The open NPU stack developers"],
    description: "DRM accel driver for the open NPU",
    license: "GPL v2",
}
