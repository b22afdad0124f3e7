// SPDX-License-Identifier: GPL-2.0-only

//! Jobs: what SUBMIT builds, the ring runs and WAIT reaps.
//!
//! A job holds everything the device may touch while it runs: references to
//! its buffer objects and to its file's address space (page tables and
//! hardware context), so neither can go away under the device, even when
//! the file is closed with jobs queued. Its fence signals when it ends; its
//! outcome (status, fault address, cycles) is set just before.

use kernel::{
    dma_fence::Fence,
    drm::{self, gem::BaseObject, syncobj::SyncObj},
    prelude::*,
    new_mutex,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, Mutex, SetOnce,
    },
    time::{msecs_to_jiffies, nsecs_to_jiffies, Delta},
    uaccess::UserSlice,
};

use crate::context::Context;
use crate::drv::OnpuDevice;
use crate::engine::{SqEntry, JOB_TIMEOUT_MS};
use crate::fence::{self, Access, DriverFence, RingContext};
use crate::file::{File, Usage};
use crate::gem::{self, BoObject};
use crate::regs::{CAP_JOB_PROFILE, SQ_FLAG_PROFILE};
use crate::uapi;

/// How a job ended, as WAIT reports it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) status: u32,
    pub(crate) error: i32,
    pub(crate) fault_addr: u64,
    pub(crate) cycles: u32,
    /// The device's profile record (&drm_onpu_job_profile's words), for a
    /// job submitted with DRM_ONPU_SUBMIT_PROFILE that the device ended.
    pub(crate) profile: Option<[u64; 8]>,
}

impl Outcome {
    pub(crate) fn from_device(status: u32, fault_addr: u64, cycles: u32) -> Self {
        let error = if status == 0 { 0 } else { EIO.to_errno() };
        Self { status, error, fault_addr, cycles, profile: None }
    }

    pub(crate) fn timed_out() -> Self {
        Self { status: uapi::DRM_ONPU_JOB_TIMEDOUT, error: ETIMEDOUT.to_errno(), ..Default::default() }
    }

    pub(crate) fn canceled() -> Self {
        Self { status: uapi::DRM_ONPU_JOB_CANCELED, error: ECANCELED.to_errno(), ..Default::default() }
    }

    pub(crate) fn aborted(status: u32) -> Self {
        Self { status, error: EIO.to_errno(), ..Default::default() }
    }

    /// A job that never reached the ring (its fence may have been
    /// published): cancelled, with the error that stopped it.
    pub(crate) fn not_queued(e: Error) -> Self {
        Self { status: uapi::DRM_ONPU_JOB_CANCELED, error: e.to_errno(), ..Default::default() }
    }
}

/// One job.
#[pin_data]
pub(crate) struct Job {
    pub(crate) seqno: u64,
    /// The hardware context (slot) the job runs on: the kernel's for its
    /// own jobs, else set when the job enters the ring (slots.rs).
    slot: Atomic<u32>,
    /// Where in the submission ring the job was last written (its profile
    /// record is in the matching slot).
    ring_slot: Atomic<u32>,
    /// DRM_ONPU_SUBMIT_PROFILE: the device writes a profile record.
    pub(crate) profiled: bool,
    pub(crate) cmdbuf: u64,
    pub(crate) size: u32,
    pub(crate) timeout_ms: u32,
    pub(crate) fence: DriverFence,
    outcome: SetOnce<Outcome>,
    /// Keeps the page tables alive while the device may walk them (and
    /// names the address space the job's slot is bound to). None for the
    /// kernel's own jobs.
    vm: Option<Arc<Context>>,
    /// The objects the job uses (the command buffer last), held until it
    /// ended and then let go of by the release work, outside the
    /// signalling path (so a reaped-late job pins no memory).
    #[pin]
    bos: Mutex<KVec<ARef<BoObject>>>,
    /// Where the job's device time is accounted (fdinfo).
    usage: Option<Arc<Usage>>,
}

impl Job {
    /// A kernel job (the probe self-test) in `context`.
    pub(crate) fn kernel(fences: &RingContext, seqno: u64, context: u16, cmdbuf: u64, size: u32) -> Result<Arc<Self>> {
        // The fence is made in the initialiser, once the job's memory is
        // there: nothing can fail after it, and a fence dropped unsignalled
        // is a bug the kernel crate warns about.
        let fence_seqno = seqno;
        Arc::pin_init(
            try_pin_init!(Self {
                seqno,
                slot: Atomic::new(context.into()),
                ring_slot: Atomic::new(0),
                profiled: false,
                cmdbuf,
                size,
                timeout_ms: JOB_TIMEOUT_MS,
                fence: fences.new_fence(fence_seqno, GFP_KERNEL)?,
                outcome: SetOnce::new(),
                vm: None,
                bos <- new_mutex!(KVec::new()),
                usage: None,
            }),
            GFP_KERNEL,
        )
    }

    /// The job's entry for submission-ring slot `slot`, whose profile
    /// record is at bus address `profile` (the slot is remembered, to read
    /// the record at completion; ring lock held).
    pub(crate) fn sq_entry(&self, slot: usize, profile: u64) -> SqEntry {
        // slot < RING_ENTRIES.
        self.ring_slot.store(slot as u32, Relaxed);
        let (flags, profile) = if self.profiled { (SQ_FLAG_PROFILE, profile) } else { (0, 0) };
        SqEntry { seqno: self.seqno, cmdbuf: self.cmdbuf, size: self.size, context: self.context(), flags, profile, ..Default::default() }
    }

    /// The submission-ring slot the job was last written to.
    pub(crate) fn ring_slot(&self) -> usize {
        self.ring_slot.load(Relaxed) as usize
    }

    /// The hardware context the job runs on (meaningful once in the ring).
    pub(crate) fn context(&self) -> u16 {
        // Only ever set from a u16.
        self.slot.load(Relaxed) as u16
    }

    /// The job enters the ring on `slot` (ring lock held).
    pub(crate) fn set_context(&self, slot: u16) {
        self.slot.store(slot.into(), Relaxed);
    }

    /// The address space of a user job.
    pub(crate) fn vm(&self) -> Option<&Arc<Context>> {
        self.vm.as_ref()
    }

    /// Record how the job ended and signal its fence. On the signalling
    /// path (ring lock held): allocates nothing, frees nothing.
    pub(crate) fn retire(&self, outcome: Outcome, busy: Delta) {
        if !self.outcome.populate(outcome) {
            return;
        }
        if let Some(usage) = &self.usage {
            usage.busy_ns.add(busy.as_nanos().max(0) as u64, Relaxed);
            usage.cycles.add(u64::from(outcome.cycles), Relaxed);
            usage.jobs.add(1, Relaxed);
        }
        if outcome.error != 0 {
            self.fence.set_error(Error::from_errno(outcome.error));
        }
        self.fence.signal();
    }

    /// Let go of the job's objects (after it ended; never on the
    /// signalling path: the last reference frees an object, which takes its
    /// reservation lock).
    pub(crate) fn release(&self) {
        let bos = core::mem::replace(&mut *self.bos.lock(), KVec::new());
        drop(bos);
    }

    /// The outcome once the job has ended.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.outcome.as_ref().copied()
    }

    /// Wait up to `timeout_ns` for the job to end.
    pub(crate) fn wait(&self, timeout_ns: i64) -> Result<Option<Outcome>> {
        if let Some(o) = self.outcome() {
            return Ok(Some(o));
        }
        if timeout_ns > 0 {
            self.fence.wait_timeout(true, nsecs_to_jiffies(timeout_ns as u64).max(1))?;
        }
        Ok(self.outcome())
    }
}

/// The user's job description, checked field by field.
struct Request {
    cmdbuf: ARef<BoObject>,
    cmdbuf_offset: u64,
    size: u32,
    timeout_ms: u32,
    profiled: bool,
    bos: KVec<(ARef<BoObject>, Access)>,
    in_fences: KVec<ARef<Fence>>,
    out_syncobj: Option<SyncObj>,
}

fn check(dev: &OnpuDevice, file: &drm::File<File>, req: &uapi::drm_onpu_submit) -> Result<Request> {
    if req.flags & !uapi::DRM_ONPU_SUBMIT_PROFILE != 0 || req.pad != 0 {
        return Err(EINVAL);
    }
    let profiled = req.flags & uapi::DRM_ONPU_SUBMIT_PROFILE != 0;
    if profiled && dev.engine.params.caps & CAP_JOB_PROFILE == 0 {
        return Err(EINVAL);
    }
    let insn = u64::from(uapi::DRM_ONPU_INSN_SIZE);
    let size = req.cmdbuf_size;
    if size == 0 || u64::from(size) % insn != 0 || size > uapi::DRM_ONPU_MAX_CMDBUF_SIZE {
        return Err(EINVAL);
    }
    if req.cmdbuf_offset % insn != 0 {
        return Err(EINVAL);
    }
    if req.bo_count > uapi::DRM_ONPU_MAX_JOB_BOS || req.in_syncobj_count > uapi::DRM_ONPU_MAX_IN_SYNCOBJS {
        return Err(EINVAL);
    }
    if req.timeout_ms > JOB_TIMEOUT_MS {
        return Err(EINVAL);
    }
    let cmdbuf = gem::lookup(file, req.cmdbuf_handle)?;
    let end = req.cmdbuf_offset.checked_add(u64::from(size)).ok_or(EINVAL)?;
    if end > cmdbuf.size() as u64 {
        return Err(EINVAL);
    }

    let bo_refs = read_words(req.bos, req.bo_count as usize * 2)?;
    let mut bos = KVec::with_capacity(req.bo_count as usize, GFP_KERNEL)?;
    for pair in bo_refs.chunks_exact(2) {
        let (handle, flags) = (pair[0], pair[1]);
        let access = match flags {
            uapi::DRM_ONPU_BO_READ => Access::Read,
            uapi::DRM_ONPU_BO_WRITE => Access::Write,
            f if f == uapi::DRM_ONPU_BO_READ | uapi::DRM_ONPU_BO_WRITE => Access::Write,
            _ => return Err(EINVAL),
        };
        bos.push((gem::lookup(file, handle)?, access), GFP_KERNEL)?;
    }

    let handles = read_words(req.in_syncobjs, req.in_syncobj_count as usize)?;
    let mut in_fences = KVec::with_capacity(handles.len(), GFP_KERNEL)?;
    for &h in handles.iter() {
        in_fences.push(SyncObj::find_fence(file, h)?, GFP_KERNEL)?;
    }
    let out_syncobj = match req.out_syncobj {
        0 => None,
        h => Some(SyncObj::lookup(file, h)?),
    };
    let timeout_ms = if req.timeout_ms == 0 { JOB_TIMEOUT_MS } else { req.timeout_ms };
    Ok(Request { cmdbuf, cmdbuf_offset: req.cmdbuf_offset, size, timeout_ms, profiled, bos, in_fences, out_syncobj })
}

/// Read `count` u32 words from user memory at `addr` (EFAULT when bad).
fn read_words(addr: u64, count: usize) -> Result<KVec<u32>> {
    let mut words = KVec::with_capacity(count, GFP_KERNEL)?;
    if count == 0 {
        return Ok(words);
    }
    let addr = usize::try_from(addr).map_err(|_| EFAULT)?;
    let mut bytes = KVec::new();
    UserSlice::new(UserPtr::from_addr(addr), count * 4).read_all(&mut bytes, GFP_KERNEL)?;
    for w in bytes.chunks_exact(4) {
        words.push(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]), GFP_KERNEL)?;
    }
    Ok(words)
}

/// How long a submitter waits for one foreign dependency before giving up.
const DEPENDENCY_TIMEOUT_MS: u32 = 10_000;

/// Wait for what the job depends on and that the ring does not order by
/// itself: fences from other timelines (other devices, other drivers).
/// Fences of this ring need no wait: the device runs jobs in ring order.
fn wait_dependencies(ring_context: u64, req: &Request) -> Result {
    let jiffies = msecs_to_jiffies(DEPENDENCY_TIMEOUT_MS);
    for f in req.in_fences.iter() {
        if f.context() != ring_context && !f.wait_timeout(true, jiffies)? {
            return Err(ETIMEDOUT);
        }
    }
    Ok(())
}

/// DRM_IOCTL_ONPU_SUBMIT.
/// The job runs in `ctx`, a context of `file`.
pub(crate) fn submit(
    dev: &OnpuDevice,
    file: &drm::File<File>,
    ctx: &Arc<Context>,
    req: &uapi::drm_onpu_submit,
) -> Result<Arc<Job>> {
    let r = check(dev, file, req)?;
    let this = file.inner();
    // The context maps what the job uses on first use (at the file's
    // addresses), before anything is published.
    let used = r.bos.iter().map(|(bo, _)| &**bo);
    this.map_for_job(ctx, Iterator::chain(used, core::iter::once(&*r.cmdbuf)))?;
    let cmdbuf_va = ctx.npu_addr(&r.cmdbuf).ok_or(ENOENT)?.checked_add(r.cmdbuf_offset).ok_or(EINVAL)?;
    let engine = &dev.engine;
    let ring = engine.fences.id();
    wait_dependencies(ring, &r)?;
    // Implicit sync with other timelines: objects shared with (or written
    // by) something that is not this ring. The device reads the command
    // buffer: it is a dependency (and gets the job's fence) like a read
    // object. (Waited for here without locks, so that the wait under each
    // reservation lock at publication is normally short.)
    let uses = r.bos.iter().map(|(bo, a)| (bo, *a));
    for (bo, access) in Iterator::chain(uses, core::iter::once((&r.cmdbuf, Access::Read))) {
        if !fence::wait_foreign(bo.resv(), access, ring, msecs_to_jiffies(DEPENDENCY_TIMEOUT_MS))? {
            return Err(ETIMEDOUT);
        }
    }

    // Everything the job holds, allocated before it has a number.
    let Request { cmdbuf, size, timeout_ms, profiled, bos: uses, out_syncobj, .. } = r;
    let mut bos = KVec::with_capacity(uses.len() + 1, GFP_KERNEL)?;
    let mut accesses = KVec::with_capacity(uses.len() + 1, GFP_KERNEL)?;
    for (bo, access) in uses.into_iter() {
        accesses.push(access, GFP_KERNEL)?;
        bos.push(bo, GFP_KERNEL)?;
    }
    accesses.push(Access::Read, GFP_KERNEL)?;
    bos.push(cmdbuf, GFP_KERNEL)?;
    let usage = this.usage().clone();
    let build = |seqno| {
        // (The fence is made once the job's memory is there, as above.)
        let fence_seqno = seqno;
        Arc::pin_init(
            try_pin_init!(Job {
                seqno,
                slot: Atomic::new(0),
                ring_slot: Atomic::new(0),
                profiled,
                cmdbuf: cmdbuf_va,
                size,
                timeout_ms,
                fence: engine.fences.new_fence(fence_seqno, GFP_KERNEL)?,
                outcome: SetOnce::new(),
                vm: Some(ctx.clone()),
                bos <- new_mutex!(bos),
                usage: Some(usage),
            }),
            GFP_KERNEL,
        )
    };
    // Publish the fence before the device can see the job, so that nobody
    // observes the objects idle while it runs. One reservation lock at a
    // time, outside the ring lock; under it, the foreign fences added since
    // the wait above are waited for too. If this fails half way, the engine
    // signals the fence with the error.
    let publish = |job: &Job| {
        job.bos.lock().iter().zip(accesses.iter()).try_for_each(|(bo, access)| {
            fence::add_fence(bo.resv(), &job.fence, *access, ring, msecs_to_jiffies(DEPENDENCY_TIMEOUT_MS))
        })?;
        if let Some(s) = &out_syncobj {
            s.replace_fence(Some(&job.fence));
        }
        Ok(())
    };
    engine.submit(ctx.id(), build, publish)
}
