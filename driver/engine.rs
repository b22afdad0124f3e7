// SPDX-License-Identifier: GPL-2.0-only

//! The command engine: the submission and completion rings, the context
//! table (its slots bound to address spaces by slots.rs), the in-flight job
//! queue, completion interrupts, the watchdog and reset recovery
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
//! - `gate` (mutex, held only for a moment): whether the PCI device is
//!   bound and how many threads use it. `with_bound` counts a user in and
//!   out; unbind marks the device unbound, signals every fence, then waits
//!   for the users to leave, so a user may treat the device as bound. No
//!   allocation or wait happens under the mutex itself.
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
    device::{self, Bound},
    devres::Devres,
    dma::Coherent,
    dma_read, dma_write,
    io::Io,
    irq::{self, IrqReturn},
    new_condvar, new_mutex, pci,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Acquire, Atomic, Relaxed, Release},
        barrier::{dma_rmb, dma_wmb, mb},
        Arc, CondVar, Mutex,
    },
    time::{msecs_to_jiffies, Delta, Instant, Monotonic},
    transmute::{AsBytes, FromBytes},
    workqueue::{self, impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem},
};

use crate::drv::OnpuDevice;

use crate::context::Context;
use crate::coredump::{Reason, Snapshot};
use crate::fence::{RingContext, Signalling};
use crate::gem::BoStats;
use crate::hw::{self, Bar0, Params};
use crate::job::{Job, Outcome};
use crate::regs::*;
use crate::sched::SchedList;
use crate::slots::{Binding, Slots, KERNEL_SLOT};
use crate::uapi;

/// Entries of each ring.
pub(crate) const RING_ENTRIES: u32 = 256;
/// Ended jobs and jobs in the ring together, at most (the retired list's
/// capacity, allocated at probe): a ring's worth of ended jobs may wait
/// for their release while the ring is full again.
const RETIRED_ENTRIES: usize = 2 * RING_ENTRIES as usize;
/// The context the kernel uses for its own jobs (the probe self-test).
pub(crate) const KERNEL_CONTEXT: u16 = KERNEL_SLOT;
/// Highest fault code of ISA 1.0.
const STATUS_MAX: u32 = 11;
/// Status the driver gives a job it aborted because the device halted.
const STATUS_ABORTED: u32 = 11;
/// How often the watchdog looks at the oldest job while jobs are queued.
const WATCHDOG_PERIOD_MS: u32 = 50;
/// How long retired jobs may wait for the release work (a submission
/// releases them earlier).
const RELEASE_DELAY_MS: u32 = 10;
/// Ring-error messages logged per window, and the window's length: a
/// process writing the registers in a loop must not flood the log.
const RING_ERROR_LOG_BURST: u32 = 5;
const RING_ERROR_LOG_WINDOW_MS: i64 = 5000;
/// How often the scheduler looks for a fence attached to a point that a
/// queue's head job waits for (DRM_ONPU_SYNC_WAIT_FOR_SUBMIT).
const SCHED_POLL_MS: u32 = 2;
/// Default (and largest) run time of a job.
pub(crate) const JOB_TIMEOUT_MS: u32 = 5000;

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

struct RingState {
    sq_tail: u32,
    cq_head: u32,
    /// Jobs in the ring, oldest (the one running) first. Capacity
    /// RING_ENTRIES, allocated at probe.
    in_flight: KVec<Arc<Job>>,
    /// Jobs that ended and whose fence signalled, waiting for the release
    /// work to let go of them outside the signalling path. Capacity
    /// RETIRED_ENTRIES; `in_flight.len() + retired.len() <=
    /// RETIRED_ENTRIES`, so a job that ends always finds its place.
    retired: KVec<Arc<Job>>,
    /// Sequence number of the newest job written into the ring (the next
    /// one gets the next number: ring order).
    queued_seqno: u64,
    /// Sequence number of the newest job that ended: every job up to it
    /// has ended (jobs end in ring order).
    retired_seqno: u64,
    /// When the oldest job became the oldest: its run time so far.
    head_since: Instant<Monotonic>,
    /// Unbind stopped the device: no reset may restart it.
    stopped: bool,
    /// A reset failed: the device is given up until it is bound again.
    /// Nothing enters the ring, nothing resets the device.
    wedged: bool,
    /// Ring-error log rate limit: when the window began, messages in it.
    ring_error_window: Instant<Monotonic>,
    ring_error_logged: u32,
    /// Which software context each hardware context serves (slots.rs).
    slots: Slots,
    /// A failure's snapshot waiting for the coredump work (held inline:
    /// the signalling path fills it without allocating).
    dump: Option<Snapshot>,
}

impl Rings {
    /// Bus address of the profile record of submission-ring slot `slot`.
    fn profile_addr(&self, slot: usize) -> u64 {
        self.profiles.dma_handle() + (slot * core::mem::size_of::<ProfileRecord>()) as u64
    }
}

impl RingState {
    /// Room for one more job in the ring (and, once it ends, in the
    /// retired list). Jobs waiting for their release do not take ring
    /// entries: the IRQ thread refills what it drained before the
    /// submitters and the release work let go of the ended jobs.
    fn has_room(&self) -> bool {
        self.in_flight.len() < RING_ENTRIES as usize
            && self.in_flight.len() + self.retired.len() < RETIRED_ENTRIES
    }

    /// Whether ring-error messages are being suppressed right now.
    fn ring_errors_muted(&self) -> bool {
        self.ring_error_logged >= RING_ERROR_LOG_BURST
            && self.ring_error_window.elapsed() <= Delta::from_millis(RING_ERROR_LOG_WINDOW_MS)
    }
}

/// Whether the device is bound, and who is using it.
struct Gate {
    bound: bool,
    users: u32,
}

/// The device-visible memory of the engine: freed when the device unbinds
/// (through devres), even while open files keep the engine alive.
pub(crate) struct Rings {
    sq: Coherent<[SqEntry]>,
    cq: Coherent<[CqEntry]>,
    ctx_table: Coherent<[CtxDesc]>,
    /// The shadow doorbell page (used when the device has the capability).
    shadow: Coherent<[u32]>,
    /// One profile record per submission-ring slot: the job in slot `i`
    /// has its record at `profiles[i]` (64-byte aligned: the array starts
    /// on a page). Read at completion, copied into the job's outcome.
    profiles: Coherent<[ProfileRecord]>,
}

/// The rings and their state. Shared by the DRM device, the files, the jobs
/// and the IRQ handlers.
#[pin_data]
pub(crate) struct Engine {
    pub(crate) bar: Devres<Bar0>,
    pub(crate) params: Params,
    dev: ARef<device::Device>,
    rings: Devres<Rings>,
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
    wedged: Atomic<bool>,
    /// Jobs in the queues' pending lists (all queues), for debugfs.
    pub(crate) sched_waiting: Atomic<u32>,
    /// `RingState::retired.len()`, stored under the ring lock: read
    /// without it by [`Engine::release_retired`].
    retired_jobs: Atomic<u32>,
    /// Live queues per priority: the fast path and the pass keep a lower
    /// priority's jobs to the credit limit in the ring while a queue of a
    /// higher one exists (sched.rs, `ring_depth`).
    pub(crate) queues_by_priority: [Atomic<u32>; 4],
    #[pin]
    gate: Mutex<Gate>,
    /// Signalled when the last user of an unbound device leaves.
    #[pin]
    gate_idle: CondVar,
    #[pin]
    state: Mutex<RingState>,
    /// The last software-context id handed out (slot owners; 0 is none).
    context_ids: Atomic<u64>,
    /// The live file contexts, by address: each removes itself in its drop
    /// (under this lock), so a listed one is alive while the lock is held.
    #[pin]
    live_contexts: Mutex<KVec<usize>>,
    /// Looks at the oldest job while jobs are queued. Armed by every
    /// submission and by itself; its own pending bit says whether it is.
    #[pin]
    watchdog: DelayedWork<Engine, 0>,
    /// Releases retired jobs, outside the signalling path (on
    /// system_long_wq: it may wait for reservation locks). Delayed a little
    /// so that one run releases a batch; submitters release too.
    #[pin]
    release: DelayedWork<Engine, 1>,
    /// Sends the wedged uevent (it allocates: never from the signalling
    /// path, which only queues this).
    #[pin]
    wedged_work: DelayedWork<Engine, 2>,
    /// The registered DRM device, for that uevent: set at the end of
    /// probe, taken back at unbind (it holds the engine, so the reference
    /// must not outlive the binding).
    #[pin]
    drm: Mutex<Option<ARef<OnpuDevice>>>,
    /// Runs the scheduler pass (queued by fence callbacks and the ring).
    #[pin]
    sched_work: DelayedWork<Engine, 3>,
    /// Polls for fences attached to points jobs wait for (no notification
    /// exists for that: Documentation/driver/onpu.rst).
    #[pin]
    sched_poll: DelayedWork<Engine, 4>,
    /// Turns a failure's snapshot into a device coredump (it allocates and
    /// reads the command buffer: never on the signalling path, which only
    /// queues this).
    #[pin]
    dump_work: DelayedWork<Engine, 5>,
    /// A snapshot is taken and its coredump not made yet: later failures
    /// take none (one dump at a time; the devcoredump core keeps one per
    /// device anyway).
    dump_pending: Atomic<bool>,
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
            gate <- new_mutex!(Gate { bound: true, users: 0 }),
            gate_idle <- new_condvar!(),
            state <- new_mutex!(RingState {
                sq_tail: 0,
                cq_head: 0,
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

    /// Run `f` with the device known to be bound; ENODEV once it is not.
    /// Holds no lock while `f` runs: unbind waits for `f` to return.
    pub(crate) fn with_bound<R>(
        &self,
        f: impl FnOnce(&device::Device<Bound>) -> Result<R>,
    ) -> Result<R> {
        {
            let mut gate = self.gate.lock();
            if !gate.bound {
                return Err(ENODEV);
            }
            gate.users += 1;
        }
        // SAFETY: unbind (shut_down) marks the device unbound, then waits
        // until `users` is back to 0 before it returns, and the device is
        // bound until unbind returns; we are counted until `f` returns.
        let dev = unsafe { self.dev.as_bound() };
        let r = f(dev);
        let mut gate = self.gate.lock();
        gate.users -= 1;
        if gate.users == 0 && !gate.bound {
            self.gate_idle.notify_all();
        }
        r
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
        bar.write32(CONTROL_ENABLE, CONTROL);
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
        let r = self.rings.access(dev)?;
        let desc = CtxDesc {
            root: if root != 0 {
                root | crate::mmu::PTE_VALID
            } else {
                0
            },
            reserved: 0,
        };
        dma_write!(r.ctx_table, [try: usize::from(ctx)], desc);
        Ok(())
    }

    /// A software context goes away (no job holds it, so none is in the
    /// ring): give back its slot, its descriptor cleared, before its page
    /// tables are freed. Under the ring lock, so that no other context is
    /// bound to the slot in between.
    pub(crate) fn release_context(&self, id: u64) {
        let cleared = self.with_bound(|dev| {
            let mut st = self.state.lock();
            if let Some(slot) = st.slots.release(id) {
                self.set_context(dev, slot, 0)?;
            }
            Ok(())
        });
        // Unbound: the device is stopped and the table gone; only the
        // binding is left to forget.
        if cleared.is_err() {
            self.state.lock().slots.release(id);
        }
    }

    /// The hardware context software context `id` is bound to now, if any.
    pub(crate) fn slot_of(&self, id: u64) -> Option<u16> {
        self.state.lock().slots.slot_of(id)
    }

    pub(crate) fn register_context(&self, ctx: &Context) -> Result {
        self.live_contexts
            .lock()
            .push(core::ptr::from_ref(ctx) as usize, GFP_KERNEL)?;
        Ok(())
    }

    pub(crate) fn unregister_context(&self, ctx: &Context) {
        let addr = core::ptr::from_ref(ctx) as usize;
        self.live_contexts.lock().retain(|a| *a != addr);
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
    pub(crate) fn running_seqno(&self, dev: &device::Device<Bound>) -> Result<u64> {
        let rings = self.rings.access(dev)?;
        // The page-table writes before the reads of the records.
        mb();
        let st = self.state.lock();
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
        let r = self.with_bound(|dev| {
            let bar = self.bar.access(dev)?;
            let rings = self.rings.access(dev)?;
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
            Ok(true)
        });
        match r {
            Ok(true) => {
                // Arm the watchdog unless it is pending already (the work
                // item's own pending bit decides; a pass that is running
                // re-arms too). It times the job from now: it is in the ring.
                self.arm_watchdog();
                Entered::Yes
            }
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

    /// Poll again later for fences attached to the points a queue's head
    /// job waits for.
    pub(crate) fn poll_scheduler(self: &Arc<Self>) {
        let delay = msecs_to_jiffies(SCHED_POLL_MS);
        // Err: pending already.
        let _ = workqueue::system().enqueue_delayed::<Arc<Self>, 4>(self.clone(), delay);
    }

    fn uses_shadow(&self) -> bool {
        self.params.caps & CAP_SHADOW_DOORBELL != 0
    }

    /// Publish a new submission-ring tail; whether the CP sleeps and needs
    /// the DOORBELL write. With a shadow page, the CP polls the tail while it
    /// runs and publishes where it stopped (SQ_EVENT) before it sleeps: ring
    /// when the new tail passes that point (the NVMe/virtio event-index
    /// rule). A device that lies in SQ_EVENT only delays its own jobs, which
    /// the watchdog then times out.
    fn needs_doorbell(&self, rings: &Rings, tail: u32, old: u32) -> Result<bool> {
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
    fn retire_head(&self, st: &mut RingState, outcome: Outcome) {
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
    fn retire_listed(&self, st: &mut RingState, job: Arc<Job>, outcome: Outcome, busy: Delta) {
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

    /// Let the release work drop the retired jobs. Under the ring lock, so
    /// that once unbind has marked the engine stopped no work is queued
    /// behind its cancel (unbind releases the rest itself).
    fn schedule_release(self: &Arc<Self>, st: &RingState) {
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

    /// Drain new completion records (IRQ thread, watchdog), at most one
    /// ring's worth: a device that keeps rewriting phase bits cannot keep
    /// the caller here. A record out of ring order is a device error: the
    /// device is reset before any job is failed.
    fn drain(self: &Arc<Self>, dev: &device::Device<Bound>) -> Result {
        let bar = self.bar.access(dev)?;
        let rings = self.rings.access(dev)?;
        let mut st = self.state.lock();
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
                    &mut st,
                    bar,
                    rings,
                    Reason::OutOfOrder,
                    Some(&rec),
                    STATUS_ABORTED,
                    0,
                );
                if let Err(e) = hw::reset(dev, bar) {
                    self.wedge(dev, &mut st);
                    self.schedule_release(&st);
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
                self.retire_head(&mut st, Outcome::aborted(STATUS_ABORTED));
            }
            if rec.status != uapi::DRM_ONPU_JOB_OK && !reset {
                self.capture_dump(
                    &mut st,
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
            self.retire_head(&mut st, outcome);
        }
        if reset {
            if let Err(e) = self.restart(dev, &mut st) {
                self.wedge(dev, &mut st);
                self.schedule_release(&st);
                return Err(e);
            }
        } else if progressed {
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
            self.schedule_release(&st);
            // Failed jobs waiting for these to end may go now.
            self.kick_scheduler_if_blocked();
        }
        Ok(())
    }

    /// Reset the device and bring it back: the oldest job, when `guilty`
    /// says so, ends with `guilty`'s outcome; the jobs queued behind it go
    /// back into the ring in their order. Never after unbind stopped the
    /// device.
    fn recover(
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
    fn wedge(self: &Arc<Self>, dev: &device::Device<Bound>, st: &mut RingState) {
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

    /// Whether a failed reset wedged the device (debugfs).
    pub(crate) fn is_wedged(&self) -> bool {
        self.wedged.load(Relaxed)
    }

    /// The registered DRM device, for the wedged uevent (end of probe).
    pub(crate) fn set_drm(&self, drm: ARef<OnpuDevice>) {
        *self.drm.lock() = Some(drm);
    }

    /// After a reset: clear the completion ring, write the queued jobs back
    /// into the submission ring from index 0, re-enable the device.
    fn restart(&self, dev: &device::Device<Bound>, st: &mut RingState) -> Result {
        let bar = self.bar.access(dev)?;
        let rings = self.rings.access(dev)?;
        // The device restarts at index 0 of both rings; stale records of
        // the previous pass must not look new.
        for slot in 0..RING_ENTRIES as usize {
            dma_write!(rings.cq, [try: slot], CqEntry::default());
        }
        st.cq_head = 0;
        st.sq_tail = 0;
        for job in st.in_flight.iter() {
            let slot = (st.sq_tail % RING_ENTRIES) as usize;
            // Its profile record moves with it (a slot's record is only
            // ever the job's in that slot).
            dma_write!(rings.sq, [try: slot], job.sq_entry(slot, rings.profile_addr(slot)));
            st.sq_tail += 1;
        }
        st.head_since = Instant::now();
        self.start(dev, st.sq_tail)?;
        if st.sq_tail != 0 {
            self.counters.doorbells.add(1, Relaxed);
            bar.write32(st.sq_tail, DOORBELL);
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

    /// End every queued job as cancelled (device gone or reset failed).
    fn cancel_all(&self, st: &mut RingState) {
        while !st.in_flight.is_empty() {
            self.retire_head(st, Outcome::canceled());
        }
    }

    fn arm_watchdog(self: &Arc<Self>) {
        let delay = msecs_to_jiffies(WATCHDOG_PERIOD_MS);
        // Err: pending already, which is all we want.
        let _ = workqueue::system_long().enqueue_delayed::<Arc<Self>, 0>(self.clone(), delay);
    }

    /// One watchdog pass: pick up completions whose interrupt got lost,
    /// reset the device when the oldest job overran its timeout, and re-arm
    /// while jobs are queued (under the gate, so never after unbind).
    fn watchdog_pass(self: &Arc<Self>) -> Result {
        let _signalling = Signalling::begin();
        self.with_bound(|dev| {
            let bar = self.bar.access(dev)?;
            // A lost message leaves JOB_DONE pending, which would suppress
            // every later one: acknowledge before draining.
            bar.write32(IRQ_JOB_DONE, IRQ_ACK);
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
    fn capture_dump(
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
        let ring_entry = head.and_then(|job| {
            (|| -> Result<SqEntry> { Ok(dma_read!(rings.sq, [try: job.ring_slot()])) })().ok()
        });
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
    fn write_dump(self: &Arc<Self>) {
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

    /// Unbind (or a probe that fails after start()): stop the device for
    /// good, end every queued job as cancelled, wait for every user of the
    /// bound device to leave, stop the work items, release the DMA
    /// mappings. The rings are freed by devres after this returns, when
    /// the device can no longer write into them.
    pub(crate) fn shut_down(self: &Arc<Self>, pdev: &pci::Device<Bound>) {
        let dev: &device::Device<Bound> = pdev.as_ref();
        // No new user from here on.
        self.gate.lock().bound = false;
        {
            let _signalling = Signalling::begin();
            let mut st = self.state.lock();
            // Under the ring lock: no reset is in progress, none restarts
            // the device after this.
            st.stopped = true;
            if let Ok(bar) = self.bar.access(dev) {
                let _ = hw::quiesce(dev, bar);
            }
            self.cancel_all(&mut st);
        }
        // Then the jobs still waiting in queues, each queue in order.
        self.cancel_pending();
        hw::stop_bus_master(pdev);
        // Users of the bound device (page-table updates, a watchdog pass,
        // a submitter) finish; every fence they might wait for signalled.
        {
            let mut gate = self.gate.lock();
            while gate.users > 0 {
                self.gate_idle.wait(&mut gate);
            }
        }
        // Nobody arms the watchdog or queues a release any more (both
        // happen only under the gate or with jobs in flight).
        self.cancel_work_items();
        // A dump does not outlive the binding that made it (nor keeps the
        // next binding's from being made).
        devcoredump::dev_coredump_put(dev);
        self.release_retired();
        // Open files outlive the binding: their buffer objects must not stay
        // DMA-mapped for a device that is gone. No mapping is in progress
        // (no user is left) and none starts again.
        for &addr in self.live_contexts.lock().iter() {
            // SAFETY: a listed context is alive while the list lock is held
            // (its drop unlists it under the lock first).
            let ctx = unsafe { &*(addr as *const Context) };
            ctx.release_dma();
        }
    }

    /// Cancel the watchdog and the release work and wait for them to
    /// finish (the work items run module code: none may be left at
    /// unload).
    fn cancel_work_items(&self) {
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
        writeln!(out, "sq_tail: {}\ncq_head: {}", st.sq_tail, st.cq_head)?;
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

    /// RING_ERROR was raised: the device refused a ring-pointer write this
    /// driver never makes (its indices stay within the rings), so another
    /// agent writes the registers (a process through the BAR) and may have
    /// moved them to values the device accepted. Read what was refused and
    /// clear it; the caller resets the device, which puts every pointer back
    /// where the driver's state says. Signalling path: no allocation.
    fn take_ring_error(&self, bar: &Bar0) -> (u32, u32) {
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
    fn log_ring_error(
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

    /// Debugfs: reset the device now. The job that was running is aborted
    /// (ABORTED, -EIO): it may have run partly, so it is not run again;
    /// the jobs behind it are resubmitted.
    pub(crate) fn force_reset(self: &Arc<Self>) -> Result {
        let _signalling = Signalling::begin();
        self.with_bound(|dev| {
            // Jobs that ended already keep their own outcome.
            self.drain(dev)?;
            let mut st = self.state.lock();
            let r = self.recover(dev, &mut st, Some(Outcome::aborted(STATUS_ABORTED)));
            self.schedule_release(&st);
            r
        })
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
