// SPDX-License-Identifier: GPL-2.0-only

//! The jobs in the ring: the in-flight and retired lists under the ring
//! lock (`state`), a job's entry into the ring (its hardware context, its
//! ring sequence number, the counters, the watchdog), the completion drain
//! that matches the ring layer's records to jobs, and a job's end (its
//! outcome, its fence, its place on the retired list)
//! (Documentation/driver/onpu.rst, "Job life cycle"). The ring layer
//! (ring.rs) writes the entries, rings the doorbell and reads the records
//! for it.
//!
//! Everything here runs on the signalling path: nothing allocates (the
//! lists were allocated at probe), takes a reservation lock or waits.

use kernel::{
    device::{self, Bound},
    prelude::*,
    sync::{
        atomic::{Relaxed, Release},
        barrier::mb,
        rcu, Arc,
    },
    time::{Delta, Instant, Monotonic},
};

use crate::coredump::{Reason, Snapshot};
use crate::engine::Engine;
use crate::hw::{self, Bar0};
use crate::irq::{RING_ERROR_LOG_BURST, RING_ERROR_LOG_WINDOW_MS};
use crate::job::{Job, Outcome};
use crate::regs::*;
use crate::reset::STATUS_ABORTED;
use crate::ring::{Ring, RingIndices, Rings, RING_ENTRIES};
use crate::slots::{Binding, Slots};
use crate::uapi;

/// Ended jobs and jobs in the ring together, at most (the retired list's
/// capacity, allocated at probe): a ring's worth of ended jobs may wait
/// for their release while the ring is full again.
pub(crate) const RETIRED_ENTRIES: usize = 2 * RING_ENTRIES as usize;
/// Highest fault code of ISA 1.0.
const STATUS_MAX: u32 = 11;

/// Why [`Engine::enter_ring`] gave a job back.
pub(crate) enum NotEntered {
    /// No room in the ring (or for the job's priority), or no hardware
    /// context free: it waits for a job to retire.
    NoRoom(Arc<Job>),
    /// Unbind stopped the engine, or the device is wedged: the device
    /// will not run it.
    Stopped(Arc<Job>),
}

/// The engine's ring lock: the ring indices and everything that follows
/// the jobs through the ring.
pub(crate) struct RingState {
    /// The ring layer's indices.
    pub(crate) ring: RingIndices,
    /// Jobs in the ring, oldest (the one running) first. Capacity
    /// RING_ENTRIES, allocated at probe.
    pub(crate) in_flight: KVec<Arc<Job>>,
    /// Jobs that ended and whose fence signalled, waiting for the release
    /// work to let go of them outside the signalling path. Capacity
    /// RETIRED_ENTRIES; `in_flight.len() + retired.len() <=
    /// RETIRED_ENTRIES`, so a job that ends always finds its place.
    pub(crate) retired: KVec<Arc<Job>>,
    /// Sequence number of the newest job written into the ring (the next
    /// one gets the next number: ring order).
    pub(crate) queued_seqno: u64,
    /// Sequence number of the newest job that ended: every job up to it
    /// has ended (jobs end in ring order).
    pub(crate) retired_seqno: u64,
    /// When the oldest job became the oldest: its run time so far.
    pub(crate) head_since: Instant<Monotonic>,
    /// Unbind stopped the device: no reset may restart it.
    pub(crate) stopped: bool,
    /// A reset failed: the device is given up until it is bound again.
    /// Nothing enters the ring, nothing resets the device.
    pub(crate) wedged: bool,
    /// Ring-error log rate limit: when the window began, messages in it.
    pub(crate) ring_error_window: Instant<Monotonic>,
    pub(crate) ring_error_logged: u32,
    /// Which software context each hardware context serves (slots.rs).
    pub(crate) slots: Slots,
    /// A failure's snapshot waiting for the coredump work (held inline:
    /// the signalling path fills it without allocating).
    pub(crate) dump: Option<Snapshot>,
}

impl RingState {
    /// Room for one more job in the ring (and, once it ends, in the
    /// retired list). Jobs waiting for their release do not take ring
    /// entries: the IRQ thread refills what it drained before the
    /// submitters and the release work let go of the ended jobs.
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight.len() < RING_ENTRIES as usize
            && self.in_flight.len() + self.retired.len() < RETIRED_ENTRIES
    }

    /// Whether ring-error messages are being suppressed right now.
    pub(crate) fn ring_errors_muted(&self) -> bool {
        self.ring_error_logged >= RING_ERROR_LOG_BURST
            && self.ring_error_window.elapsed() <= Delta::from_millis(RING_ERROR_LOG_WINDOW_MS)
    }
}

impl Engine {
    pub(crate) fn uses_shadow(&self) -> bool {
        self.params.caps & CAP_SHADOW_DOORBELL != 0
    }

    /// Whether completions interrupt by event index (CONTROL.CQ_EVENT,
    /// set at start): only with the shadow page, where publishing the
    /// head costs no register write.
    pub(crate) fn uses_cq_event(&self) -> bool {
        self.uses_shadow() && self.params.caps & CAP_CQ_EVENT != 0
    }

    /// The ring layer over the device's registers and ring memory.
    pub(crate) fn ring<'a>(&self, bar: &'a Bar0, rings: &'a Rings) -> Ring<'a> {
        Ring::new(bar, rings, self.uses_shadow(), self.uses_cq_event())
    }

    /// The sequence number of the newest job the device may have started,
    /// or may start without seeing page-table changes made before this
    /// call: the newest written into the ring.
    pub(crate) fn queued_seqno(&self) -> u64 {
        self.state.lock().queued_seqno
    }

    /// The sequence number of the job the device may be running now (the
    /// oldest in flight without a completion record in the ring), or 0 when
    /// none is: only that job can hold translations cached before a
    /// page-table change made before this call; later ones start after it
    /// and walk the changed tables.
    pub(crate) fn running_seqno(&self) -> Result<u64> {
        let st = self.state.lock();
        // Revoked at unbind, when the device is stopped (no job runs).
        let rcu = rcu::read_lock();
        let (Some(bar), Some(rings)) = (
            self.bar.try_access_with_guard(&rcu),
            self.rings.try_access_with_guard(&rcu),
        ) else {
            return Err(ENODEV);
        };
        let ring = self.ring(bar, rings);
        // The page-table writes before the reads of the records.
        mb();
        for (nth, job) in (0u32..).zip(st.in_flight.iter()) {
            if !ring.record_written(&st.ring, nth) {
                return Ok(job.ring_seqno());
            }
        }
        Ok(0)
    }

    /// Every job up to this sequence number has ended.
    pub(crate) fn retired_seqno(&self) -> u64 {
        self.state.lock().retired_seqno
    }

    /// Run a kernel job (the probe self-test): into the ring at once.
    pub(crate) fn run_kernel_job(self: &Arc<Self>, job: &Arc<Job>) -> Result {
        match self.enter_ring(job.clone(), RING_ENTRIES as usize) {
            Ok(()) => Ok(()),
            Err(NotEntered::NoRoom(_)) => Err(EBUSY),
            Err(NotEntered::Stopped(_)) => Err(ENODEV),
        }
    }

    /// Write `job` into the ring as the next job and tell the device, unless
    /// `depth` jobs are in it already (scheduler pass: allocates nothing).
    ///
    /// Takes the caller's reference: the ring's list keeps the job, and the
    /// reference given is let go of under the ring lock, where the list's
    /// cannot be. So a caller in a fence signalling section (a scheduler
    /// pass) never drops the last reference to a job, whose release frees
    /// its objects and address space. Refused, the job comes back.
    pub(crate) fn enter_ring(
        self: &Arc<Self>,
        job: Arc<Job>,
        depth: usize,
    ) -> core::result::Result<(), NotEntered> {
        let mut st = self.state.lock();
        match self.write_job(&mut st, &job, depth) {
            Ok(true) => {
                drop(job);
                drop(st);
                Ok(())
            }
            Ok(false) => Err(NotEntered::NoRoom(job)),
            Err(_) => Err(NotEntered::Stopped(job)),
        }
    }

    /// [`Engine::enter_ring`] under the ring lock: Ok(false) when there is
    /// no room, Err when the device will not run it.
    fn write_job(
        self: &Arc<Self>,
        st: &mut RingState,
        job: &Arc<Job>,
        depth: usize,
    ) -> Result<bool> {
        if st.stopped {
            return Err(ENODEV);
        }
        // A wedged device takes no job: the scheduler cancels it.
        if st.wedged {
            return Err(EIO);
        }
        if !st.has_room() || st.in_flight.len() >= depth {
            return Ok(false);
        }
        // The registers and the rings are revoked when the device
        // unbinds (devres, after unbind stopped the engine under this
        // lock: `stopped` above). Nothing from here on sleeps, so an
        // RCU read-side section is all the access needs: no bound-device
        // proof, no section of the DRM device.
        let rcu = rcu::read_lock();
        let (Some(bar), Some(rings)) = (
            self.bar.try_access_with_guard(&rcu),
            self.rings.try_access_with_guard(&rcu),
        ) else {
            return Err(ENODEV);
        };
        let ring = self.ring(bar, rings);
        if let Some(vm) = job.vm() {
            // A hardware context for its address space (slots.rs);
            // with every slot busy, the job waits in the scheduler
            // until a job retires.
            let Ok(Binding { slot, new }) = st.slots.bind(vm.id()) else {
                return Ok(false);
            };
            // The device reads the descriptor when the job starts: it
            // must be in place before the entry is published.
            if new {
                if let Err(e) = ring.set_context(slot, vm.root()) {
                    // Unbound again, so that the next bind writes it.
                    st.slots.release(vm.id());
                    return Err(e);
                }
            }
            job.set_context(slot);
        }
        // has_room(): within the capacity allocated at probe.
        if st.in_flight.push_within_capacity(job.clone()).is_err() {
            if job.vm().is_some() {
                st.slots.job_left(job.context());
            }
            return Err(EBUSY);
        }
        let seqno = st.queued_seqno + 1;
        job.set_ring_seqno(seqno);
        let slot = st.ring.next_slot();
        let old = st.ring.sq_tail;
        if let Err(e) = ring.write(&mut st.ring, job.sq_entry(slot, ring.profile_addr(slot))) {
            st.in_flight.pop();
            if job.vm().is_some() {
                st.slots.job_left(job.context());
            }
            return Err(e);
        }
        if st.in_flight.len() == 1 {
            st.head_since = Instant::now();
        }
        st.queued_seqno = seqno;
        if ring.publish(&st.ring, old) {
            self.counters.doorbells.add(1, Relaxed);
        }
        self.counters.submitted.add(1, Relaxed);
        // Arm the watchdog unless it is pending already (the work
        // item's own pending bit decides; a pass that is running
        // re-arms too). It times the job from now: it is in the ring.
        // Under the ring lock, not stopped: unbind, which stops the
        // engine under this lock, cancels the watchdog afterwards.
        self.arm_watchdog();
        Ok(true)
    }

    /// End a job that never reached the ring (SUBMIT failed after its
    /// fence was published, or the device went away) with `outcome`, as
    /// though it had passed through the ring: it takes a place in the
    /// retired list, so false when the ring has no room.
    ///
    /// Takes the caller's reference into the retired list (as
    /// [`Engine::enter_ring`] does); gives the job back when there is no
    /// room.
    pub(crate) fn retire_unqueued(
        self: &Arc<Self>,
        job: Arc<Job>,
        outcome: Outcome,
    ) -> core::result::Result<(), Arc<Job>> {
        let mut st = self.state.lock();
        if !st.has_room() {
            return Err(job);
        }
        self.retire_listed(&mut st, job, outcome, Delta::ZERO);
        self.schedule_release(&st);
        Ok(())
    }

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
        let ring = self.ring(bar, rings);
        let mut reset = false;
        let retired = st.retired.len();
        // At most one ring's worth in all, whatever the device writes; a
        // new pass only for a record the look after publishing the head
        // found (the completion event index: the device sent no message
        // for it).
        let mut budget = RING_ENTRIES;
        loop {
            let mut found = false;
            while budget > 0 {
                let Some(rec) = ring.next_record(&mut st.ring) else {
                    break;
                };
                budget -= 1;
                found = true;
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
                    outcome.profile = ring.profile(job.ring_slot()).ok().map(|r| r.words);
                }
                self.retire_head(st, outcome);
            }
            if reset || !found || st.stopped || !ring.release_records(&st.ring) || budget == 0 {
                break;
            }
        }
        if reset {
            if let Err(e) = self.restart(dev, st) {
                self.wedge(dev, st);
                self.schedule_release(st);
                return Err(e);
            }
        }
        if st.retired.len() != retired {
            self.schedule_release(st);
            // Failed jobs waiting for these to end may go now.
            self.kick_scheduler_if_blocked();
        }
        Ok(())
    }

    /// End the oldest job with `outcome` and signal its fence. The job
    /// moves to the retired list (never dropped here: its last reference
    /// may free buffer objects, which takes their reservation locks, or its
    /// file's address space); `release` lets go of it later.
    pub(crate) fn retire_head(&self, st: &mut RingState, outcome: Outcome) {
        if st.in_flight.is_empty() {
            return;
        }
        let Ok(job) = st.in_flight.remove(0) else {
            return;
        };
        let busy = st.head_since.elapsed();
        st.head_since = Instant::now();
        st.retired_seqno = job.ring_seqno();
        if job.vm().is_some() {
            // Its slot may turn idle (evictable): a job waiting in the
            // scheduler for a slot moves in on the next pass.
            st.slots.job_left(job.context());
        }
        self.counters.completed.add(1, Relaxed);
        if outcome.status != uapi::DRM_ONPU_JOB_OK {
            self.counters.failed.add(1, Relaxed);
        }
        self.retire_listed(st, job, outcome, busy);
    }

    /// Put an ended job on the retired list, then record its outcome and
    /// signal its fence: listed (and counted) first, so that a waiter woken
    /// by the fence finds it there ([`Engine::release_retired`] looks at
    /// the count without the lock).
    pub(crate) fn retire_listed(
        &self,
        st: &mut RingState,
        job: Arc<Job>,
        outcome: Outcome,
        busy: Delta,
    ) {
        // Cannot fail: in_flight + retired never exceed the capacity of
        // either (has_room()). Were it to, leaking the job beats freeing it
        // here.
        if let Err(e) = st.retired.push_within_capacity(job) {
            e.0.retire(outcome, busy);
            core::mem::forget(e);
            return;
        }
        self.retired_jobs.store(st.retired.len() as u32, Release);
        if let Some(job) = st.retired.last() {
            job.retire(outcome, busy);
        }
    }

    /// End every queued job as cancelled (device gone or reset failed).
    pub(crate) fn cancel_all(&self, st: &mut RingState) {
        while !st.in_flight.is_empty() {
            self.retire_head(st, Outcome::canceled());
        }
    }
}
