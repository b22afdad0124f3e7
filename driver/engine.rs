// SPDX-License-Identifier: GPL-2.0-only

//! The command engine: the device-wide object that ties the layers
//! together (the ring layer in ring.rs, the jobs in the ring and the
//! completion drain in inflight.rs, interrupts in irq.rs, reset, recovery
//! and the watchdog in reset.rs, the scheduler in sched.rs): the device
//! memory, the counters, the work items, the context
//! slots, the release of ended jobs and unbind
//! (Documentation/driver/onpu.rst, "Job life cycle", "Signalling rules",
//! "Locking").
//!
//! Locking, outermost first:
//!
//! - A queue's `submit` mutex (driver/sched.rs): serialises the
//!   submitters of one queue while a job is built and its fence published
//!   (which allocates and takes reservation locks). Never taken on the
//!   signalling path.
//! - The scheduler's `sched` mutex, then a queue's `pending` mutex
//!   (driver/sched.rs): taken by the scheduler pass, a signalling section,
//!   to move ready jobs into the ring; nothing under them allocates.
//! - `drm` (mutex, held only for a moment): the registered DRM device,
//!   which `with_bound` takes a reference to before it enters a section of
//!   it (`drm::Device::enter`, the SRCU read side of `drm_dev_enter()`: not
//!   a lock anything waits on, except unbind's unplug, which waits for the
//!   sections after it signalled every fence). No allocation or wait
//!   happens under the mutex. The signalling paths reach the registers and
//!   rings through `Devres::try_access` (RCU) or the interrupt handler's
//!   bound device.
//! - `state` (mutex): ring indices, the in-flight queue and the retired
//!   list. Taken on the signalling path (IRQ thread, watchdog, reset), so
//!   nothing under it allocates, takes a reservation lock or waits for a
//!   fence; every vector it uses is allocated at probe.
//!
//! Fences signal under `state`; the jobs they belong to are released (their
//! buffer objects, their address space) later, by the `release` work item,
//! outside every signalling section.
//!
//! The device runs jobs in ring order, one at a time, so completions come in
//! submission order: a record naming a later job than the oldest in flight
//! is a device error (reset, then fail the skipped jobs); a record naming
//! no job is counted as bogus and dropped. Everything read back from the
//! device is checked before it is believed.

use kernel::devcoredump;
use kernel::drm::device::WedgeRecovery;
use kernel::{
    device::{self, Bound, Core},
    devres::Devres,
    dma::Coherent,
    dma_write,
    io::Io,
    new_mutex, pci,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Acquire, Atomic, Relaxed, Release},
        rcu, Arc, Mutex,
    },
    time::{msecs_to_jiffies, Instant},
    workqueue::{self, impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem},
};

use crate::drv::OnpuDevice;

use crate::context::Objects;
use crate::fence::{RingContext, Signalling};
use crate::gem::BoStats;
use crate::hw::{self, Bar0, Params};
use crate::inflight::{RingState, RETIRED_ENTRIES};
use crate::job::Job;
use crate::regs::*;
use crate::ring::{CqEntry, CtxDesc, ProfileRecord, RingIndices, Rings, SqEntry, RING_ENTRIES};
use crate::sched::SchedList;
use crate::slots::Slots;

/// How long retired jobs may wait for the release work (a submission
/// releases them earlier).
const RELEASE_DELAY_MS: u32 = 10;
/// How often the scheduler looks for a fence attached to a point that a
/// queue's head job waits for (DRM_ONPU_SYNC_WAIT_FOR_SUBMIT).
const SCHED_POLL_MS: u32 = 2;
/// Default (and largest) run time of a job.
pub(crate) const JOB_TIMEOUT_MS: u32 = 5000;

/// Device-wide counters (GET_PARAM, debugfs).
pub(crate) struct Counters {
    pub(crate) submitted: Atomic<u64>,
    /// Of those, the jobs SUBMIT wrote into the ring itself, with no
    /// scheduler pass (sched.rs, the fast path).
    pub(crate) fast_path: Atomic<u64>,
    pub(crate) completed: Atomic<u64>,
    pub(crate) failed: Atomic<u64>,
    pub(crate) resets: Atomic<u64>,
    pub(crate) bogus_completions: Atomic<u64>,
    /// DOORBELL writes (with a shadow page, only when the CP sleeps).
    pub(crate) doorbells: Atomic<u64>,
    /// RING_ERROR interrupts: ring-pointer writes the device refused.
    pub(crate) ring_errors: Atomic<u64>,
    /// The last RING_ERROR (high 32 bits) and RING_ERROR_VALUE (low).
    pub(crate) ring_error_last: Atomic<u64>,
}

impl Counters {
    fn new() -> Self {
        Self {
            submitted: Atomic::new(0),
            fast_path: Atomic::new(0),
            completed: Atomic::new(0),
            failed: Atomic::new(0),
            resets: Atomic::new(0),
            bogus_completions: Atomic::new(0),
            doorbells: Atomic::new(0),
            ring_errors: Atomic::new(0),
            ring_error_last: Atomic::new(0),
        }
    }
}

/// The rings and their state. Shared by the DRM device, the files, the jobs
/// and the IRQ handlers.
#[pin_data]
pub(crate) struct Engine {
    pub(crate) bar: Devres<Bar0>,
    pub(crate) params: Params,
    pub(crate) dev: ARef<device::Device>,
    pub(crate) rings: Devres<Rings>,
    /// The timeline of the jobs' fences.
    pub(crate) fences: RingContext,
    pub(crate) counters: Counters,
    /// The device's buffer objects (each holds a reference).
    pub(crate) bo_stats: Arc<BoStats>,
    /// The queues and their pending jobs (driver/sched.rs).
    #[pin]
    pub(crate) sched: Mutex<SchedList>,
    /// A scheduler pass left a job behind for want of ring room (or a
    /// failed job for its queue's earlier ones): run again when jobs end.
    pub(crate) sched_blocked: Atomic<bool>,
    /// A failed reset wedged the device (`RingState::wedged`, which
    /// never clears: a copy SUBMIT reads without the ring lock).
    pub(crate) wedged: Atomic<bool>,
    /// Jobs in the queues' pending lists (all queues), for debugfs.
    pub(crate) sched_waiting: Atomic<u32>,
    /// `RingState::retired.len()`, stored under the ring lock: read
    /// without it by [`Engine::release_retired`].
    pub(crate) retired_jobs: Atomic<u32>,
    /// Live queues per priority: the fast path and the pass keep a lower
    /// priority's jobs to the credit limit in the ring while a queue of a
    /// higher one exists (sched.rs, `ring_depth`).
    pub(crate) queues_by_priority: [Atomic<u32>; 4],
    #[pin]
    pub(crate) state: Mutex<RingState>,
    /// The last software-context id handed out (slot owners; 0 is none).
    pub(crate) context_ids: Atomic<u64>,
    /// The objects of every live address space (context), for unbind to
    /// release their DMA mappings: each context lists its [`Objects`] when
    /// it is made and unlists them when it goes. (`Objects` holds no
    /// reference back, so the list keeps no context alive.)
    #[pin]
    pub(crate) live_contexts: Mutex<KVec<Arc<Objects>>>,
    /// Looks at the oldest job while jobs are queued. Armed by every
    /// submission and by itself; its own pending bit says whether it is.
    #[pin]
    pub(crate) watchdog: DelayedWork<Engine, 0>,
    /// Releases retired jobs, outside the signalling path (on
    /// system_long_wq: it may wait for reservation locks). Delayed a little
    /// so that one run releases a batch; submitters release too.
    #[pin]
    pub(crate) release: DelayedWork<Engine, 1>,
    /// Sends the wedged uevent (it allocates: never from the signalling
    /// path, which only queues this).
    #[pin]
    pub(crate) wedged_work: DelayedWork<Engine, 2>,
    /// The registered DRM device: for that uevent, and for the sections
    /// ([`Engine::with_bound`]) of work that has no file at hand. Set at
    /// the end of probe (or by the first open, if it comes first), taken
    /// back at unbind after the unplug (it holds the engine, so the
    /// reference must not outlive the binding).
    #[pin]
    pub(crate) drm: Mutex<Option<ARef<OnpuDevice>>>,
    /// Runs the scheduler pass (queued by fence callbacks and the ring).
    #[pin]
    pub(crate) sched_work: DelayedWork<Engine, 3>,
    /// Polls for fences attached to points jobs wait for (no notification
    /// exists for that: Documentation/driver/onpu.rst).
    #[pin]
    pub(crate) sched_poll: DelayedWork<Engine, 4>,
    /// Turns a failure's snapshot into a device coredump (it allocates and
    /// reads the command buffer: never on the signalling path, which only
    /// queues this).
    #[pin]
    pub(crate) dump_work: DelayedWork<Engine, 5>,
    /// A snapshot is taken and its coredump not made yet: later failures
    /// take none (one dump at a time; the devcoredump core keeps one per
    /// device anyway).
    pub(crate) dump_pending: Atomic<bool>,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 0> for Engine { self.watchdog }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 1> for Engine { self.release }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Engine { self.wedged_work }

}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 3> for Engine { self.sched_work }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 4> for Engine { self.sched_poll }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 5> for Engine { self.dump_work }
}

impl Engine {
    pub(crate) fn new(
        dev: &device::Device<Bound>,
        bar: Devres<Bar0>,
        params: Params,
    ) -> Result<impl PinInit<Self, Error> + use<>> {
        let rings = Rings {
            sq: Coherent::<SqEntry>::zeroed_slice(dev, RING_ENTRIES as usize, GFP_KERNEL)?,
            cq: Coherent::<CqEntry>::zeroed_slice(dev, RING_ENTRIES as usize, GFP_KERNEL)?,
            ctx_table: Coherent::<CtxDesc>::zeroed_slice(
                dev,
                params.contexts as usize,
                GFP_KERNEL,
            )?,
            shadow: Coherent::<u32>::zeroed_slice(dev, SHADOW_WORDS, GFP_KERNEL)?,
            profiles: Coherent::<ProfileRecord>::zeroed_slice(
                dev,
                RING_ENTRIES as usize,
                GFP_KERNEL,
            )?,
        };
        let rings = Devres::new(dev, Ok::<_, Error>(rings))?;
        let device: &device::Device = dev;
        let device: ARef<device::Device> = device.into();
        // Everything the signalling path stores jobs in, allocated now.
        let in_flight = KVec::with_capacity(RING_ENTRIES as usize, GFP_KERNEL)?;
        let retired = KVec::with_capacity(RETIRED_ENTRIES, GFP_KERNEL)?;
        let bo_stats = BoStats::new()?;
        let slots = Slots::new(params.contexts)?;
        Ok(try_pin_init!(Self {
            bar,
            params,
            dev: device,
            rings,
            fences: RingContext::new(),
            counters: Counters::new(),
            bo_stats,
            sched <- new_mutex!(SchedList::new()),
            sched_blocked: Atomic::new(false),
            wedged: Atomic::new(false),
            sched_waiting: Atomic::new(0),
            retired_jobs: Atomic::new(0),
            queues_by_priority: [const { Atomic::new(0) }; 4],
            state <- new_mutex!(RingState {
                ring: RingIndices::default(),
                in_flight,
                retired,
                queued_seqno: 0,
                retired_seqno: 0,
                head_since: Instant::now(),
                stopped: false,
                wedged: false,
                ring_error_window: Instant::now(),
                ring_error_logged: 0,
                slots,
                dump: None,
            }),
            context_ids: Atomic::new(0),
            live_contexts <- new_mutex!(KVec::new()),
            watchdog <- new_delayed_work!("onpu::watchdog"),
            release <- new_delayed_work!("onpu::release"),
            wedged_work <- new_delayed_work!("onpu::wedged"),
            drm <- new_mutex!(None),
            sched_work <- new_delayed_work!("onpu::sched"),
            sched_poll <- new_delayed_work!("onpu::sched_poll"),
            dump_work <- new_delayed_work!("onpu::coredump"),
            dump_pending: Atomic::new(false),
        }))
    }

    /// Run `f` with the device proven bound, in a section of the DRM
    /// device (work items, the release path: no file at hand); ENODEV
    /// before probe registered the device and once unbind unplugged it.
    /// Holds no lock while `f` runs: unbind's unplug waits for `f` to
    /// return, so `f` must not wait for a fence (Documentation/driver/
    /// onpu.rst, "Binding lifetime").
    pub(crate) fn with_bound<R>(
        &self,
        f: impl FnOnce(&device::Device<Bound>) -> Result<R>,
    ) -> Result<R> {
        // A reference of our own: unbind takes the engine's away.
        let drm = self.drm.lock().clone().ok_or(ENODEV)?;
        Self::enter(&drm, f)
    }

    /// [`Engine::with_bound`] through `drm` (the ioctls have it).
    pub(crate) fn enter<R>(
        drm: &OnpuDevice,
        f: impl FnOnce(&device::Device<Bound>) -> Result<R>,
    ) -> Result<R> {
        let section = drm.enter().ok_or(ENODEV)?;
        f(section.parent())
    }

    /// Program the rings and enable the command processor (after a reset),
    /// with `tail` entries already in the submission ring.
    pub(crate) fn start(&self, dev: &device::Device<Bound>, tail: u32) -> Result {
        let bar = self.bar.access(dev)?;
        let r = self.rings.access(dev)?;
        // The device restarts at index 0: the page must say so (and where
        // the tail is) before ENABLE, when the CP first reads it.
        // (A device without the capability does not have the registers.)
        if self.uses_shadow() {
            let shadow = r.shadow.dma_handle();
            dma_write!(r.shadow, [try: SHADOW_SQ_TAIL], tail);
            dma_write!(r.shadow, [try: SHADOW_SQ_EVENT], 0u32);
            dma_write!(r.shadow, [try: SHADOW_CQ_HEAD], 0u32);
            bar.write32(shadow as u32, SHADOW_LO);
            bar.write32((shadow >> 32) as u32, SHADOW_HI);
        }
        let (sq, cq, ctx) = (
            r.sq.dma_handle(),
            r.cq.dma_handle(),
            r.ctx_table.dma_handle(),
        );
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
        // With the completion event index the job vector needs no IRQ_ACK
        // (irq.rs); a device without it ignores nothing: the bit is only
        // set when CAPS says it exists.
        let event = if self.uses_cq_event() {
            CONTROL_CQ_EVENT
        } else {
            0
        };
        bar.write32(CONTROL_ENABLE | event, CONTROL);
        let status = bar.read32(STATUS);
        if status & STATUS_HALTED != 0 || status & STATUS_ENABLED == 0 {
            dev_err!(
                dev,
                "the NPU refused the ring setup (STATUS {:#x})\n",
                status
            );
            return Err(EIO);
        }
        Ok(())
    }

    /// An id for a new software context (an NPU address space): what the
    /// slot manager knows it by. Never 0, never reused.
    pub(crate) fn new_context_id(&self) -> u64 {
        self.context_ids.fetch_add(1, Relaxed) + 1
    }

    /// Point context `ctx` at the page tables rooted at `root` (0: invalid).
    pub(crate) fn set_context(&self, dev: &device::Device<Bound>, ctx: u16, root: u64) -> Result {
        let (bar, rings) = (self.bar.access(dev)?, self.rings.access(dev)?);
        self.ring(bar, rings).set_context(ctx, root)
    }

    /// A software context goes away (no job holds it, so none is in the
    /// ring): give back its slot, its descriptor cleared, before its page
    /// tables are freed. Under the ring lock, so that no other context is
    /// bound to the slot in between.
    pub(crate) fn release_context(&self, id: u64) {
        let mut st = self.state.lock();
        if let Some(slot) = st.slots.release(id) {
            // Revoked at unbind: the device is stopped and the table gone;
            // only the binding was left to forget. (An RCU section: the
            // write does not sleep.)
            let rcu = rcu::read_lock();
            if let (Some(bar), Some(rings)) = (
                self.bar.try_access_with_guard(&rcu),
                self.rings.try_access_with_guard(&rcu),
            ) {
                let _ = self.ring(bar, rings).set_context(slot, 0);
            }
        }
    }

    /// The hardware context software context `id` is bound to now, if any.
    pub(crate) fn slot_of(&self, id: u64) -> Option<u16> {
        self.state.lock().slots.slot_of(id)
    }

    /// A new address space's objects (Context::new).
    pub(crate) fn register_objects(&self, objects: Arc<Objects>) -> Result {
        self.live_contexts.lock().push(objects, GFP_KERNEL)?;
        Ok(())
    }

    /// An address space goes (its drop, or a failed Context::new). The
    /// caller holds a reference of its own, so none is freed here.
    pub(crate) fn unregister_objects(&self, objects: &Arc<Objects>) {
        self.live_contexts
            .lock()
            .retain(|o| !Arc::ptr_eq(o, objects));
    }

    /// Poll again later for fences attached to the points a queue's head
    /// job waits for.
    pub(crate) fn poll_scheduler(self: &Arc<Self>) {
        let delay = msecs_to_jiffies(SCHED_POLL_MS);
        // Err: pending already.
        let _ = workqueue::system().enqueue_delayed::<Arc<Self>, 4>(self.clone(), delay);
    }

    /// Let the release work drop the retired jobs. Under the ring lock, so
    /// that once unbind has marked the engine stopped no work is queued
    /// behind its cancel (unbind releases the rest itself).
    pub(crate) fn schedule_release(self: &Arc<Self>, st: &RingState) {
        if !st.stopped && !st.retired.is_empty() {
            // Err: queued already.
            let delay = msecs_to_jiffies(RELEASE_DELAY_MS);
            let _ = workqueue::system_long().enqueue_delayed::<Arc<Self>, 1>(self.clone(), delay);
        }
    }

    /// Drop retired jobs: their buffer objects first, then the jobs (and
    /// with the last one, possibly a file's address space). Not on the
    /// signalling path: this may block on reservation locks.
    ///
    /// Every SUBMIT and WAIT comes here: with nothing retired (the count
    /// the ring lock keeps) it takes no lock, and it takes the jobs a batch
    /// per lock, not one.
    pub(crate) fn release_retired(&self) {
        const BATCH: usize = 16;
        // (Acquire: a job counted here was listed before its fence
        // signalled, so a waiter that saw the fence sees the count.)
        while self.retired_jobs.load(Acquire) != 0 {
            let mut batch: [Option<Arc<Job>>; BATCH] = Default::default();
            let mut n = 0;
            {
                let mut st = self.state.lock();
                while n < BATCH {
                    let Some(job) = st.retired.pop() else { break };
                    batch[n] = Some(job);
                    n += 1;
                }
                self.retired_jobs.store(st.retired.len() as u32, Release);
            }
            for job in batch.iter_mut().filter_map(Option::take) {
                job.release();
                drop(job);
            }
            if n < BATCH {
                break;
            }
        }
    }

    /// Room in the ring freed up (jobs released): run the scheduler if it
    /// left jobs behind.
    pub(crate) fn release_retired_and_schedule(self: &Arc<Self>) {
        self.release_retired();
        self.kick_scheduler_if_blocked();
    }

    /// Whether a failed reset wedged the device (debugfs).
    pub(crate) fn is_wedged(&self) -> bool {
        self.wedged.load(Relaxed)
    }

    /// The registered DRM device (end of probe, or the first open if that
    /// comes first: the device is registered before probe ends). Only from
    /// probe or inside a section of `drm`, so never after unbind took it
    /// back: that comes after the unplug, which waits for the sections.
    pub(crate) fn set_drm(&self, drm: &OnpuDevice) {
        let mut ours = self.drm.lock();
        if ours.is_none() {
            *ours = Some(drm.into());
        }
    }

    /// Unbind (or a probe that fails after start()): stop the device for
    /// good, end every queued job as cancelled, unplug the DRM device
    /// (which waits for every section to end), stop the work items, release
    /// the DMA mappings. The rings are freed by devres after this returns,
    /// when the device can no longer write into them.
    pub(crate) fn shut_down(self: &Arc<Self>, pdev: &pci::Device<Core<'_>>) {
        let core: &device::Device<Core<'_>> = pdev.as_ref();
        let dev: &device::Device<Bound> = core;
        {
            let _signalling = Signalling::begin();
            let mut st = self.state.lock();
            // Under the ring lock: no reset is in progress, none restarts
            // the device after this.
            st.stopped = true;
            if let Ok(bar) = self.bar.access(dev) {
                let _ = hw::quiesce(dev, bar);
                // Records the device wrote before the reset are the real
                // outcomes of the jobs they name: take them (the IRQ thread
                // would otherwise find them after the cancel below and call
                // them bogus), then cancel the rest.
                if let Ok(rings) = self.rings.access(dev) {
                    let _ = self.drain_locked(dev, bar, rings, &mut st);
                }
            }
            self.cancel_all(&mut st);
        }
        // Then the jobs still waiting in queues, each queue in order.
        self.cancel_pending();
        hw::stop_bus_master(pdev);
        // Unplug: no section opens from here on and the open ones (page-
        // table updates, a watchdog pass, a coredump) end; none waits for a
        // fence, and every fence is signalled anyway. Open files get ENODEV
        // from every ioctl. (A probe that fails has no registered device,
        // and so no section, or its registration unplugged it already.)
        let drm = self.drm.lock().clone();
        if let Some(drm) = drm {
            let _ = drm.unplug(core);
        }
        // Nobody arms the watchdog or queues a release any more (both
        // happen only in a section, or under the ring lock before the
        // engine stopped).
        self.cancel_work_items();
        // A dump does not outlive the binding that made it (nor keeps the
        // next binding's from being made).
        devcoredump::dev_coredump_put(dev);
        self.release_retired();
        // Open files outlive the binding: their buffer objects must not stay
        // DMA-mapped for a device that is gone. No mapping is in progress
        // (no user is left) and none starts again.
        for objects in self.live_contexts.lock().iter() {
            objects.release_dma();
        }
    }

    /// Cancel the watchdog and the release work and wait for them to
    /// finish (the work items run module code: none may be left at
    /// unload).
    pub(crate) fn cancel_work_items(&self) {
        self.watchdog.cancel_sync();
        self.release.cancel_sync();
        self.wedged_work.cancel_sync();
        // The uevent cannot be sent any more: let go of the DRM device
        // (which holds this engine).
        self.drm.lock().take();
        self.sched_work.cancel_sync();
        self.sched_poll.cancel_sync();
        self.dump_work.cancel_sync();
        // A snapshot the work did not take: its command-buffer reference
        // goes here, outside the signalling path.
        let dump = self.state.lock().dump.take();
        drop(dump);
        self.dump_pending.store(false, Relaxed);
    }

    /// debugfs: the device-wide counters.
    pub(crate) fn write_counters(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let c = &self.counters;
        writeln!(out, "jobs_submitted: {}", c.submitted.load(Relaxed))?;
        writeln!(out, "jobs_fast_path: {}", c.fast_path.load(Relaxed))?;
        writeln!(out, "jobs_completed: {}", c.completed.load(Relaxed))?;
        writeln!(out, "jobs_failed: {}", c.failed.load(Relaxed))?;
        writeln!(out, "resets: {}", c.resets.load(Relaxed))?;
        writeln!(
            out,
            "bogus_completions: {}",
            c.bogus_completions.load(Relaxed)
        )?;
        writeln!(out, "doorbells: {}", c.doorbells.load(Relaxed))?;
        writeln!(out, "ring_errors: {}", c.ring_errors.load(Relaxed))?;
        let last = c.ring_error_last.load(Relaxed);
        writeln!(out, "ring_error_last: {:#x} {:#x}", last >> 32, last as u32)?;
        writeln!(out, "bos_live: {}", self.bo_stats.live.load(Relaxed))?;
        writeln!(out, "bo_bytes_live: {}", self.bo_stats.bytes.load(Relaxed))
    }

    /// Debugfs: the ring indices and the queued jobs.
    pub(crate) fn describe(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let st = self.state.lock();
        writeln!(
            out,
            "sq_tail: {}\ncq_head: {}",
            st.ring.sq_tail, st.ring.cq_head
        )?;
        writeln!(
            out,
            "queued_seqno: {}\nretired_seqno: {}",
            st.queued_seqno, st.retired_seqno
        )?;
        writeln!(
            out,
            "in_flight: {} (head running for {} us)",
            st.in_flight.len(),
            st.head_since.elapsed().as_micros_ceil()
        )?;
        for job in st.in_flight.iter() {
            // The file's job number first (what SUBMIT returned), then the ring's.
            writeln!(
                out,
                "  job {} ring seqno {} context {} cmdbuf {:#x}+{} timeout {} ms",
                job.seqno,
                job.ring_seqno(),
                job.context(),
                job.cmdbuf,
                job.size,
                job.timeout_ms
            )?;
        }
        writeln!(out, "slots: {}", st.slots.count())?;
        st.slots.describe(out)?;
        drop(st);
        self.describe_queues(out)
    }
}

impl WorkItem<0> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        let _ = this.watchdog_pass();
    }
}

impl WorkItem<1> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        this.release_retired_and_schedule();
    }
}

impl WorkItem<3> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        this.run_scheduler();
    }
}

impl WorkItem<4> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        this.run_scheduler();
    }
}

impl WorkItem<5> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        this.write_dump();
    }
}

impl WorkItem<2> for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        let drm = this.drm.lock().clone();
        if let Some(drm) = drm {
            let _ = drm.wedged_event(WedgeRecovery::REBIND);
        }
    }
}
