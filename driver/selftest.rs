// SPDX-License-Identifier: GPL-2.0-only

//! The probe-time self-test: one job through the whole path before the
//! device is offered to userspace. Page tables written by the driver map a
//! command buffer holding END in the kernel's context; the job goes through
//! the submission ring and doorbell, and its completion record (phase bit,
//! sequence number, status) arrives by MSI-X. A device that fails it is not
//! registered.

use kernel::{
    device::{self, Bound},
    dma::Coherent,
    dma_write,
    prelude::*,
    sync::Arc,
    time::msecs_to_jiffies,
};

use crate::engine::Engine;
use crate::job::Job;
use crate::mmu::{PTE_READ, PTE_VALID, PT_ENTRIES};
use crate::ring::KERNEL_CONTEXT;

/// Where the command buffer sits in the kernel context's address space.
const CMDBUF_VA: u64 = 0x1000;
/// ISA 1.0: END is opcode 0x01 with every other bit zero.
const INSN_END: u64 = 0x01;
const INSN_SIZE: u32 = 64;
const TIMEOUT_MS: u32 = 5000;

pub(crate) fn run(dev: &device::Device<Bound>, engine: &Arc<Engine>) -> Result {
    let l2 = Coherent::<u64>::zeroed_slice(dev, PT_ENTRIES, GFP_KERNEL)?;
    let l1 = Coherent::<u64>::zeroed_slice(dev, PT_ENTRIES, GFP_KERNEL)?;
    let l0 = Coherent::<u64>::zeroed_slice(dev, PT_ENTRIES, GFP_KERNEL)?;
    let cmd = Coherent::<u64>::zeroed_slice(dev, PT_ENTRIES, GFP_KERNEL)?;
    dma_write!(cmd, [try: 0], INSN_END);
    // VA 0x1000: level-2 index 0, level-1 index 0, level-0 index 1.
    dma_write!(l2, [try: 0], l1.dma_handle() | PTE_VALID);
    dma_write!(l1, [try: 0], l0.dma_handle() | PTE_VALID);
    dma_write!(l0, [try: 1], cmd.dma_handle() | PTE_VALID | PTE_READ);
    engine.set_context(dev, KERNEL_CONTEXT, l2.dma_handle())?;

    let result = (|| -> Result {
        let fences = &engine.fences;
        let job = Job::kernel(fences, 1, KERNEL_CONTEXT, CMDBUF_VA, INSN_SIZE)?;
        engine.run_kernel_job(&job)?;
        // Interruptible: a loader killed meanwhile (a udev worker past its
        // timeout) fails the probe rather than wait out the job.
        let waited = job.fence.wait_timeout(true, msecs_to_jiffies(TIMEOUT_MS));
        match job.outcome() {
            Some(o) if o.status == 0 => {
                dev_info!(
                    dev,
                    "self-test job completed in {} modelled cycles\n",
                    o.cycles
                );
                Ok(())
            }
            Some(o) => {
                dev_err!(
                    dev,
                    "self-test job failed: status {:#x} at {:#x}\n",
                    o.status,
                    o.fault_addr
                );
                Err(EIO)
            }
            None => {
                let e = if waited.is_err() {
                    dev_err!(dev, "self-test interrupted by a signal while its job ran\n");
                    EINTR
                } else {
                    dev_err!(
                        dev,
                        "self-test job did not complete within {} ms\n",
                        TIMEOUT_MS
                    );
                    ETIMEDOUT
                };
                // Stop the device before its page tables are freed below:
                // the reset aborts the job (and its fence signals).
                let _ = engine.reset_bound(dev);
                Err(e)
            }
        }
    })();
    // The tables are freed on return: unhook them first.
    engine.set_context(dev, KERNEL_CONTEXT, 0)?;
    result
}
