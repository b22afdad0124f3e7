// SPDX-License-Identifier: GPL-2.0-only

//! Register access and hardware bring-up.

use kernel::{
    device,
    io::{poll, Io},
    pci,
    prelude::*,
    time::Delta,
};

use crate::regs::*;

pub(crate) type Bar0 = pci::Bar<'static, BAR0_SIZE>;

/// What the hardware told us at probe, checked for sanity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) device_id: u16,
    pub(crate) revision: u8,
    pub(crate) isa_version: u32,
    pub(crate) caps: u32,
    pub(crate) sram_size: u32,
    pub(crate) contexts: u32,
    pub(crate) va_bits: u32,
    pub(crate) clock_khz: u32,
    /// Submission rings (1 on a 1.0 device, which has no NUM_RINGS).
    pub(crate) num_rings: u32,
    /// The COST_* registers, in register order.
    pub(crate) cost: [u32; COST_REGISTERS],
}

/// How long a reset may take before the device is given up (wedged).
pub(crate) const RESET_TIMEOUT_MS: i64 = 1000;

/// Reset the device, wait for RESET_DONE, leave interrupts masked.
pub(crate) fn reset(dev: &device::Device, bar: &pci::Bar<'_, BAR0_SIZE>) -> Result {
    bar.write32(0, IRQ_MASK);
    bar.write32(CONTROL_SOFT_RESET, CONTROL);
    poll::read_poll_timeout(
        || Ok(bar.read32(STATUS)),
        |status| status & STATUS_RESET_DONE != 0,
        Delta::from_millis(1),
        Delta::from_millis(RESET_TIMEOUT_MS),
    )
    .inspect_err(|_| dev_err!(dev, "the NPU did not finish its reset\n"))?;
    bar.write32(IRQ_ALL, IRQ_ACK);
    Ok(())
}

/// Stop the device for good: interrupts masked, the command processor
/// disabled, then a soft reset, which aborts the running job without a
/// completion record: once RESET_DONE is set the device writes no more
/// into the rings or into any job's memory. Bounded by reset()'s timeout.
pub(crate) fn quiesce(dev: &device::Device, bar: &pci::Bar<'_, BAR0_SIZE>) -> Result {
    bar.write32(0, IRQ_MASK);
    bar.write32(0, CONTROL);
    reset(dev, bar)?;
    bar.write32(0, IRQ_MASK);
    Ok(())
}

/// Turn off bus mastering: the device can no longer reach host memory,
/// whatever it does (the last step of unbind, after quiesce()).
pub(crate) fn stop_bus_master(pdev: &pci::Device<device::Bound>) {
    const PCI_COMMAND: usize = 0x04;
    const PCI_COMMAND_MASTER: u16 = 1 << 2;
    let cfg = pdev.config_space();
    let command = cfg.read16(PCI_COMMAND);
    cfg.write16(command & !PCI_COMMAND_MASTER, PCI_COMMAND);
}

/// Identify the device and read its parameters; refuse what this driver
/// does not know how to drive. Every value comes from the device and is
/// checked before it is used.
pub(crate) fn identify(pdev: &pci::Device, bar: &pci::Bar<'_, BAR0_SIZE>) -> Result<Params> {
    let dev = pdev.as_ref();
    let id = bar.read32(ID);
    if id != ID_VALUE {
        dev_err!(dev, "unexpected ID register {:#x}, not an open NPU\n", id);
        return Err(ENODEV);
    }
    let isa_version = bar.read32(VERSION);
    if isa_version >> 16 != VERSION_MAJOR {
        dev_err!(
            dev,
            "ISA version {}.{} is not supported (this driver speaks {}.x)\n",
            isa_version >> 16,
            isa_version & 0xffff,
            VERSION_MAJOR
        );
        return Err(ENODEV);
    }
    let params = Params {
        device_id: pdev.device_id(),
        revision: pdev.revision_id(),
        isa_version,
        caps: bar.read32(CAPS),
        sram_size: bar.read32(SRAM_SIZE),
        contexts: bar.read32(NUM_CONTEXTS),
        va_bits: bar.read32(VA_BITS),
        clock_khz: bar.read32(CLOCK_KHZ),
        num_rings: match bar.read32(NUM_RINGS) {
            0 => 1,
            n => n,
        },
        cost: core::array::from_fn(|i| bar.read32(COST_BASE + 4 * i)),
    };
    let sane = params.sram_size >= 4096
        && params.sram_size <= (1 << 30)
        && (1..=256).contains(&params.contexts)
        && params.va_bits == VA_BITS_SUPPORTED
        && params.clock_khz != 0
        && params.num_rings <= 64
        // Userspace divides by the throughputs (every COST_* but
        // DMA_LATENCY, INSN_OVERHEAD and WALK_CYCLES).
        && [0, 2, 3, 4, 5].iter().all(|&i| params.cost[i] != 0);
    if !sane {
        dev_err!(dev, "implausible hardware parameters {:?}\n", params);
        return Err(ENODEV);
    }
    Ok(params)
}
