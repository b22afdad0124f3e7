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
    sync::{aref::ARef, atomic::Relaxed, Arc, Mutex, SetOnce},
    time::{msecs_to_jiffies, Delta, Jiffies},
    types::ScopeGuard,
    uaccess::UserSlice,
};

use crate::context::Context;
use crate::drv::OnpuDevice;
use crate::engine::{SqEntry, JOB_TIMEOUT_MS};
use crate::fence::{self, Access, DriverFence, RingContext};
use crate::file::{File, Queue, Usage};
use crate::gem::{self, BoObject};
use crate::uapi;

/// How a job ended, as WAIT reports it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) status: u32,
    pub(crate) error: i32,
    pub(crate) fault_addr: u64,
    pub(crate) cycles: u32,
}

impl Outcome {
    pub(crate) fn from_device(status: u32, fault_addr: u64, cycles: u32) -> Self {
        let error = if status == 0 { 0 } else { EIO.to_errno() };
        Self { status, error, fault_addr, cycles }
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
    pub(crate) context: u16,
    pub(crate) cmdbuf: u64,
    pub(crate) size: u32,
    pub(crate) timeout_ms: u32,
    pub(crate) fence: DriverFence,
    outcome: SetOnce<Outcome>,
    /// Keeps the page tables (and the hardware context) alive while the
    /// device may walk them. None for the kernel's own jobs.
    _vm: Option<Arc<Context>>,
    /// The objects the job uses (the command buffer last), held until it
    /// ended and then let go of by the release work, outside the
    /// signalling path (so a reaped-late job pins no memory).
    #[pin]
    bos: Mutex<KVec<ARef<BoObject>>>,
    /// Where the job's device time is accounted (fdinfo).
    usage: Option<Arc<Usage>>,
    /// The queue whose count of jobs not yet ended includes this one.
    queue: Option<Arc<Queue>>,
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
                context,
                cmdbuf,
                size,
                timeout_ms: JOB_TIMEOUT_MS,
                fence: fences.new_fence(fence_seqno, GFP_KERNEL)?,
                outcome: SetOnce::new(),
                _vm: None,
                bos <- new_mutex!(KVec::new()),
                usage: None,
                queue: None,
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn sq_entry(&self) -> SqEntry {
        SqEntry { seqno: self.seqno, cmdbuf: self.cmdbuf, size: self.size, context: self.context, ..Default::default() }
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
        if let Some(queue) = &self.queue {
            queue.active.fetch_sub(1u32, Relaxed);
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
    pub(crate) fn wait(&self, jiffies: Jiffies) -> Result<Option<Outcome>> {
        if let Some(o) = self.outcome() {
            return Ok(Some(o));
        }
        if jiffies > 0 {
            self.fence.wait_timeout(true, jiffies)?;
        }
        Ok(self.outcome())
    }
}

/// The user's job description, checked field by field.
struct Request {
    queue: Arc<Queue>,
    cmdbuf: ARef<BoObject>,
    cmdbuf_offset: u64,
    size: u32,
    timeout_ms: u32,
    bos: KVec<(ARef<BoObject>, Access)>,
    in_fences: KVec<ARef<Fence>>,
    out_syncobjs: KVec<SyncObj>,
}

/// Largest stride of a SUBMIT array: an element of more than a page is not
/// one this driver knows (E2BIG), and the bound keeps the checks short.
const MAX_STRIDE: u32 = 4096;

/// Read the elements of a user array of `size`-byte structures (`count` at
/// most `max`): each element's first `size` bytes, its bytes past them
/// checked to be zero. EINVAL for a short stride or too many elements,
/// E2BIG for non-zero trailing bytes, EFAULT for a bad pointer. With
/// `count` 0 nothing else is looked at.
fn read_array(arr: &uapi::drm_onpu_obj_array, size: usize, max: u32) -> Result<KVec<u8>> {
    // (An empty array needs no stride: zeroed arrays are empty.)
    if arr.count == 0 {
        return Ok(KVec::new());
    }
    if arr.count > max || (arr.stride as usize) < size {
        return Err(EINVAL);
    }
    let count = arr.count as usize;
    let mut out = KVec::with_capacity(count * size, GFP_KERNEL)?;
    if arr.stride > MAX_STRIDE {
        return Err(E2BIG);
    }
    let stride = arr.stride as usize;
    let base = usize::try_from(arr.array).map_err(|_| EFAULT)?;
    // count <= 256 and stride <= 4096: at most 1 MiB, read in one go.
    let total = count * stride;
    let mut bytes = KVVec::with_capacity(total, GFP_KERNEL)?;
    UserSlice::new(UserPtr::from_addr(base), total).read_all(&mut bytes, GFP_KERNEL)?;
    for elem in bytes.chunks_exact(stride) {
        if elem[size..].iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
        out.extend_from_slice(&elem[..size], GFP_KERNEL)?;
    }
    Ok(out)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// The elements of a &drm_onpu_sync array.
fn read_syncs(arr: &uapi::drm_onpu_obj_array, max: u32) -> Result<KVec<uapi::drm_onpu_sync>> {
    const SIZE: usize = core::mem::size_of::<uapi::drm_onpu_sync>();
    let bytes = read_array(arr, SIZE, max)?;
    let mut syncs = KVec::with_capacity(bytes.len() / SIZE, GFP_KERNEL)?;
    for e in bytes.chunks_exact(SIZE) {
        syncs.push(uapi::drm_onpu_sync { handle: u32_at(e, 0), flags: u32_at(e, 4), point: u64_at(e, 8) }, GFP_KERNEL)?;
    }
    Ok(syncs)
}

fn check(file: &drm::File<File>, req: &uapi::drm_onpu_submit) -> Result<Request> {
    // (DRM_ONPU_SUBMIT_PROFILE is not implemented by this driver yet.)
    if req.flags != 0 || req.pad != 0 {
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
    if req.timeout_ms > JOB_TIMEOUT_MS {
        return Err(EINVAL);
    }
    let queue = file.inner().queue(req.queue_id)?;
    let cmdbuf = gem::lookup(file, req.cmdbuf_handle)?;
    let end = req.cmdbuf_offset.checked_add(u64::from(size)).ok_or(EINVAL)?;
    if end > cmdbuf.size() as u64 {
        return Err(EINVAL);
    }

    const BO_REF: usize = core::mem::size_of::<uapi::drm_onpu_bo_ref>();
    let bo_refs = read_array(&req.bos, BO_REF, uapi::DRM_ONPU_MAX_JOB_BOS)?;
    let mut bos = KVec::with_capacity(bo_refs.len() / BO_REF, GFP_KERNEL)?;
    for e in bo_refs.chunks_exact(BO_REF) {
        let (handle, flags) = (u32_at(e, 0), u32_at(e, 4));
        let access = match flags {
            uapi::DRM_ONPU_BO_READ => Access::Read,
            uapi::DRM_ONPU_BO_WRITE => Access::Write,
            f if f == uapi::DRM_ONPU_BO_READ | uapi::DRM_ONPU_BO_WRITE => Access::Write,
            _ => return Err(EINVAL),
        };
        bos.push((gem::lookup(file, handle)?, access), GFP_KERNEL)?;
    }

    let ins = read_syncs(&req.in_syncs, uapi::DRM_ONPU_MAX_IN_SYNCS)?;
    let mut in_fences = KVec::with_capacity(ins.len(), GFP_KERNEL)?;
    for s in ins.iter() {
        if s.flags & !uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT != 0 {
            return Err(EINVAL);
        }
        // Timeline points and waiting for a fence to be attached come with
        // the asynchronous scheduler.
        if s.point != 0 || s.flags != 0 {
            return Err(EINVAL);
        }
        in_fences.push(SyncObj::find_fence(file, s.handle)?, GFP_KERNEL)?;
    }
    let outs = read_syncs(&req.out_syncs, uapi::DRM_ONPU_MAX_OUT_SYNCS)?;
    let mut out_syncobjs = KVec::with_capacity(outs.len(), GFP_KERNEL)?;
    for s in outs.iter() {
        // WAIT_FOR_SUBMIT is for inputs only.
        if s.flags != 0 || s.point != 0 {
            return Err(EINVAL);
        }
        out_syncobjs.push(SyncObj::lookup(file, s.handle)?, GFP_KERNEL)?;
    }
    let timeout_ms = if req.timeout_ms == 0 { JOB_TIMEOUT_MS } else { req.timeout_ms };
    Ok(Request { queue, cmdbuf, cmdbuf_offset: req.cmdbuf_offset, size, timeout_ms, bos, in_fences, out_syncobjs })
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
pub(crate) fn submit(dev: &OnpuDevice, file: &drm::File<File>, req: &uapi::drm_onpu_submit) -> Result<Arc<Job>> {
    let r = check(file, req)?;
    let this = file.inner();
    let queue = r.queue.clone();
    let ctx = &queue.ctx;
    // Count the job against its queue's limit first (it ends, whatever
    // happens from here, by retire() or by the guard below).
    if queue.active.fetch_add(1, Relaxed) >= uapi::DRM_ONPU_MAX_QUEUE_JOBS {
        queue.active.fetch_sub(1u32, Relaxed);
        return Err(EAGAIN);
    }
    let counted = ScopeGuard::new(|| {
        queue.active.fetch_sub(1u32, Relaxed);
    });
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
    let Request { cmdbuf, size, timeout_ms, bos: uses, out_syncobjs, .. } = r;
    let mut bos = KVec::with_capacity(uses.len() + 1, GFP_KERNEL)?;
    let mut accesses = KVec::with_capacity(uses.len() + 1, GFP_KERNEL)?;
    for (bo, access) in uses.into_iter() {
        accesses.push(access, GFP_KERNEL)?;
        bos.push(bo, GFP_KERNEL)?;
    }
    accesses.push(Access::Read, GFP_KERNEL)?;
    bos.push(cmdbuf, GFP_KERNEL)?;
    let usage = this.usage().clone();
    let job_queue = queue.clone();
    let build = |seqno| {
        // (The fence is made once the job's memory is there, as above.)
        let fence_seqno = seqno;
        Arc::pin_init(
            try_pin_init!(Job {
                seqno,
                context: ctx.index(),
                cmdbuf: cmdbuf_va,
                size,
                timeout_ms,
                fence: engine.fences.new_fence(fence_seqno, GFP_KERNEL)?,
                outcome: SetOnce::new(),
                _vm: Some(ctx.clone()),
                bos <- new_mutex!(bos),
                usage: Some(usage),
                queue: Some(job_queue),
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
        for s in out_syncobjs.iter() {
            s.replace_fence(Some(&job.fence));
        }
        Ok(())
    };
    // Once built, the job's retire() uncounts it.
    let build = |seqno| {
        let job = build(seqno)?;
        counted.dismiss();
        Ok(job)
    };
    engine.submit(build, publish)
}
