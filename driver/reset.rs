// SPDX-License-Identifier: GPL-2.0-only

//! Reset and recovery: the device reset with the queued jobs resubmitted,
//! wedging when a reset fails, the watchdog that times out the running
//! job, and the failure snapshots for device coredumps
//! (Documentation/driver/onpu.rst, "Timeouts, faults and reset").

use kernel::devcoredump;
use kernel::{
    device::{self, Bound},
    io::Io,
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    time::{msecs_to_jiffies, Delta, Instant},
    workqueue,
};

use crate::coredump::{Reason, Snapshot};
use crate::engine::Engine;
use crate::fence::Signalling;
use crate::hw::{self, Bar0};
use crate::inflight::RingState;
use crate::job::Outcome;
use crate::regs::*;
use crate::ring::{CqEntry, Rings};
use crate::uapi;

/// Status the driver gives a job it aborted because the device halted.
pub(crate) const STATUS_ABORTED: u32 = 11;
/// How often the watchdog looks at the oldest job while jobs are queued.
const WATCHDOG_PERIOD_MS: u32 = 50;

impl Engine {
    /// Reset the device and bring it back: the oldest job, when `guilty`
    /// says so, ends with `guilty`'s outcome; the jobs queued behind it go
    /// back into the ring in their order. Never after unbind stopped the
    /// device.
    pub(crate) fn recover(
        self: &Arc<Self>,
        dev: &device::Device<Bound>,
        st: &mut RingState,
        guilty: Option<Outcome>,
    ) -> Result {
        if st.stopped {
            return Err(ENODEV);
        }
        if st.wedged {
            return Err(EIO);
        }
        let bar = self.bar.access(dev)?;
        self.counters.resets.add(1, Relaxed);
        let reset = hw::reset(dev, bar);
        // The device is stopped (or dead): the outcome is final.
        if let Some(outcome) = guilty {
            self.retire_head(st, outcome);
        }
        // No RESET_DONE in time, or the device refused its rings after the
        // reset (HALTED): nothing queued will ever run.
        if let Err(e) = reset.and_then(|()| self.restart(dev, st)) {
            self.wedge(dev, st);
            return Err(e);
        }
        Ok(())
    }

    /// A reset failed: give the device up until it is bound again. Every
    /// queued job ends CANCELED (its fence signals with -ECANCELED), SUBMIT
    /// returns EIO from now on, and the wedged uevent asks userspace to
    /// rebind the driver. Signalling path (ring lock held): the uevent,
    /// which allocates, is sent by a work item.
    pub(crate) fn wedge(self: &Arc<Self>, dev: &device::Device<Bound>, st: &mut RingState) {
        if let Ok(bar) = self.bar.access(dev) {
            // Whatever the device does from now on, it does not interrupt.
            bar.write32(0, IRQ_MASK);
            bar.write32(0, CONTROL);
        }
        st.wedged = true;
        self.wedged.store(true, Relaxed);
        self.cancel_all(st);
        dev_err!(dev, "the NPU did not come back from a reset: wedged (unbind and bind the driver to recover)\n");
        let _ = workqueue::system_long().enqueue_delayed::<Arc<Self>, 2>(self.clone(), 0);
        // The jobs waiting in the scheduler end cancelled too (enter_ring
        // refuses them from now on).
        self.kick_scheduler();
    }

    /// After a reset: clear the completion ring, write the queued jobs back
    /// into the submission ring from index 0, re-enable the device.
    pub(crate) fn restart(&self, dev: &device::Device<Bound>, st: &mut RingState) -> Result {
        let bar = self.bar.access(dev)?;
        let rings = self.rings.access(dev)?;
        let ring = self.ring(bar, rings);
        let st = &mut *st;
        ring.rewind(&mut st.ring)?;
        for job in st.in_flight.iter() {
            let slot = st.ring.next_slot();
            // Its profile record moves with it (a slot's record is only
            // ever the job's in that slot).
            ring.write(&mut st.ring, job.sq_entry(slot, ring.profile_addr(slot)))?;
        }
        st.head_since = Instant::now();
        self.start(dev, st.ring.sq_tail)?;
        if st.ring.sq_tail != 0 {
            self.counters.doorbells.add(1, Relaxed);
            ring.doorbell(&st.ring);
        }
        // Quiet while ring errors are (a process writing the registers in a
        // loop would otherwise flood the log through this line).
        if !st.ring_errors_muted() {
            dev_info!(
                dev,
                "NPU reset, {} queued job(s) resubmitted\n",
                st.in_flight.len()
            );
        }
        Ok(())
    }

    pub(crate) fn arm_watchdog(self: &Arc<Self>) {
        let delay = msecs_to_jiffies(WATCHDOG_PERIOD_MS);
        // Err: pending already, which is all we want.
        let _ = workqueue::system_long().enqueue_delayed::<Arc<Self>, 0>(self.clone(), delay);
    }

    /// One watchdog pass: pick up completions whose interrupt got lost,
    /// reset the device when the oldest job overran its timeout, and re-arm
    /// while jobs are queued (in a section, so never after unbind; nor
    /// before probe registered the device: the self-test times its job).
    pub(crate) fn watchdog_pass(self: &Arc<Self>) -> Result {
        self.with_bound(|dev| {
            let _signalling = Signalling::begin();
            let bar = self.bar.access(dev)?;
            // A lost message leaves JOB_DONE pending, which would suppress
            // every later one: acknowledge before draining. (With the
            // completion event index nothing latches; the drain publishes
            // the head, after which the next record sends again.)
            if !self.uses_cq_event() {
                bar.write32(IRQ_JOB_DONE, IRQ_ACK);
            }
            self.drain(dev)?;
            let mut st = self.state.lock();
            let Some(head) = st.in_flight.first() else {
                return Ok(());
            };
            let limit = Delta::from_millis(i64::from(head.timeout_ms));
            if st.head_since.elapsed() > limit {
                dev_warn!(
                    dev,
                    "job {} ran past its {} ms timeout: resetting the NPU\n",
                    head.ring_seqno(),
                    head.timeout_ms
                );
                if let Ok(rings) = self.rings.access(dev) {
                    self.capture_dump(
                        &mut st,
                        bar,
                        rings,
                        Reason::Timeout,
                        None,
                        uapi::DRM_ONPU_JOB_TIMEDOUT,
                        0,
                    );
                }
                let _ = self.recover(dev, &mut st, Some(Outcome::timed_out()));
            }
            let busy = !st.in_flight.is_empty();
            self.schedule_release(&st);
            drop(st);
            if busy {
                self.arm_watchdog();
            }
            Ok(())
        })
    }

    /// A job failed or the device did (Documentation/driver/onpu.rst,
    /// "Device coredumps"): unless a dump is on its way already, snapshot
    /// the registers and the oldest job in the ring, which ends with
    /// `status` at `fault_addr` (`record` is its completion record), and
    /// let the coredump work make the dump. Signalling path, ring lock
    /// held, before any reset: allocates nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn capture_dump(
        self: &Arc<Self>,
        st: &mut RingState,
        bar: &Bar0,
        rings: &Rings,
        reason: Reason,
        record: Option<&CqEntry>,
        status: u32,
        fault_addr: u64,
    ) {
        // (A snapshot is never replaced: dropping one may free an object.)
        if st.stopped || st.dump.is_some() || self.dump_pending.load(Relaxed) {
            return;
        }
        let head = st.in_flight.first();
        // The entry as the device read it, from the ring.
        let ring_entry = head.and_then(|job| self.ring(bar, rings).entry(job.ring_slot()).ok());
        let snapshot = Snapshot::capture(
            reason,
            bar,
            &self.params,
            head.map(|j| &**j),
            ring_entry,
            record.copied(),
            status,
            fault_addr,
        );
        st.dump = Some(snapshot);
        self.dump_pending.store(true, Relaxed);
        // Err: queued already (it then finds this snapshot).
        let _ = workqueue::system_long().enqueue_delayed::<Arc<Self>, 5>(self.clone(), 0);
    }

    /// The coredump work: format the pending snapshot (reading the faulting
    /// instruction from its command buffer) and hand it to the devcoredump
    /// core. Process context, outside every signalling section.
    pub(crate) fn write_dump(self: &Arc<Self>) {
        let snapshot = self.state.lock().dump.take();
        if let Some(snapshot) = snapshot {
            let made = self.with_bound(|dev| {
                let text = snapshot.to_text()?;
                devcoredump::dev_coredumpv(dev, text, GFP_KERNEL);
                Ok(())
            });
            // (ENODEV: the device is being unbound, which drops the dump.)
            match made {
                Err(e) if e != ENODEV => pr_warn!("no coredump of the failure: {:?}\n", e),
                _ => {}
            }
            drop(snapshot);
        }
        self.dump_pending.store(false, Relaxed);
    }

    /// Debugfs: reset the device now. The job that was running is aborted
    /// (ABORTED, -EIO): it may have run partly, so it is not run again;
    /// the jobs behind it are resubmitted.
    pub(crate) fn force_reset(self: &Arc<Self>) -> Result {
        self.with_bound(|dev| self.reset_bound(dev))
    }

    /// [`Engine::force_reset`] with the bound device at hand (the probe's
    /// self-test, before the DRM device is registered).
    pub(crate) fn reset_bound(self: &Arc<Self>, dev: &device::Device<Bound>) -> Result {
        let _signalling = Signalling::begin();
        // Jobs that ended already keep their own outcome.
        self.drain(dev)?;
        let mut st = self.state.lock();
        let r = self.recover(dev, &mut st, Some(Outcome::aborted(STATUS_ABORTED)));
        self.schedule_release(&st);
        r
    }
}
