// SPDX-License-Identifier: GPL-2.0-only

//! The command engine: the submission and completion rings, the context
//! table, and the interrupt handlers that drain completions
//! (Documentation/hw/npu-hw.rst, "Submission ring", "Completion ring").
//!
//! Everything read back from the device's completion records is checked
//! before it is believed: a record with an unknown sequence number or a
//! status outside the documented codes is counted and dropped.

use kernel::{
    device::{self, Bound},
    devres::Devres,
    dma::Coherent,
    dma_read, dma_write,
    io::Io,
    irq::{self, IrqReturn},
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
    time::msecs_to_jiffies,
    transmute::{AsBytes, FromBytes},
};

use crate::hw::{Bar0, Params};
use crate::regs::*;

/// Entries of each ring.
pub(crate) const RING_ENTRIES: u32 = 256;
/// Page-table entries per 4 KiB table.
pub(crate) const PT_ENTRIES: usize = 512;
pub(crate) const PTE_VALID: u64 = 1 << 0;
pub(crate) const PTE_READ: u64 = 1 << 1;
/// The context the kernel uses for its own jobs (the probe self-test).
pub(crate) const KERNEL_CONTEXT: usize = 0;
/// Highest fault code of ISA 1.0.
const STATUS_MAX: u32 = 11;

/// A submission-ring entry.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct SqEntry {
    pub(crate) seqno: u64,
    pub(crate) cmdbuf: u64,
    pub(crate) size: u32,
    pub(crate) context: u16,
    pub(crate) flags: u16,
    pub(crate) reserved: [u64; 5],
}

/// A completion record.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CqEntry {
    pub(crate) seqno: u64,
    pub(crate) status: u32,
    pub(crate) context: u16,
    pub(crate) reserved: u16,
    pub(crate) fault_addr: u64,
    pub(crate) cycles: u32,
    pub(crate) flags: u32,
}

/// A context-table descriptor.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct CtxDesc {
    pub(crate) root: u64,
    pub(crate) reserved: u64,
}

// SAFETY: plain integers with no padding (64, 32 and 16 bytes, checked
// below); every bit pattern is valid.
unsafe impl FromBytes for SqEntry {}
// SAFETY: as above: no padding, so no uninitialised bytes.
unsafe impl AsBytes for SqEntry {}
// SAFETY: as for SqEntry.
unsafe impl FromBytes for CqEntry {}
// SAFETY: as for SqEntry.
unsafe impl AsBytes for CqEntry {}
// SAFETY: as for SqEntry.
unsafe impl FromBytes for CtxDesc {}
// SAFETY: as for SqEntry.
unsafe impl AsBytes for CtxDesc {}

const _: () = {
    assert!(core::mem::size_of::<SqEntry>() == 64);
    assert!(core::mem::size_of::<CqEntry>() == 32);
    assert!(core::mem::size_of::<CtxDesc>() == 16);
};

/// What a finished job reported.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) status: u32,
    pub(crate) fault_addr: u64,
    pub(crate) cycles: u32,
}

struct RingState {
    sq_tail: u32,
    cq_head: u32,
    next_seqno: u64,
    /// The last sequence number the device reported, and how.
    last_done: u64,
    last_outcome: Outcome,
    /// Completion records that did not make sense.
    bogus_completions: u64,
}

/// The rings and their state. Shared by the DRM device and the IRQ handlers.
#[pin_data]
pub(crate) struct Engine {
    pub(crate) bar: Devres<Bar0>,
    pub(crate) params: Params,
    sq: Coherent<[SqEntry]>,
    cq: Coherent<[CqEntry]>,
    pub(crate) ctx_table: Coherent<[CtxDesc]>,
    #[pin]
    state: Mutex<RingState>,
    #[pin]
    done: CondVar,
}

impl Engine {
    pub(crate) fn new(dev: &device::Device<Bound>, bar: Devres<Bar0>, params: Params) -> Result<impl PinInit<Self, Error>> {
        let sq = Coherent::<SqEntry>::zeroed_slice(dev, RING_ENTRIES as usize, GFP_KERNEL)?;
        let cq = Coherent::<CqEntry>::zeroed_slice(dev, RING_ENTRIES as usize, GFP_KERNEL)?;
        let ctx_table = Coherent::<CtxDesc>::zeroed_slice(dev, params.contexts as usize, GFP_KERNEL)?;
        Ok(try_pin_init!(Self {
            bar,
            params,
            sq,
            cq,
            ctx_table,
            state <- new_mutex!(RingState {
                sq_tail: 0,
                cq_head: 0,
                next_seqno: 1,
                last_done: 0,
                last_outcome: Outcome::default(),
                bogus_completions: 0,
            }),
            done <- new_condvar!(),
        }))
    }

    /// Program the rings and enable the command processor (after a reset).
    pub(crate) fn start(&self, dev: &device::Device<Bound>) -> Result {
        let bar = self.bar.access(dev)?;
        let (sq, cq, ctx) = (self.sq.dma_handle(), self.cq.dma_handle(), self.ctx_table.dma_handle());
        bar.write32(sq as u32, SQ_BASE_LO);
        bar.write32((sq >> 32) as u32, SQ_BASE_HI);
        bar.write32(RING_ENTRIES, SQ_SIZE);
        bar.write32(cq as u32, CQ_BASE_LO);
        bar.write32((cq >> 32) as u32, CQ_BASE_HI);
        bar.write32(RING_ENTRIES, CQ_SIZE);
        bar.write32(ctx as u32, CTX_TABLE_LO);
        bar.write32((ctx >> 32) as u32, CTX_TABLE_HI);
        bar.write32(IRQ_ALL, IRQ_ACK);
        bar.write32(IRQ_ALL, IRQ_MASK);
        bar.write32(CONTROL_ENABLE, CONTROL);
        let status = bar.read32(STATUS);
        if status & STATUS_HALTED != 0 || status & STATUS_ENABLED == 0 {
            dev_err!(dev, "the NPU refused the ring setup (STATUS {:#x})\n", status);
            return Err(EIO);
        }
        Ok(())
    }

    /// Queue one job; returns its sequence number.
    pub(crate) fn submit(&self, dev: &device::Device<Bound>, context: u16, cmdbuf: u64, size: u32) -> Result<u64> {
        let bar = self.bar.access(dev)?;
        let mut st = self.state.lock();
        let in_flight = st.next_seqno - 1 - st.last_done;
        if in_flight >= u64::from(RING_ENTRIES) {
            return Err(EBUSY);
        }
        let seqno = st.next_seqno;
        let slot = (st.sq_tail % RING_ENTRIES) as usize;
        let entry = SqEntry { seqno, cmdbuf, size, context, ..Default::default() };
        dma_write!(self.sq, [try: slot], entry);
        st.next_seqno += 1;
        st.sq_tail = st.sq_tail.wrapping_add(1);
        // The doorbell write orders after the entry's (writel is a barrier
        // for coherent memory).
        bar.write32(st.sq_tail, DOORBELL);
        Ok(seqno)
    }

    /// Drain new completion records (from the IRQ thread).
    fn drain(&self, dev: &device::Device<Bound>) -> Result {
        let bar = self.bar.access(dev)?;
        let mut st = self.state.lock();
        let mut progressed = false;
        loop {
            let slot = (st.cq_head % RING_ENTRIES) as usize;
            // The device writes 1 in its first pass over the ring, 0 in
            // the second, and so on.
            let phase = u32::from((st.cq_head / RING_ENTRIES) % 2 == 0);
            let rec: CqEntry = dma_read!(self.cq, [try: slot]);
            if rec.flags & 1 != phase {
                break;
            }
            st.cq_head = st.cq_head.wrapping_add(1);
            progressed = true;
            let expected = rec.seqno > st.last_done && rec.seqno < st.next_seqno;
            if !expected || rec.status > STATUS_MAX {
                st.bogus_completions += 1;
                dev_warn!(dev, "ignoring a bogus completion record (seqno {}, status {:#x})\n", rec.seqno, rec.status);
                continue;
            }
            st.last_done = rec.seqno;
            st.last_outcome = Outcome { status: rec.status, fault_addr: rec.fault_addr, cycles: rec.cycles };
        }
        if progressed {
            bar.write32(st.cq_head, CQ_HEAD);
            drop(st);
            self.done.notify_all();
        }
        Ok(())
    }

    /// Wait until job `seqno` has completed; its outcome (when it was the
    /// last one completed), or ETIMEDOUT.
    pub(crate) fn wait(&self, seqno: u64, timeout_ms: u32) -> Result<Option<Outcome>> {
        let mut st = self.state.lock();
        let mut left = msecs_to_jiffies(timeout_ms);
        while st.last_done < seqno {
            match self.done.wait_interruptible_timeout(&mut st, left) {
                kernel::sync::CondVarTimeoutResult::Timeout => return Err(ETIMEDOUT),
                kernel::sync::CondVarTimeoutResult::Signal { .. } => return Err(ERESTARTSYS),
                kernel::sync::CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
            }
        }
        Ok((st.last_done == seqno).then_some(st.last_outcome))
    }
}

/// One MSI-X vector: acknowledges its causes, then drains completions in
/// the IRQ thread (the ring state is under a mutex).
#[pin_data]
pub(crate) struct IrqHandler {
    pub(crate) engine: Arc<Engine>,
    /// The IRQ_STATUS bits this vector carries.
    pub(crate) causes: u32,
}

impl irq::ThreadedHandler for IrqHandler {
    fn handle_threaded(&self, dev: &device::Device<Bound>) -> IrqReturn {
        let Ok(bar) = self.engine.bar.access(dev) else {
            return IrqReturn::None;
        };
        // Acknowledge first, then drain: a completion landing after the
        // drain raises a new message.
        bar.write32(self.causes, IRQ_ACK);
        match self.engine.drain(dev) {
            Ok(()) => IrqReturn::Handled,
            Err(_) => IrqReturn::None,
        }
    }
}
