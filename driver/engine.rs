// SPDX-License-Identifier: GPL-2.0-only

//! The command engine: the submission and completion rings, the context
//! table, the in-flight job queue, completion interrupts, the watchdog and
//! reset recovery (Documentation/driver/onpu.rst, "Job life cycle").
//!
//! Locking, outermost first:
//!
//! - `gate` (mutex): true while the PCI device is bound. Held around
//!   everything that needs a bound device outside its probe/IRQ scopes
//!   (page-table allocation, ring writes from ioctls, the watchdog, reset);
//!   unbind clears it under the lock, so a holder that saw `true` may treat
//!   the device as bound until it lets go.
//! - `state` (mutex): ring indices and the in-flight queue. The IRQ thread
//!   takes only this one.
//!
//! The device runs jobs in ring order, one at a time, so completions come in
//! submission order: a completion record must name the oldest in-flight job
//! or it is counted as bogus and dropped. Everything read back from the
//! device is checked before it is believed.

use kernel::{
    device::{self, Bound},
    devres::Devres,
    dma::Coherent,
    dma_read, dma_write,
    io::Io,
    irq::{self, IrqReturn},
    new_condvar, new_mutex,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        barrier::{smp_mb, smp_wmb},
        Arc, CondVar, Mutex,
    },
    time::{msecs_to_jiffies, Delta, Instant, Monotonic},
    transmute::{AsBytes, FromBytes},
    workqueue::{self, impl_has_delayed_work, new_delayed_work, DelayedWork, WorkItem},
};

use crate::context::Context;
use crate::fence;
use crate::hw::{self, Bar0, Params};
use crate::job::{Job, Outcome};
use crate::regs::*;
use crate::uapi;

/// Entries of each ring.
pub(crate) const RING_ENTRIES: u32 = 256;
/// The context the kernel uses for its own jobs (the probe self-test).
pub(crate) const KERNEL_CONTEXT: u16 = 0;
/// Highest fault code of ISA 1.0.
const STATUS_MAX: u32 = 11;
/// Status the driver gives a job it aborted because the device halted.
const STATUS_ABORTED: u32 = 11;
/// How often the watchdog looks at the oldest job while jobs are queued.
const WATCHDOG_PERIOD_MS: u32 = 50;
/// Default (and largest) run time of a job.
pub(crate) const JOB_TIMEOUT_MS: u32 = 5000;

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

/// Device-wide counters (GET_PARAM, debugfs).
pub(crate) struct Counters {
    pub(crate) submitted: Atomic<u64>,
    pub(crate) completed: Atomic<u64>,
    pub(crate) failed: Atomic<u64>,
    pub(crate) resets: Atomic<u64>,
    pub(crate) bogus_completions: Atomic<u64>,
    /// DOORBELL writes (with a shadow page, only when the CP sleeps).
    pub(crate) doorbells: Atomic<u64>,
}

impl Counters {
    fn new() -> Self {
        Self {
            submitted: Atomic::new(0),
            completed: Atomic::new(0),
            failed: Atomic::new(0),
            resets: Atomic::new(0),
            bogus_completions: Atomic::new(0),
            doorbells: Atomic::new(0),
        }
    }
}

struct RingState {
    sq_tail: u32,
    cq_head: u32,
    next_seqno: u64,
    /// Jobs in the ring, oldest (the one running) first.
    in_flight: KVec<Arc<Job>>,
    /// When the oldest job became the oldest: its run time so far.
    head_since: Instant<Monotonic>,
}

/// The device-visible memory of the engine: freed when the device unbinds
/// (through devres), even while open files keep the engine alive.
pub(crate) struct Rings {
    sq: Coherent<[SqEntry]>,
    cq: Coherent<[CqEntry]>,
    ctx_table: Coherent<[CtxDesc]>,
    /// The shadow doorbell page (used when the device has the capability).
    shadow: Coherent<[u32]>,
}

/// Jobs that ended under the ring lock, kept until it is released.
/// Declared before the guard in every caller, so it drops after it.
struct Ended(KVec<Arc<Job>>);

impl Ended {
    fn new() -> Self {
        Ended(KVec::new())
    }

    /// Room for `n` more, so that keeping a job never allocates.
    fn reserve(&mut self, n: usize) {
        let _ = self.0.reserve(n, GFP_KERNEL);
    }

    fn keep(&mut self, job: Arc<Job>) {
        // With the room reserved this cannot fail; if it did, the job would
        // drop here, which is only wrong if it were the last reference.
        if let Err(e) = self.0.push_within_capacity(job) {
            let _ = self.0.push(e.0, GFP_ATOMIC);
        }
    }
}

/// The rings and their state. Shared by the DRM device, the files, the jobs
/// and the IRQ handlers.
#[pin_data]
pub(crate) struct Engine {
    pub(crate) bar: Devres<Bar0>,
    pub(crate) params: Params,
    dev: ARef<device::Device>,
    rings: Devres<Rings>,
    pub(crate) fence_context: u64,
    pub(crate) counters: Counters,
    #[pin]
    gate: Mutex<bool>,
    #[pin]
    state: Mutex<RingState>,
    /// Signalled when ring space frees up.
    #[pin]
    space: CondVar,
    /// Hardware contexts in use (bit per context; 0 is the kernel's).
    #[pin]
    contexts: Mutex<[u64; 4]>,
    /// The live file contexts, by address: each removes itself in its drop
    /// (under this lock), so a listed one is alive while the lock is held.
    #[pin]
    live_contexts: Mutex<KVec<usize>>,
    #[pin]
    watchdog: DelayedWork<Engine>,
    watchdog_armed: Atomic<bool>,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for Engine { self.watchdog }
}

impl Engine {
    pub(crate) fn new(dev: &device::Device<Bound>, bar: Devres<Bar0>, params: Params) -> Result<impl PinInit<Self, Error> + use<>> {
        let rings = Rings {
            sq: Coherent::<SqEntry>::zeroed_slice(dev, RING_ENTRIES as usize, GFP_KERNEL)?,
            cq: Coherent::<CqEntry>::zeroed_slice(dev, RING_ENTRIES as usize, GFP_KERNEL)?,
            ctx_table: Coherent::<CtxDesc>::zeroed_slice(dev, params.contexts as usize, GFP_KERNEL)?,
            shadow: Coherent::<u32>::zeroed_slice(dev, SHADOW_WORDS, GFP_KERNEL)?,
        };
        let rings = Devres::new(dev, Ok::<_, Error>(rings))?;
        let device: &device::Device = dev;
        let device: ARef<device::Device> = device.into();
        Ok(try_pin_init!(Self {
            bar,
            params,
            dev: device,
            rings,
            fence_context: fence::new_context(),
            counters: Counters::new(),
            gate <- new_mutex!(true),
            state <- new_mutex!(RingState {
                sq_tail: 0,
                cq_head: 0,
                next_seqno: 1,
                in_flight: KVec::new(),
                head_since: Instant::now(),
            }),
            space <- new_condvar!(),
            contexts <- new_mutex!([1, 0, 0, 0]),
            live_contexts <- new_mutex!(KVec::new()),
            watchdog <- new_delayed_work!("onpu::watchdog"),
            watchdog_armed: Atomic::new(false),
        }))
    }

    /// Run `f` with the device known to be bound; ENODEV once it is not.
    pub(crate) fn with_bound<R>(&self, f: impl FnOnce(&device::Device<Bound>) -> Result<R>) -> Result<R> {
        let gate = self.gate.lock();
        if !*gate {
            return Err(ENODEV);
        }
        // SAFETY: unbind clears `gate` under its lock before the device is
        // unbound, and we hold the lock until `f` returns.
        let dev = unsafe { self.dev.as_bound() };
        f(dev)
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
        let (sq, cq, ctx) = (r.sq.dma_handle(), r.cq.dma_handle(), r.ctx_table.dma_handle());
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

    /// Claim a free hardware context for a file.
    pub(crate) fn alloc_context(&self) -> Result<u16> {
        let mut used = self.contexts.lock();
        for ctx in 1..self.params.contexts as usize {
            let (word, bit) = (ctx / 64, 1u64 << (ctx % 64));
            if used[word] & bit == 0 {
                used[word] |= bit;
                return Ok(ctx as u16);
            }
        }
        Err(EBUSY)
    }

    /// Point context `ctx` at the page tables rooted at `root` (0: invalid).
    pub(crate) fn set_context(&self, dev: &device::Device<Bound>, ctx: u16, root: u64) -> Result {
        let r = self.rings.access(dev)?;
        let desc = CtxDesc { root: if root != 0 { root | crate::mmu::PTE_VALID } else { 0 }, reserved: 0 };
        dma_write!(r.ctx_table, [try: usize::from(ctx)], desc);
        Ok(())
    }

    /// Give a context back (its page tables go with its owner).
    pub(crate) fn free_context(&self, ctx: u16) {
        // Unhook the tables while the device is bound; after unbind the
        // table is gone with the rest of the device memory.
        let _ = self.with_bound(|dev| self.set_context(dev, ctx, 0));
        let ctx = usize::from(ctx);
        self.contexts.lock()[ctx / 64] &= !(1u64 << (ctx % 64));
    }

    pub(crate) fn register_context(&self, ctx: &Context) -> Result {
        self.live_contexts.lock().push(core::ptr::from_ref(ctx) as usize, GFP_KERNEL)?;
        Ok(())
    }

    pub(crate) fn unregister_context(&self, ctx: &Context) {
        let addr = core::ptr::from_ref(ctx) as usize;
        self.live_contexts.lock().retain(|a| *a != addr);
    }

    /// Queue `job`, waiting for ring space; its fence signals when it ends.
    /// `publish` runs under the ring lock once the job's fence exists and
    /// before the device can see the job (reservation objects, syncobjs).
    pub(crate) fn submit(self: &Arc<Self>, mut make: impl FnMut(u64) -> Result<Arc<Job>>) -> Result<Arc<Job>> {
        loop {
            let job = self.with_bound(|dev| {
                let bar = self.bar.access(dev)?;
                let rings = self.rings.access(dev)?;
                let mut st = self.state.lock();
                if st.in_flight.len() >= RING_ENTRIES as usize {
                    return Ok(None);
                }
                let job = make(st.next_seqno)?;
                st.in_flight.reserve(1, GFP_KERNEL)?;
                st.next_seqno += 1;
                let slot = (st.sq_tail % RING_ENTRIES) as usize;
                dma_write!(rings.sq, [try: slot], job.sq_entry());
                if st.in_flight.is_empty() {
                    st.head_since = Instant::now();
                }
                st.in_flight.push(job.clone(), GFP_KERNEL)?;
                let old = st.sq_tail;
                st.sq_tail = st.sq_tail.wrapping_add(1);
                // (The page's indices are constants in range; ring if that fails.)
                if self.needs_doorbell(rings, st.sq_tail, old).unwrap_or(true) {
                    self.counters.doorbells.add(1, Relaxed);
                    // writel orders the entry (coherent memory) before the doorbell.
                    bar.write32(st.sq_tail, DOORBELL);
                }
                self.counters.submitted.add(1, Relaxed);
                Ok(Some(job))
            })?;
            if let Some(job) = job {
                self.arm_watchdog(WATCHDOG_PERIOD_MS);
                return Ok(job);
            }
            // The ring is full: wait for a completion, then retry.
            let mut st = self.state.lock();
            while st.in_flight.len() >= RING_ENTRIES as usize {
                if self.space.wait_interruptible(&mut st) {
                    return Err(ERESTARTSYS);
                }
            }
        }
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
        // The entry before the tail that publishes it.
        smp_wmb();
        dma_write!(rings.shadow, [try: SHADOW_SQ_TAIL], tail);
        // The tail before the event read, against the CP's event write
        // before its tail read: one of the two sees the other.
        smp_mb();
        let event: u32 = dma_read!(rings.shadow, [try: SHADOW_SQ_EVENT]);
        Ok(tail.wrapping_sub(event).wrapping_sub(1) < tail.wrapping_sub(old))
    }

    /// End the oldest job with `outcome` and signal its fence. The job goes
    /// to `ended`, which the caller drops after letting go of the ring lock:
    /// the last reference to a job may be the last one to its file's
    /// context, whose teardown takes the gate (which nests outside `state`).
    fn retire_head(&self, st: &mut RingState, outcome: Outcome, ended: &mut Ended) {
        if st.in_flight.is_empty() {
            return;
        }
        let Ok(job) = st.in_flight.remove(0) else { return };
        let busy = st.head_since.elapsed();
        st.head_since = Instant::now();
        self.counters.completed.add(1, Relaxed);
        if outcome.status != uapi::DRM_ONPU_JOB_OK {
            self.counters.failed.add(1, Relaxed);
        }
        job.retire(outcome, busy);
        ended.keep(job);
    }

    /// Drain new completion records (IRQ thread, watchdog).
    fn drain(&self, dev: &device::Device<Bound>) -> Result {
        let bar = self.bar.access(dev)?;
        let rings = self.rings.access(dev)?;
        let mut ended = Ended::new();
        let mut st = self.state.lock();
        ended.reserve(st.in_flight.len());
        let mut progressed = false;
        loop {
            let slot = (st.cq_head % RING_ENTRIES) as usize;
            // The device writes 1 in its first pass over the ring, 0 in
            // the second, and so on.
            let phase = u32::from((st.cq_head / RING_ENTRIES) % 2 == 0);
            let rec: CqEntry = dma_read!(rings.cq, [try: slot]);
            if rec.flags & 1 != phase {
                break;
            }
            st.cq_head = st.cq_head.wrapping_add(1);
            progressed = true;
            let pos = st.in_flight.iter().position(|j| (j.seqno, j.context) == (rec.seqno, rec.context));
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
            // The device ends jobs in ring order: a record for a later job
            // means the earlier ones ended and their records were lost or
            // garbled. Their outcome is unknown: fail them.
            for _ in 0..pos {
                if let Some(lost) = st.in_flight.first() {
                    dev_warn!(dev, "the completion record of job {} was lost: failing it\n", lost.seqno);
                }
                self.retire_head(&mut st, Outcome::aborted(STATUS_ABORTED), &mut ended);
            }
            let outcome = Outcome::from_device(rec.status, rec.fault_addr, rec.cycles);
            self.retire_head(&mut st, outcome, &mut ended);
        }
        if progressed {
            if self.uses_shadow() {
                // The CP reads the head from the page when it looks for
                // room; it never waits for room (at most RING_ENTRIES jobs
                // are in flight), so no register write is needed.
                dma_write!(rings.shadow, [try: SHADOW_CQ_HEAD], st.cq_head);
            } else {
                bar.write32(st.cq_head, CQ_HEAD);
            }
            drop(st);
            self.space.notify_all();
        }
        Ok(())
    }

    /// Reset the device and bring it back: the oldest job, when `guilty`
    /// says so, ends with `guilty`'s outcome; the jobs queued behind it go
    /// back into the ring in their order.
    fn recover(&self, dev: &device::Device<Bound>, st: &mut RingState, guilty: Option<Outcome>, ended: &mut Ended) -> Result {
        let bar = self.bar.access(dev)?;
        let rings = self.rings.access(dev)?;
        ended.reserve(1);
        self.counters.resets.add(1, Relaxed);
        let reset = hw::reset(dev, bar);
        if let Some(outcome) = guilty {
            self.retire_head(st, outcome, ended);
        }
        if let Err(e) = reset {
            // The device is gone for good: nothing queued will ever run.
            self.cancel_all(st, ended);
            return Err(e);
        }
        // The device restarts at index 0 of both rings; stale records of
        // the previous pass must not look new.
        for slot in 0..RING_ENTRIES as usize {
            dma_write!(rings.cq, [try: slot], CqEntry::default());
        }
        st.cq_head = 0;
        st.sq_tail = 0;
        for job in st.in_flight.iter() {
            let slot = (st.sq_tail % RING_ENTRIES) as usize;
            dma_write!(rings.sq, [try: slot], job.sq_entry());
            st.sq_tail += 1;
        }
        st.head_since = Instant::now();
        self.start(dev, st.sq_tail)?;
        if st.sq_tail != 0 {
            self.counters.doorbells.add(1, Relaxed);
            bar.write32(st.sq_tail, DOORBELL);
        }
        dev_info!(dev, "NPU reset, {} queued job(s) resubmitted\n", st.in_flight.len());
        Ok(())
    }

    /// End every queued job as cancelled (device gone or reset failed).
    fn cancel_all(&self, st: &mut RingState, ended: &mut Ended) {
        ended.reserve(st.in_flight.len());
        while !st.in_flight.is_empty() {
            self.retire_head(st, Outcome::canceled(), ended);
        }
        self.space.notify_all();
    }

    fn arm_watchdog(self: &Arc<Self>, ms: u32) {
        if self.watchdog_armed.xchg(true, Relaxed) {
            return;
        }
        if workqueue::system_long().enqueue_delayed(self.clone(), msecs_to_jiffies(ms)).is_err() {
            self.watchdog_armed.store(false, Relaxed);
        }
    }

    /// One watchdog pass: pick up completions whose interrupt got lost,
    /// and reset the device when the oldest job overran its timeout.
    fn watchdog_pass(&self) -> Result<bool> {
        self.with_bound(|dev| {
            let bar = self.bar.access(dev)?;
            // A lost message leaves JOB_DONE pending, which would suppress
            // every later one: acknowledge before draining.
            bar.write32(IRQ_JOB_DONE, IRQ_ACK);
            self.drain(dev)?;
            let mut ended = Ended::new();
            let mut st = self.state.lock();
            let Some(head) = st.in_flight.first() else { return Ok(false) };
            let limit = Delta::from_millis(i64::from(head.timeout_ms));
            if st.head_since.elapsed() > limit {
                dev_warn!(dev, "job {} ran past its {} ms timeout: resetting the NPU\n", head.seqno, head.timeout_ms);
                let _ = self.recover(dev, &mut st, Some(Outcome::timed_out()), &mut ended);
            }
            Ok(!st.in_flight.is_empty())
        })
    }

    /// Unbind: no more jobs reach the device; every queued one is cancelled
    /// and the watchdog is given time to finish.
    pub(crate) fn shut_down(&self, dev: &device::Device<Bound>) {
        *self.gate.lock() = false;
        if let Ok(bar) = self.bar.access(dev) {
            hw::quiesce(bar);
        }
        let mut ended = Ended::new();
        self.cancel_all(&mut self.state.lock(), &mut ended);
        drop(ended);
        // Open files outlive the binding: their buffer objects must not stay
        // DMA-mapped for a device that is gone. No mapping is in progress
        // (the gate is closed) and none starts again.
        for &addr in self.live_contexts.lock().iter() {
            // SAFETY: a listed context is alive while the list lock is held
            // (its drop unlists it under the lock first).
            let ctx = unsafe { &*(addr as *const Context) };
            ctx.release_dma();
        }
        // The watchdog sees the closed gate and does not re-arm; it runs at
        // most one period from now.
        let mut waited = 0;
        while self.watchdog_armed.load(Relaxed) && waited < 10 * WATCHDOG_PERIOD_MS {
            kernel::time::delay::fsleep(Delta::from_millis(5));
            waited += 5;
        }
    }

    /// Debugfs: the device-wide counters.
    pub(crate) fn write_counters(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let c = &self.counters;
        writeln!(out, "jobs_submitted: {}", c.submitted.load(Relaxed))?;
        writeln!(out, "jobs_completed: {}", c.completed.load(Relaxed))?;
        writeln!(out, "jobs_failed: {}", c.failed.load(Relaxed))?;
        writeln!(out, "resets: {}", c.resets.load(Relaxed))?;
        writeln!(out, "bogus_completions: {}", c.bogus_completions.load(Relaxed))?;
        writeln!(out, "doorbells: {}", c.doorbells.load(Relaxed))?;
        writeln!(out, "bos_live: {}", crate::gem::LIVE_BOS.load(Relaxed))?;
        writeln!(out, "bo_bytes_live: {}", crate::gem::LIVE_BO_BYTES.load(Relaxed))
    }

    /// Debugfs: the ring indices and the queued jobs.
    pub(crate) fn describe(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let st = self.state.lock();
        writeln!(out, "sq_tail: {}\ncq_head: {}\nnext_seqno: {}", st.sq_tail, st.cq_head, st.next_seqno)?;
        writeln!(out, "in_flight: {} (head running for {} us)", st.in_flight.len(), st.head_since.elapsed().as_micros_ceil())?;
        for job in st.in_flight.iter() {
            writeln!(out, "  job {} context {} cmdbuf {:#x}+{} timeout {} ms", job.seqno, job.context, job.cmdbuf, job.size, job.timeout_ms)?;
        }
        Ok(())
    }

    /// Debugfs: reset the device now, resubmitting everything queued.
    pub(crate) fn force_reset(&self) -> Result {
        self.with_bound(|dev| {
            let mut ended = Ended::new();
            let mut st = self.state.lock();
            self.recover(dev, &mut st, None, &mut ended)
        })
    }
}

impl WorkItem for Engine {
    type Pointer = Arc<Engine>;

    fn run(this: Arc<Engine>) {
        let busy = this.watchdog_pass().unwrap_or(false);
        this.watchdog_armed.store(false, Relaxed);
        if busy {
            this.arm_watchdog(WATCHDOG_PERIOD_MS);
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
        let Ok(bar) = self.engine.bar.access(dev) else {
            return IrqReturn::None;
        };
        // Register reads are synchronous round trips to the device: only the
        // error vector, where a halt must be told apart, pays for one. The
        // job vector's only cause is JOB_DONE.
        let pending = if self.causes & IRQ_DEVICE_ERROR != 0 { bar.read32(IRQ_STATUS) & self.causes } else { 0 };
        // Acknowledge first, then drain: a completion landing after the
        // drain raises a new message.
        bar.write32(self.causes, IRQ_ACK);
        if self.engine.drain(dev).is_err() {
            return IrqReturn::None;
        }
        if pending & IRQ_DEVICE_ERROR != 0 {
            dev_err!(dev, "the NPU halted (STATUS {:#x}): resetting it\n", bar.read32(STATUS));
            let mut ended = Ended::new();
            let mut st = self.engine.state.lock();
            let _ = self.engine.recover(dev, &mut st, Some(Outcome::aborted(STATUS_ABORTED)), &mut ended);
        }
        IrqReturn::Handled
    }
}
