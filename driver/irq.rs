// SPDX-License-Identifier: GPL-2.0-only

//! Interrupt handling: the two MSI-X vectors' threaded handlers (which run
//! the completion drain of inflight.rs) and ring-error reporting
//! (Documentation/driver/onpu.rst, "Rings, interrupts and the self-test").

use kernel::{
    device::{self, Bound},
    io::Io,
    irq::{self, IrqReturn},
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    time::{Delta, Instant},
};

use crate::coredump::Reason;
use crate::engine::Engine;
use crate::fence::Signalling;
use crate::hw::Bar0;
use crate::inflight::RingState;
use crate::job::Outcome;
use crate::regs::*;
use crate::reset::STATUS_ABORTED;

/// Ring-error messages logged per window, and the window's length: a
/// process writing the registers in a loop must not flood the log.
pub(crate) const RING_ERROR_LOG_BURST: u32 = 5;
pub(crate) const RING_ERROR_LOG_WINDOW_MS: i64 = 5000;

impl Engine {
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

/// One MSI-X vector: acknowledges its latched causes, then drains completions in
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
        // drain raises a new message. With the completion event index
        // JOB_DONE does not latch: the drain's look after publishing the
        // head takes the place of the acknowledge, and the job vector
        // writes no register at all.
        let ack = if self.engine.uses_cq_event() {
            self.causes & !IRQ_JOB_DONE
        } else {
            self.causes
        };
        if ack != 0 {
            bar.write32(ack, IRQ_ACK);
        }
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
