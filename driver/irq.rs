// SPDX-License-Identifier: GPL-2.0-only

//! Interrupt handling: the two MSI-X vectors' threaded handlers, the
//! completion drain (IRQ thread and watchdog) and ring-error reporting
//! (Documentation/driver/onpu.rst, "Rings, interrupts and the self-test").

use kernel::{
    device::{self, Bound},
    dma_read, dma_write,
    io::Io,
    irq::{self, IrqReturn},
    prelude::*,
    sync::{atomic::Relaxed, barrier::dma_rmb, Arc},
    time::{Delta, Instant},
};

use crate::coredump::Reason;
use crate::engine::Engine;
use crate::fence::Signalling;
use crate::hw::{self, Bar0};
use crate::job::Outcome;
use crate::regs::*;
use crate::reset::STATUS_ABORTED;
use crate::ring::{CqEntry, ProfileRecord, RingState, Rings, RING_ENTRIES};
use crate::uapi;

/// Highest fault code of ISA 1.0.
const STATUS_MAX: u32 = 11;
/// Ring-error messages logged per window, and the window's length: a
/// process writing the registers in a loop must not flood the log.
pub(crate) const RING_ERROR_LOG_BURST: u32 = 5;
pub(crate) const RING_ERROR_LOG_WINDOW_MS: i64 = 5000;

impl Engine {
    /// Drain new completion records (IRQ thread, watchdog), at most one
    /// ring's worth: a device that keeps rewriting phase bits cannot keep
    /// the caller here. A record out of ring order is a device error: the
    /// device is reset before any job is failed.
    pub(crate) fn drain(self: &Arc<Self>, dev: &device::Device<Bound>) -> Result {
        let bar = self.bar.access(dev)?;
        let rings = self.rings.access(dev)?;
        let mut st = self.state.lock();
        // Unbind stopped the device and took the records written before
        // the stop itself ([`Engine::shut_down`]): whatever the ring holds
        // now names no job in flight (a bogus record is a device error;
        // this one is not).
        if st.stopped {
            return Ok(());
        }
        self.drain_locked(dev, bar, rings, &mut st)
    }

    /// [`Engine::drain`] with the ring lock held. Once the engine is
    /// stopped (unbind), only reads: no reset, no register write.
    pub(crate) fn drain_locked(
        self: &Arc<Self>,
        dev: &device::Device<Bound>,
        bar: &Bar0,
        rings: &Rings,
        st: &mut RingState,
    ) -> Result {
        let mut progressed = false;
        let mut reset = false;
        let retired = st.retired.len();
        for _ in 0..RING_ENTRIES {
            let slot = (st.cq_head % RING_ENTRIES) as usize;
            // The device writes 1 in its first pass over the ring, 0 in
            // the second, and so on.
            let phase = u32::from((st.cq_head / RING_ENTRIES) % 2 == 0);
            let flags: u32 = dma_read!(rings.cq, [try: slot].flags);
            if flags & 1 != phase {
                break;
            }
            // The device writes the record before its phase word: read
            // the rest only after the phase.
            dma_rmb();
            let rec: CqEntry = dma_read!(rings.cq, [try: slot]);
            st.cq_head = st.cq_head.wrapping_add(1);
            progressed = true;
            let pos = st
                .in_flight
                .iter()
                .position(|j| (j.ring_seqno(), j.context()) == (rec.seqno, rec.context));
            let Some(pos) = pos.filter(|_| rec.status <= STATUS_MAX) else {
                self.counters.bogus_completions.add(1, Relaxed);
                dev_warn!(
                    dev,
                    "ignoring a bogus completion record (seqno {}, context {}, status {:#x})\n",
                    rec.seqno,
                    rec.context,
                    rec.status
                );
                continue;
            };
            if pos > 0 && !reset {
                // The device ends jobs in ring order: it skipped (or lost
                // the records of) the jobs before this one, which it may
                // still be running. Stop it before believing anything.
                dev_warn!(
                    dev,
                    "completion record of job {} out of order: resetting the NPU\n",
                    rec.seqno
                );
                if st.stopped {
                    return Err(ENODEV);
                }
                if st.wedged {
                    return Err(EIO);
                }
                self.counters.resets.add(1, Relaxed);
                reset = true;
                // Before the reset clears the fault registers.
                self.capture_dump(
                    st,
                    bar,
                    rings,
                    Reason::OutOfOrder,
                    Some(&rec),
                    STATUS_ABORTED,
                    0,
                );
                if let Err(e) = hw::reset(dev, bar) {
                    self.wedge(dev, st);
                    self.schedule_release(st);
                    return Err(e);
                }
                // The records already written stay valid: go on reading
                // them, the device is stopped.
            }
            for _ in 0..pos {
                if let Some(lost) = st.in_flight.first() {
                    dev_warn!(
                        dev,
                        "job {} has no completion record: failing it\n",
                        lost.ring_seqno()
                    );
                }
                self.retire_head(st, Outcome::aborted(STATUS_ABORTED));
            }
            if rec.status != uapi::DRM_ONPU_JOB_OK && !reset {
                self.capture_dump(
                    st,
                    bar,
                    rings,
                    Reason::JobFault,
                    Some(&rec),
                    rec.status,
                    rec.fault_addr,
                );
            }
            let mut outcome = Outcome::from_device(rec.status, rec.fault_addr, rec.cycles);
            if let Some(job) = st.in_flight.first().filter(|j| j.profiled) {
                // Written before the completion record (read after the
                // phase, above); copied, not allocated.
                let record: ProfileRecord = dma_read!(rings.profiles, [try: job.ring_slot()]);
                outcome.profile = Some(record.words);
            }
            self.retire_head(st, outcome);
        }
        if reset {
            if let Err(e) = self.restart(dev, st) {
                self.wedge(dev, st);
                self.schedule_release(st);
                return Err(e);
            }
        } else if progressed && !st.stopped {
            if self.uses_shadow() {
                // The CP reads the head from the page when it looks for
                // room; it never waits for room (at most RING_ENTRIES jobs
                // are in flight), so no register write is needed.
                dma_write!(rings.shadow, [try: SHADOW_CQ_HEAD], st.cq_head);
            } else {
                bar.write32(st.cq_head, CQ_HEAD);
            }
        }
        if st.retired.len() != retired {
            self.schedule_release(st);
            // Failed jobs waiting for these to end may go now.
            self.kick_scheduler_if_blocked();
        }
        Ok(())
    }

    /// RING_ERROR was raised: the device refused a ring-pointer write this
    /// driver never makes (its indices stay within the rings), so another
    /// agent writes the registers (a process through the BAR) and may have
    /// moved them to values the device accepted. Read what was refused and
    /// clear it; the caller resets the device, which puts every pointer back
    /// where the driver's state says. Signalling path: no allocation.
    pub(crate) fn take_ring_error(&self, bar: &Bar0) -> (u32, u32) {
        let bits = bar.read32(RING_ERROR);
        let value = bar.read32(RING_ERROR_VALUE);
        // Write 1s to clear, the defined bits only (the reset clears it
        // too).
        bar.write32(RING_ERROR_ALL, RING_ERROR);
        self.counters.ring_errors.add(1, Relaxed);
        self.counters
            .ring_error_last
            .store((u64::from(bits) << 32) | u64::from(value), Relaxed);
        (bits, value)
    }

    /// Log a ring error, at most RING_ERROR_LOG_BURST per window (under the
    /// ring lock, which also guards the limiter).
    pub(crate) fn log_ring_error(
        &self,
        dev: &device::Device<Bound>,
        st: &mut RingState,
        bits: u32,
        value: u32,
    ) {
        if st.ring_error_window.elapsed() > Delta::from_millis(RING_ERROR_LOG_WINDOW_MS) {
            st.ring_error_window = Instant::now();
            st.ring_error_logged = 0;
        }
        if st.ring_error_logged >= RING_ERROR_LOG_BURST {
            return;
        }
        st.ring_error_logged += 1;
        let which = match bits {
            0 => "none recorded (cleared by someone else?)",
            b if b & !RING_ERROR_ALL != 0 => "undefined bits: the device is broken or gone",
            b if b & RING_ERROR_DOORBELL != 0 => "DOORBELL",
            b if b & RING_ERROR_CQ_HEAD != 0 => "CQ_HEAD",
            _ => "a shadow-page index",
        };
        dev_warn!(
            dev,
            "refused ring-pointer write (RING_ERROR {:#x}: {}, value {:#x}; {} so far): someone else writes the NPU's registers, resetting it\n",
            bits,
            which,
            value,
            self.counters.ring_errors.load(Relaxed)
        );
        if st.ring_error_logged == RING_ERROR_LOG_BURST {
            dev_warn!(
                dev,
                "further ring errors and the resets they cause are not logged for {} ms\n",
                RING_ERROR_LOG_WINDOW_MS
            );
        }
    }
}

/// One MSI-X vector: acknowledges its causes, then drains completions in
/// the IRQ thread (the ring state is under a mutex). The error vector also
/// recovers a halted device.
#[pin_data]
pub(crate) struct IrqHandler {
    pub(crate) engine: Arc<Engine>,
    /// The IRQ_STATUS bits this vector carries.
    pub(crate) causes: u32,
}

impl irq::ThreadedHandler for IrqHandler {
    fn handle_threaded(&self, dev: &device::Device<Bound>) -> IrqReturn {
        let _signalling = Signalling::begin();
        let Ok(bar) = self.engine.bar.access(dev) else {
            return IrqReturn::None;
        };
        // Register reads are synchronous round trips to the device: only the
        // error vector, where a halt must be told apart, pays for one. The
        // job vector's only cause is JOB_DONE.
        let pending = if self.causes & IRQ_DEVICE_ERROR != 0 {
            bar.read32(IRQ_STATUS) & self.causes
        } else {
            0
        };
        // Acknowledge first, then drain: a completion landing after the
        // drain raises a new message.
        bar.write32(self.causes, IRQ_ACK);
        if self.engine.drain(dev).is_err() {
            return IrqReturn::None;
        }
        // Jobs ended: move the ones waiting for ring room in now, without
        // a trip through the scheduler work (this thread is in a
        // signalling section already; the pass allocates nothing).
        if self.engine.sched_blocked.load(Relaxed) && self.engine.sched_blocked.xchg(false, Relaxed)
        {
            self.engine.run_scheduler();
        }
        let halted = pending & IRQ_DEVICE_ERROR != 0;
        let ring_error = (pending & IRQ_RING_ERROR != 0).then(|| self.engine.take_ring_error(bar));
        if halted || ring_error.is_some() {
            let mut st = self.engine.state.lock();
            // After unbind stopped the device, a halt is expected.
            if !st.stopped {
                if halted {
                    dev_err!(
                        dev,
                        "the NPU halted (STATUS {:#x}): resetting it\n",
                        bar.read32(STATUS)
                    );
                    if let Ok(rings) = self.engine.rings.access(dev) {
                        self.engine.capture_dump(
                            &mut st,
                            bar,
                            rings,
                            Reason::DeviceHalted,
                            None,
                            STATUS_ABORTED,
                            0,
                        );
                    }
                }
                if let Some((bits, value)) = ring_error {
                    self.engine.log_ring_error(dev, &mut st, bits, value);
                }
                let _ = self
                    .engine
                    .recover(dev, &mut st, Some(Outcome::aborted(STATUS_ABORTED)));
            }
            self.engine.schedule_release(&st);
        }
        IrqReturn::Handled
    }
}
