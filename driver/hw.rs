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
}

/// Reset the device, wait for RESET_DONE, leave interrupts masked.
pub(crate) fn reset(dev: &device::Device, bar: &pci::Bar<'_, BAR0_SIZE>) -> Result {
    bar.write32(0, IRQ_MASK);
    bar.write32(CONTROL_SOFT_RESET, CONTROL);
    poll::read_poll_timeout(
        || Ok(bar.read32(STATUS)),
        |status| status & STATUS_RESET_DONE != 0,
        Delta::from_millis(1),
        Delta::from_millis(2000),
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

// The DMA barriers of <asm/barrier.h>, which the kernel crate of 7.2 does
// not offer (its smp_* barriers order CPUs against CPUs, not against a
// device). Written after arch/{x86,arm64}/include/asm/barrier.h.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("onpu: add this architecture's DMA barriers to hw.rs");

/// dma_rmb(): a read of coherent memory the device writes is not satisfied
/// before an earlier one (the phase bit before the rest of the record).
#[inline(always)]
pub(crate) fn dma_rmb() {
    // SAFETY: a barrier instruction (or, on x86, where loads are not
    // reordered with loads, only a compiler barrier); no operands.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("")
    };
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("dmb oshld")
    };
}

/// dma_wmb(): writes to coherent memory reach the device in order (a ring
/// entry before the index that publishes it).
#[inline(always)]
pub(crate) fn dma_wmb() {
    // SAFETY: as for dma_rmb(); x86 does not reorder stores with stores.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("")
    };
    // SAFETY: as for dma_rmb().
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("dmb oshst")
    };
}

/// mb(): a full barrier against the device: earlier stores to coherent
/// memory are visible to it before later loads are performed (the shadow
/// tail before the event index read).
#[inline(always)]
pub(crate) fn mb() {
    // SAFETY: as for dma_rmb().
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!("mfence")
    };
    // SAFETY: as for dma_rmb().
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!("dsb sy")
    };
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
    };
    let sane = params.sram_size >= 4096
        && params.sram_size <= (1 << 30)
        && (1..=256).contains(&params.contexts)
        && params.va_bits == VA_BITS_SUPPORTED
        && params.clock_khz != 0;
    if !sane {
        dev_err!(dev, "implausible hardware parameters {:?}\n", params);
        return Err(ENODEV);
    }
    Ok(params)
}
