// SPDX-License-Identifier: GPL-2.0-only

//! BAR0 registers (Documentation/hw/npu-hw.rst, "Register map").

pub(crate) const BAR0_SIZE: usize = 0x10000;

pub(crate) const PCI_VENDOR: u16 = 0x1234;
pub(crate) const PCI_DEVICE: u16 = 0x4e50;

pub(crate) const ID: usize = 0x0000;
pub(crate) const VERSION: usize = 0x0004;
pub(crate) const CAPS: usize = 0x0008;
pub(crate) const SRAM_SIZE: usize = 0x000c;
pub(crate) const NUM_CONTEXTS: usize = 0x0010;
pub(crate) const VA_BITS: usize = 0x0014;
pub(crate) const CLOCK_KHZ: usize = 0x0018;
/// Device 1.1: submission rings (reads 0, undefined, on a 1.0 device).
pub(crate) const NUM_RINGS: usize = 0x001c;
pub(crate) const CONTROL: usize = 0x0020;
pub(crate) const STATUS: usize = 0x0024;
pub(crate) const IRQ_STATUS: usize = 0x0030;
pub(crate) const IRQ_MASK: usize = 0x0034;
pub(crate) const IRQ_ACK: usize = 0x0038;
pub(crate) const SQ_BASE_LO: usize = 0x0040;
pub(crate) const SQ_BASE_HI: usize = 0x0044;
pub(crate) const SQ_SIZE: usize = 0x0048;
pub(crate) const SQ_HEAD: usize = 0x004c;
pub(crate) const SQ_TAIL: usize = 0x0050;
pub(crate) const DOORBELL: usize = 0x0054;
pub(crate) const CQ_BASE_LO: usize = 0x0058;
pub(crate) const CQ_BASE_HI: usize = 0x005c;
pub(crate) const CQ_SIZE: usize = 0x0060;
pub(crate) const CQ_HEAD: usize = 0x0064;
pub(crate) const CQ_TAIL: usize = 0x0068;
pub(crate) const CTX_TABLE_LO: usize = 0x0070;
pub(crate) const CTX_TABLE_HI: usize = 0x0074;
pub(crate) const SHADOW_LO: usize = 0x0078;
pub(crate) const SHADOW_HI: usize = 0x007c;
pub(crate) const FAULT_STATUS: usize = 0x0080;
pub(crate) const FAULT_CONTEXT: usize = 0x0084;
pub(crate) const FAULT_ADDR_LO: usize = 0x0088;
pub(crate) const FAULT_ADDR_HI: usize = 0x008c;
pub(crate) const RING_ERROR: usize = 0x0090;
pub(crate) const RING_ERROR_VALUE: usize = 0x0094;
/// The cost-model parameters ("Cost model"), COST_REGISTERS words.
pub(crate) const COST_BASE: usize = 0x00c0;
pub(crate) const COST_REGISTERS: usize = 8;
/// The 64-bit performance counters ("Performance counters"), LO/HI pairs.
pub(crate) const PERF_BASE: usize = 0x0100;
/// Ring n's register block ("Submission rings and priorities").
pub(crate) const RING_BASE: usize = 0x0200;
pub(crate) const RING_STRIDE: usize = 0x20;

pub(crate) const ID_VALUE: u32 = 0x4f4e_5055;
/// The ISA/register major version this driver speaks.
pub(crate) const VERSION_MAJOR: u32 = 1;
pub(crate) const VA_BITS_SUPPORTED: u32 = 39;

/// CAPS: the shadow doorbell page ("Shadow doorbells" in the spec).
pub(crate) const CAP_SHADOW_DOORBELL: u32 = 1 << 3;
/// CAPS: per-job profile records ("Job profile records", device 1.1).
pub(crate) const CAP_JOB_PROFILE: u32 = 1 << 5;
/// CAPS: completion interrupts by event index ("Completion event index",
/// device 1.6).
pub(crate) const CAP_CQ_EVENT: u32 = 1 << 6;
/// Submission-entry flags: write the job's profile record.
pub(crate) const SQ_FLAG_PROFILE: u16 = 1 << 0;
/// Words of the shadow doorbell page.
pub(crate) const SHADOW_SQ_TAIL: usize = 0;
pub(crate) const SHADOW_SQ_EVENT: usize = 1;
pub(crate) const SHADOW_CQ_HEAD: usize = 2;
pub(crate) const SHADOW_WORDS: usize = 1024;

pub(crate) const CONTROL_ENABLE: u32 = 1 << 0;
pub(crate) const CONTROL_SOFT_RESET: u32 = 1 << 1;
/// JOB_DONE by the completion event index instead of IRQ_STATUS/IRQ_ACK.
pub(crate) const CONTROL_CQ_EVENT: u32 = 1 << 2;
pub(crate) const STATUS_ENABLED: u32 = 1 << 0;
pub(crate) const STATUS_RESET_DONE: u32 = 1 << 1;
pub(crate) const STATUS_HALTED: u32 = 1 << 3;
/// IRQ_STATUS causes, by MSI-X vector (0: job done, 1: everything else).
pub(crate) const IRQ_JOB_DONE: u32 = 1 << 0;
pub(crate) const IRQ_ERRORS: u32 = 0x3e;
pub(crate) const IRQ_DEVICE_ERROR: u32 = 1 << 4;
pub(crate) const IRQ_RING_ERROR: u32 = 1 << 5;
pub(crate) const IRQ_ALL: u32 = 0x3f;
/// RING_ERROR bits ("Ring pointer errors"): DOORBELL, CQ_HEAD, the shadow
/// page's SQ_TAIL and CQ_HEAD. Other bits are not defined.
pub(crate) const RING_ERROR_DOORBELL: u32 = 1 << 0;
pub(crate) const RING_ERROR_CQ_HEAD: u32 = 1 << 1;
pub(crate) const RING_ERROR_ALL: u32 = 0xf;
