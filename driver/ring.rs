// SPDX-License-Identifier: GPL-2.0-only

//! The ring layer: the submission and completion rings, the context table
//! and the profile records in device memory, their formats, and the
//! in-flight and retired job lists under the ring lock (`state`): how a
//! job enters the ring and how it leaves it (Documentation/driver/onpu.rst,
//! "Job life cycle").

use kernel::{
    dma::Coherent,
    dma_read, dma_write,
    io::Io,
    prelude::*,
    sync::{
        atomic::{Relaxed, Release},
        barrier::{dma_wmb, mb},
        rcu, Arc,
    },
    time::{Delta, Instant, Monotonic},
    transmute::{AsBytes, FromBytes},
};

use crate::coredump::Snapshot;
use crate::engine::Engine;
use crate::irq::{RING_ERROR_LOG_BURST, RING_ERROR_LOG_WINDOW_MS};
use crate::job::{Job, Outcome};
use crate::regs::*;
use crate::slots::{Binding, Slots, KERNEL_SLOT};
use crate::uapi;

/// Entries of each ring.
pub(crate) const RING_ENTRIES: u32 = 256;
/// Ended jobs and jobs in the ring together, at most (the retired list's
/// capacity, allocated at probe): a ring's worth of ended jobs may wait
/// for their release while the ring is full again.
pub(crate) const RETIRED_ENTRIES: usize = 2 * RING_ENTRIES as usize;
/// The context the kernel uses for its own jobs (the probe self-test).
pub(crate) const KERNEL_CONTEXT: u16 = KERNEL_SLOT;

/// What [`Engine::enter_ring`] did.
pub(crate) enum Entered {
    Yes,
    NoRoom,
    Stopped,
}

/// A submission-ring entry.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct SqEntry {
    pub(crate) seqno: u64,
    pub(crate) cmdbuf: u64,
    pub(crate) size: u32,
    pub(crate) context: u16,
    pub(crate) flags: u16,
    /// Bus address of the profile record (with SQ_FLAG_PROFILE).
    pub(crate) profile: u64,
    pub(crate) reserved: [u64; 4],
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

/// A profile record ("Job profile records"): the words of
/// &drm_onpu_job_profile, in its order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ProfileRecord {
    pub(crate) words: [u64; 8],
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
unsafe impl FromBytes for ProfileRecord {}
// SAFETY: as for SqEntry.
unsafe impl AsBytes for ProfileRecord {}
// SAFETY: as for SqEntry.
unsafe impl FromBytes for CtxDesc {}
// SAFETY: as for SqEntry.
unsafe impl AsBytes for CtxDesc {}

const _: () = {
    assert!(core::mem::size_of::<SqEntry>() == 64);
    assert!(core::mem::size_of::<CqEntry>() == 32);
    assert!(core::mem::size_of::<CtxDesc>() == 16);
    assert!(core::mem::size_of::<ProfileRecord>() == 64);
};

pub(crate) struct RingState {
    pub(crate) sq_tail: u32,
    pub(crate) cq_head: u32,
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

/// The device-visible memory of the engine: freed when the device unbinds
/// (through devres), even while open files keep the engine alive.
pub(crate) struct Rings {
    pub(crate) sq: Coherent<[SqEntry]>,
    pub(crate) cq: Coherent<[CqEntry]>,
    pub(crate) ctx_table: Coherent<[CtxDesc]>,
    /// The shadow doorbell page (used when the device has the capability).
    pub(crate) shadow: Coherent<[u32]>,
    /// One profile record per submission-ring slot: the job in slot `i`
    /// has its record at `profiles[i]` (64-byte aligned: the array starts
    /// on a page). Read at completion, copied into the job's outcome.
    pub(crate) profiles: Coherent<[ProfileRecord]>,
}

impl Rings {
    /// Bus address of the profile record of submission-ring slot `slot`.
    pub(crate) fn profile_addr(&self, slot: usize) -> u64 {
        self.profiles.dma_handle() + (slot * core::mem::size_of::<ProfileRecord>()) as u64
    }
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
        let rings = self.rings.try_access_with_guard(&rcu).ok_or(ENODEV)?;
        // The page-table writes before the reads of the records.
        mb();
        let mut head = st.cq_head;
        for job in st.in_flight.iter() {
            let slot = (head % RING_ENTRIES) as usize;
            let phase = u32::from((head / RING_ENTRIES) % 2 == 0);
            let flags: u32 = dma_read!(rings.cq, [try: slot].flags);
            if flags & 1 != phase {
                return Ok(job.ring_seqno());
            }
            head = head.wrapping_add(1);
        }
        Ok(0)
    }

    /// Every job up to this sequence number has ended.
    pub(crate) fn retired_seqno(&self) -> u64 {
        self.state.lock().retired_seqno
    }

    /// Run a kernel job (the probe self-test): into the ring at once.
    pub(crate) fn run_kernel_job(self: &Arc<Self>, job: &Arc<Job>) -> Result {
        match self.enter_ring(job, RING_ENTRIES as usize) {
            Entered::Yes => Ok(()),
            Entered::NoRoom => Err(EBUSY),
            Entered::Stopped => Err(ENODEV),
        }
    }

    /// Write `job` into the ring as the next job and tell the device, unless
    /// `depth` jobs are in it already (scheduler pass: allocates nothing).
    pub(crate) fn enter_ring(self: &Arc<Self>, job: &Arc<Job>, depth: usize) -> Entered {
        let r = (|| -> Result<bool> {
            let mut st = self.state.lock();
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
            // proof, no gate.
            let rcu = rcu::read_lock();
            let (Some(bar), Some(rings)) = (
                self.bar.try_access_with_guard(&rcu),
                self.rings.try_access_with_guard(&rcu),
            ) else {
                return Err(ENODEV);
            };
            if let Some(vm) = job.vm() {
                // A hardware context for its address space (slots.rs);
                // with every slot busy, the job waits in the scheduler
                // until a job retires.
                let Ok(Binding { slot, new }) = st.slots.bind(vm.id()) else {
                    return Ok(false);
                };
                if new {
                    // The device reads the descriptor when the job starts: it
                    // must be in place before the entry is published.
                    let desc = CtxDesc {
                        root: vm.root() | crate::mmu::PTE_VALID,
                        reserved: 0,
                    };
                    let written = (|| -> Result {
                        dma_write!(rings.ctx_table, [try: usize::from(slot)], desc);
                        Ok(())
                    })();
                    if let Err(e) = written {
                        // Unbound again, so that the next bind writes it.
                        st.slots.release(vm.id());
                        return Err(e);
                    }
                }
                job.set_context(slot);
            }
            let slot = (st.sq_tail % RING_ENTRIES) as usize;
            let seqno = st.queued_seqno + 1;
            job.set_ring_seqno(seqno);
            let pushed = (|| -> Result {
                dma_write!(rings.sq, [try: slot], job.sq_entry(slot, rings.profile_addr(slot)));
                // has_room(): within the capacity allocated at probe.
                st.in_flight
                    .push_within_capacity(job.clone())
                    .map_err(|_| EBUSY)
            })();
            if let Err(e) = pushed {
                if job.vm().is_some() {
                    st.slots.job_left(job.context());
                }
                return Err(e);
            }
            if st.in_flight.len() == 1 {
                st.head_since = Instant::now();
            }
            st.queued_seqno = seqno;
            let old = st.sq_tail;
            st.sq_tail = st.sq_tail.wrapping_add(1);
            // (The page's indices are constants in range; ring if that fails.)
            if self.needs_doorbell(rings, st.sq_tail, old).unwrap_or(true) {
                self.counters.doorbells.add(1, Relaxed);
                // writel orders the entry (coherent memory) before the doorbell.
                bar.write32(st.sq_tail, DOORBELL);
            }
            self.counters.submitted.add(1, Relaxed);
            // Arm the watchdog unless it is pending already (the work
            // item's own pending bit decides; a pass that is running
            // re-arms too). It times the job from now: it is in the ring.
            // Under the ring lock, not stopped: unbind, which stops the
            // engine under this lock, cancels the watchdog afterwards.
            self.arm_watchdog();
            Ok(true)
        })();
        match r {
            Ok(true) => Entered::Yes,
            Ok(false) => Entered::NoRoom,
            Err(_) => Entered::Stopped,
        }
    }

    /// End a job that never reached the ring (SUBMIT failed after its
    /// fence was published, or the device went away) with `outcome`, as
    /// though it had passed through the ring: it takes a place in the
    /// retired list, so false when the ring has no room.
    pub(crate) fn retire_unqueued(self: &Arc<Self>, job: &Arc<Job>, outcome: Outcome) -> bool {
        let mut st = self.state.lock();
        if !st.has_room() {
            return false;
        }
        self.retire_listed(&mut st, job.clone(), outcome, Delta::ZERO);
        self.schedule_release(&st);
        true
    }

    pub(crate) fn uses_shadow(&self) -> bool {
        self.params.caps & CAP_SHADOW_DOORBELL != 0
    }

    /// Publish a new submission-ring tail; whether the CP sleeps and needs
    /// the DOORBELL write. With a shadow page, the CP polls the tail while it
    /// runs and publishes where it stopped (SQ_EVENT) before it sleeps: ring
    /// when the new tail passes that point (the NVMe/virtio event-index
    /// rule). A device that lies in SQ_EVENT only delays its own jobs, which
    /// the watchdog then times out.
    pub(crate) fn needs_doorbell(&self, rings: &Rings, tail: u32, old: u32) -> Result<bool> {
        if !self.uses_shadow() {
            return Ok(true);
        }
        // The entry (coherent memory) before the tail that publishes it.
        dma_wmb();
        dma_write!(rings.shadow, [try: SHADOW_SQ_TAIL], tail);
        // The tail before the event read, against the CP's event write
        // before its tail read: one of the two sees the other. A full
        // barrier against the device, as NVMe's shadow doorbells use.
        mb();
        let event: u32 = dma_read!(rings.shadow, [try: SHADOW_SQ_EVENT]);
        Ok(tail.wrapping_sub(event).wrapping_sub(1) < tail.wrapping_sub(old))
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
