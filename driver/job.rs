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
    drm::{
        self,
        gem::BaseObject,
        syncobj::{FenceChain, SyncObj},
    },
    new_mutex,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, Mutex, SetOnce,
    },
    time::{Delta, Jiffies},
    types::ScopeGuard,
    uaccess::UserSlice,
};

use crate::context::Context;
use crate::drv::OnpuDevice;
use crate::engine::{Engine, JOB_TIMEOUT_MS};
use crate::fence::{self, Access, DriverFence, RingContext};
use crate::file::{File, Queue, Usage, Vms, MAX_FILE_JOBS};
use crate::gem::{self, BoObject};
use crate::regs::{CAP_JOB_PROFILE, SQ_FLAG_PROFILE};
use crate::ring::SqEntry;
use crate::sched::{self, DepCallback, DepWaker, Deps, SchedQueue, Unattached};
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
        Self {
            status,
            error,
            fault_addr,
            cycles,
            profile: None,
        }
    }

    pub(crate) fn timed_out() -> Self {
        Self {
            status: uapi::DRM_ONPU_JOB_TIMEDOUT,
            error: ETIMEDOUT.to_errno(),
            ..Default::default()
        }
    }

    pub(crate) fn canceled() -> Self {
        Self {
            status: uapi::DRM_ONPU_JOB_CANCELED,
            error: ECANCELED.to_errno(),
            ..Default::default()
        }
    }

    pub(crate) fn aborted(status: u32) -> Self {
        Self {
            status,
            error: EIO.to_errno(),
            ..Default::default()
        }
    }

    /// A job that never reached the ring (its fence may have been
    /// published): cancelled, with the error that stopped it.
    pub(crate) fn not_queued(e: Error) -> Self {
        Self {
            status: uapi::DRM_ONPU_JOB_CANCELED,
            error: e.to_errno(),
            ..Default::default()
        }
    }
}

/// One job.
#[pin_data]
pub(crate) struct Job {
    /// The file's number of the job (WAIT); 0 for the kernel's own.
    pub(crate) seqno: u64,
    /// The device's number of the job, in ring order (completion records,
    /// address-space lifetime); set when it enters the ring.
    ring_seqno: Atomic<u64>,
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
    /// What the job holds until it is released (its objects, callbacks
    /// and input points), under one lock: one lock and unlock per job at
    /// SUBMIT and at release, the hot path of every job.
    #[pin]
    held: Mutex<Held>,
    /// The file's address spaces, in which the job pinned the mappings of
    /// its objects (unpinned by [`Job::release`]). None for the kernel's
    /// own jobs.
    vms: Option<Arc<Vms>>,
    /// Where the job's device time is accounted (fdinfo).
    usage: Option<Arc<Usage>>,
    /// The queue whose count of jobs not yet ended includes this one.
    queue: Option<Arc<SchedQueue>>,
    /// What the job still waits for before it may enter the ring.
    /// (Set by SUBMIT before any callback is registered, and only for a
    /// job with something to wait for: most have nothing.)
    deps: SetOnce<Arc<Deps>>,
    /// SUBMIT failed after the fence was published (errno): the job never
    /// runs, its fence signals with this error in its queue's order.
    failed: Atomic<i32>,
    /// Its queue was destroyed (or its file closed) while it waited for an
    /// input point with no fence: it never runs, and ends CANCELED
    /// (-ECANCELED) in its queue's order.
    canceled: Atomic<bool>,
    /// The file's number of the queue (0 for the kernel's jobs) and the
    /// submitting thread, for a coredump.
    pub(crate) queue_id: u32,
    pub(crate) pid: i32,
}

/// What a job holds until [`Job::release`]. The lock is taken on the
/// signalling path (the scheduler pass, a coredump's snapshot), so it is
/// never held around an allocation, a reservation lock or a wait; what it
/// holds is dropped outside it.
struct Held {
    /// The objects the job uses (the command buffer last) and how, held
    /// until it ended and then let go of by the release work, outside the
    /// signalling path (so a reaped-late job pins no memory).
    bos: KVec<(ARef<BoObject>, Access)>,
    /// The command buffer object and where the command buffer starts in
    /// it, for a coredump's faulting instruction: referenced on the
    /// signalling path (no allocation), let go of with the other objects.
    cmd: Option<(ARef<BoObject>, u64)>,
    /// The callbacks on the fences it waits for (removed when dropped).
    callbacks: KVec<Pin<KBox<DepCallback>>>,
    /// Input points that had no fence at SUBMIT (WAIT_FOR_SUBMIT).
    unattached: KVec<Unattached>,
}

impl Held {
    fn new(cmd: Option<(ARef<BoObject>, u64)>) -> Self {
        Self {
            bos: KVec::new(),
            cmd,
            callbacks: KVec::new(),
            unattached: KVec::new(),
        }
    }
}

impl Job {
    /// A kernel job (the probe self-test) in `context`.
    pub(crate) fn kernel(
        fences: &RingContext,
        seqno: u64,
        context: u16,
        cmdbuf: u64,
        size: u32,
    ) -> Result<Arc<Self>> {
        // The fence is made in the initialiser, once the job's memory is
        // there: nothing can fail after it, and a fence dropped unsignalled
        // is a bug the kernel crate warns about.
        let fence_seqno = seqno;
        Arc::pin_init(
            try_pin_init!(Self {
                seqno: 0,
                ring_seqno: Atomic::new(0),
                slot: Atomic::new(context.into()),
                ring_slot: Atomic::new(0),
                profiled: false,
                cmdbuf,
                size,
                timeout_ms: JOB_TIMEOUT_MS,
                fence: fences.new_fence(fence_seqno, GFP_KERNEL)?,
                outcome: SetOnce::new(),
                vm: None,
                held <- new_mutex!(Held::new(None)),
                vms: None,
                usage: None,
                queue: None,
                deps: SetOnce::new(),
                failed: Atomic::new(0),
                canceled: Atomic::new(false),
                queue_id: 0,
                pid: 0,
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn ring_seqno(&self) -> u64 {
        self.ring_seqno.load(Relaxed)
    }

    /// The job enters the ring as its `seqno`th job (ring lock held).
    pub(crate) fn set_ring_seqno(&self, seqno: u64) {
        self.ring_seqno.store(seqno, Relaxed);
    }

    /// Fences and points the job still waits for.
    pub(crate) fn deps_left(&self) -> u32 {
        self.deps.as_ref().map_or(0, |d| d.left.load(Relaxed))
    }

    /// The error SUBMIT failed with after publishing the fence.
    pub(crate) fn failed(&self) -> Option<Error> {
        match self.failed.load(Relaxed) {
            0 => None,
            e => Some(Error::from_errno(e)),
        }
    }

    /// Why the job will not run, if it will not: SUBMIT failed after
    /// publishing its fence, or its queue went away while it waited for a
    /// point with no fence (ECANCELED).
    pub(crate) fn not_running(&self) -> Option<Error> {
        self.failed()
            .or_else(|| self.canceled.load(Relaxed).then_some(ECANCELED))
    }

    /// Its queue was destroyed (or its file closed): if an input point
    /// still has no fence, nothing may ever attach one, so the job is
    /// cancelled and stops waiting for those points (it still waits for
    /// the fences it has, so that it ends after them).
    /// The queue's `pending` lock is held; allocates nothing.
    pub(crate) fn cancel_if_unattached(&self) {
        let Some(deps) = self.deps.as_ref() else {
            return;
        };
        if self.attach_dependencies() {
            self.canceled.store(true, Relaxed);
            for u in self
                .held
                .lock()
                .unattached
                .iter_mut()
                .filter(|u| !u.attached)
            {
                // Given up: never looked for again.
                u.attached = true;
                deps.done();
            }
        }
    }

    /// Look for fences attached to the input points that had none; wait
    /// for those found. Whether some are still missing (the scheduler
    /// polls). Scheduler pass: allocates nothing.
    pub(crate) fn attach_dependencies(&self) -> bool {
        let Some(deps) = self.deps.as_ref() else {
            return false;
        };
        let mut missing = false;
        for u in self
            .held
            .lock()
            .unattached
            .iter_mut()
            .filter(|u| !u.attached)
        {
            match u.syncobj.fence(u.point) {
                Some(f) => {
                    u.attached = true;
                    if !sched::register(&mut u.cb, &f) {
                        deps.done();
                    }
                }
                None => missing = true,
            }
        }
        missing
    }

    /// The job's entry for submission-ring slot `slot`, whose profile
    /// record is at bus address `profile` (the slot is remembered, to read
    /// the record at completion; ring lock held).
    pub(crate) fn sq_entry(&self, slot: usize, profile: u64) -> SqEntry {
        // slot < RING_ENTRIES.
        self.ring_slot.store(slot as u32, Relaxed);
        let (flags, profile) = if self.profiled {
            (SQ_FLAG_PROFILE, profile)
        } else {
            (0, 0)
        };
        SqEntry {
            seqno: self.ring_seqno(),
            cmdbuf: self.cmdbuf,
            size: self.size,
            context: self.context(),
            flags,
            profile,
            ..Default::default()
        }
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

    /// The priority of the job's queue (0 for the kernel's jobs).
    pub(crate) fn priority(&self) -> u32 {
        self.queue.as_ref().map_or(0, |q| q.priority)
    }

    /// A reference on the command buffer object, and the offset of the
    /// command buffer in it, until the job is released. Signalling path:
    /// takes a reference, allocates nothing; the caller drops it outside.
    pub(crate) fn command_buffer(&self) -> Option<(ARef<BoObject>, u64)> {
        self.held.lock().cmd.clone()
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
            // (User jobs have both a queue and a usage.)
            if let Some(usage) = &self.usage {
                usage.active.fetch_sub(1u32, Relaxed);
            }
        }
        if let Some(vm) = &self.vm {
            vm.jobs.fetch_sub(1u32, Relaxed);
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
        let held = core::mem::replace(&mut *self.held.lock(), Held::new(None));
        // Their mappings first (unmapped now if no handle is left), while
        // the references keep the objects alive.
        if let Some(vms) = &self.vms {
            vms.unpin(&held.bos);
        }
        // The objects, then the callbacks (none is pending any more: the
        // job ran or was cancelled) and the input syncobjs go, outside the
        // lock.
        drop(held);
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
    profiled: bool,
    bos: KVec<(ARef<BoObject>, Access)>,
    in_fences: KVec<ARef<Fence>>,
    /// Input points without a fence yet (WAIT_FOR_SUBMIT).
    unattached: KVec<(SyncObj, u64)>,
    /// Outputs: the syncobj, its timeline point (0: binary) and the chain
    /// node for the point, allocated now.
    outs: KVec<(SyncObj, u64, Option<FenceChain>)>,
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
        syncs.push(
            uapi::drm_onpu_sync {
                handle: u32_at(e, 0),
                flags: u32_at(e, 4),
                point: u64_at(e, 8),
            },
            GFP_KERNEL,
        )?;
    }
    Ok(syncs)
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
    if req.timeout_ms > JOB_TIMEOUT_MS {
        return Err(EINVAL);
    }
    let queue = file.inner().queue(req.queue_id)?;
    let cmdbuf = gem::lookup(file, req.cmdbuf_handle)?;
    let end = req
        .cmdbuf_offset
        .checked_add(u64::from(size))
        .ok_or(EINVAL)?;
    if end > cmdbuf.size() as u64 {
        return Err(EINVAL);
    }

    const BO_REF: usize = core::mem::size_of::<uapi::drm_onpu_bo_ref>();
    let bo_refs = read_array(&req.bos, BO_REF, uapi::DRM_ONPU_MAX_JOB_BOS)?;
    // (With room for the command buffer, which SUBMIT adds.)
    let mut bos = KVec::with_capacity(bo_refs.len() / BO_REF + 1, GFP_KERNEL)?;
    for e in bo_refs.chunks_exact(BO_REF) {
        let (handle, flags) = (u32_at(e, 0), u32_at(e, 4));
        let access = match flags {
            uapi::DRM_ONPU_BO_READ => Access::Read,
            uapi::DRM_ONPU_BO_WRITE => Access::Write,
            f if f == uapi::DRM_ONPU_BO_READ | uapi::DRM_ONPU_BO_WRITE => Access::Write,
            _ => return Err(EINVAL),
        };
        let bo = gem::lookup(file, handle)?;
        // The NPU cannot write a READ_ONLY object: saying it will is a bug.
        if access == Access::Write && bo.read_only() {
            return Err(EACCES);
        }
        bos.push((bo, access), GFP_KERNEL)?;
    }

    let ins = read_syncs(&req.in_syncs, uapi::DRM_ONPU_MAX_IN_SYNCS)?;
    let mut in_fences = KVec::with_capacity(ins.len(), GFP_KERNEL)?;
    let mut unattached = KVec::new();
    for s in ins.iter() {
        if s.flags & !uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT != 0 {
            return Err(EINVAL);
        }
        let syncobj = SyncObj::lookup(file, s.handle)?;
        match syncobj.fence(s.point) {
            Some(f) => in_fences.push(f, GFP_KERNEL)?,
            // The job waits (in the scheduler) until one is attached.
            None if s.flags & uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT != 0 => {
                unattached.push((syncobj, s.point), GFP_KERNEL)?
            }
            None => return Err(EINVAL),
        }
    }
    let out_syncs = read_syncs(&req.out_syncs, uapi::DRM_ONPU_MAX_OUT_SYNCS)?;
    let mut outs = KVec::with_capacity(out_syncs.len(), GFP_KERNEL)?;
    for s in out_syncs.iter() {
        // WAIT_FOR_SUBMIT is for inputs only.
        if s.flags != 0 {
            return Err(EINVAL);
        }
        let syncobj = SyncObj::lookup(file, s.handle)?;
        let chain = match s.point {
            0 => None,
            // A timeline only goes forward.
            p if p <= syncobj.last_point() => return Err(EINVAL),
            _ => Some(FenceChain::new()?),
        };
        outs.push((syncobj, s.point, chain), GFP_KERNEL)?;
    }
    let timeout_ms = if req.timeout_ms == 0 {
        JOB_TIMEOUT_MS
    } else {
        req.timeout_ms
    };
    Ok(Request {
        queue,
        cmdbuf,
        cmdbuf_offset: req.cmdbuf_offset,
        size,
        timeout_ms,
        profiled,
        bos,
        in_fences,
        unattached,
        outs,
    })
}

/// A callback for one dependency of a job, not registered yet; the job's
/// dependency count is made with the first.
fn new_callback(
    deps: &mut Option<Arc<Deps>>,
    engine: &Arc<Engine>,
) -> Result<Pin<KBox<DepCallback>>> {
    let deps = match deps {
        Some(d) => d.clone(),
        None => deps.insert(Deps::new(engine.clone())?).clone(),
    };
    KBox::pin_init(DepCallback::new(DepWaker(deps)), GFP_KERNEL)
}

/// DRM_IOCTL_ONPU_SUBMIT: check, take references, allocate, publish the
/// job's fence, append the job to its queue and let the scheduler move it
/// into the ring when its dependencies have signalled. Never waits for a
/// fence.
pub(crate) fn submit(
    dev: &OnpuDevice,
    file: &drm::File<File>,
    req: &uapi::drm_onpu_submit,
) -> Result<Arc<Job>> {
    // Jobs that ended since the last submission: their objects go now, in
    // process context, rather than in the release work.
    dev.engine.release_retired_and_schedule();
    // A wedged device runs nothing any more (Documentation/uapi/onpu.rst).
    if dev.engine.is_wedged() {
        return Err(EIO);
    }
    // A device with only the kernel's hardware context runs no user job.
    if dev.engine.params.contexts <= 1 {
        return Err(EBUSY);
    }
    let r = check(dev, file, req)?;
    let this = file.inner();
    // (Borrowed where the job does not keep a reference: every clone is an
    // atomic on the path of every job.)
    let queue: &Arc<Queue> = &r.queue;
    let sq = &queue.sched;
    let ctx = &queue.ctx;
    // Count the job against its queue's limit first (it is uncounted when
    // it ends, by retire(), or by the guard below until it exists).
    if sq.active.fetch_add(1u32, Relaxed) >= uapi::DRM_ONPU_MAX_QUEUE_JOBS {
        sq.active.fetch_sub(1u32, Relaxed);
        return Err(EAGAIN);
    }
    // And against its file's (all its queues, destroyed ones too).
    let file_usage = this.usage();
    if file_usage.active.fetch_add(1u32, Relaxed) >= MAX_FILE_JOBS {
        file_usage.active.fetch_sub(1u32, Relaxed);
        sq.active.fetch_sub(1u32, Relaxed);
        return Err(EAGAIN);
    }
    let counted = ScopeGuard::new(|| {
        sq.active.fetch_sub(1u32, Relaxed);
        file_usage.active.fetch_sub(1u32, Relaxed);
    });
    let engine = &dev.engine;
    let own = sq.fences.id();

    // Everything the job holds, and the callbacks on what it waits for
    // that is known now, allocated before it has a fence.
    let queue_id = queue.id;
    let Request {
        cmdbuf,
        cmdbuf_offset,
        size,
        timeout_ms,
        profiled,
        mut bos,
        in_fences,
        unattached,
        outs,
        ..
    } = r;
    // The device reads the command buffer: a dependency (and it gets the
    // job's fence) like a read object. (check() left room for it.)
    let cmd = (cmdbuf.clone(), cmdbuf_offset);
    bos.push((cmdbuf, Access::Read), GFP_KERNEL)?;
    // Map (and pin) what the job uses in its queue's context, on first use,
    // at the file's addresses, before anything is published. The mappings
    // stay pinned (closing the handles unmaps nothing) until the job is
    // released; the guard unpins them if SUBMIT fails before that.
    let vms = this.vms();
    let cmdbuf_va = vms.map_for_job(ctx, &bos)?;
    let bos = ScopeGuard::new_with_data(bos, |bos| vms.unpin(&bos));
    let cmdbuf_va = cmdbuf_va.checked_add(cmdbuf_offset).ok_or(EINVAL)?;
    let mut deps = None;
    // Fences of this queue need no wait: its jobs enter the ring in order.
    let mut waits = KVec::with_capacity(in_fences.len(), GFP_KERNEL)?;
    for f in in_fences
        .into_iter()
        .filter(|f| f.context() != own && !f.is_signaled())
    {
        waits.push((f, new_callback(&mut deps, engine)?), GFP_KERNEL)?;
    }
    let mut pending_points = KVec::with_capacity(unattached.len(), GFP_KERNEL)?;
    for (syncobj, point) in unattached.into_iter() {
        pending_points.push(
            Unattached {
                syncobj,
                point,
                cb: new_callback(&mut deps, engine)?,
                attached: false,
            },
            GFP_KERNEL,
        )?;
    }
    let seqno = this.next_seqno();

    // From the fence number to the queue's list: one submitter per queue,
    // so the list is in fence order.
    let mut next = sq.submit.lock();
    let fence_seqno = *next;
    let (job_queue, job_vms, usage, timeline) =
        (sq.clone(), vms.clone(), this.usage().clone(), &sq.fences);
    let job = Arc::pin_init(
        try_pin_init!(Job {
            seqno,
            ring_seqno: Atomic::new(0),
            slot: Atomic::new(0),
            ring_slot: Atomic::new(0),
            profiled,
            cmdbuf: cmdbuf_va,
            size,
            timeout_ms,
            // (The fence is made once the job's memory is there: nothing
            // fails after it but publication, handled below.)
            fence: timeline.new_fence(fence_seqno, GFP_KERNEL)?,
            outcome: SetOnce::new(),
            vm: Some(ctx.clone()),
            held <- new_mutex!(Held::new(Some(cmd))),
            vms: Some(job_vms),
            usage: Some(usage),
            queue: Some(job_queue),
            deps: SetOnce::new(),
            failed: Atomic::new(0),
            canceled: Atomic::new(false),
            queue_id,
            pid: kernel::current!().pid(),
        }),
        GFP_KERNEL,
    )?;
    // The number is spent; the job's retire() uncounts it from now on,
    // and its release() unpins its objects (handed to it below, whatever
    // happens: nothing returns early before that).
    *next += 1;
    counted.dismiss();
    let bos = bos.dismiss();
    // Counted against its context until it ends (CONTEXT_DESTROY).
    ctx.jobs.fetch_add(1u32, Relaxed);

    // Publish the fence before the job can run, so that nobody sees the
    // objects idle while it does: per object, under its reservation lock,
    // collect the fences of other timelines the job must follow and add
    // its own (no fence added in between is missed). Then the outputs.
    // (The job's lock is not held here: publishing allocates and takes
    // reservation locks.)
    let published = (|| -> Result<KVec<Pin<KBox<DepCallback>>>> {
        for (bo, access) in bos.iter() {
            for f in fence::publish(bo.resv(), &job.fence, *access, own)?.into_iter() {
                waits.push((f, new_callback(&mut deps, engine)?), GFP_KERNEL)?;
            }
        }
        // Where the job keeps its callbacks.
        Ok(KVec::with_capacity(waits.len(), GFP_KERNEL)?)
    })();
    for (syncobj, point, chain) in outs.into_iter() {
        match chain {
            Some(chain) => syncobj.add_point(chain, &job.fence, point),
            None => syncobj.replace_fence(Some(&job.fence)),
        }
    }
    let mut callbacks = KVec::new();
    let mut unattached = KVec::new();
    match published {
        Ok(mut registered) => {
            // Count first, then register: a callback that fires at once
            // counts down from the full number. (No count: nothing to wait
            // for.)
            if let Some(deps) = &deps {
                let total = waits.len() + pending_points.len();
                deps.left.store(total as u32, Relaxed);
                job.deps.populate(deps.clone());
            }
            for (f, mut cb) in waits.into_iter() {
                // (`deps` exists: the callback was made with it.)
                if !sched::register(&mut cb, &f) {
                    if let Some(deps) = &deps {
                        deps.done();
                    }
                }
                // Within the capacity; the job keeps the callback until it
                // is released (dropping it removes it from the fence).
                let _ = registered.push_within_capacity(cb);
            }
            callbacks = registered;
            unattached = pending_points;
        }
        Err(e) => {
            // Part of it may be published: the fence signals with the
            // error, in the queue's order (the scheduler retires it).
            job.failed.store(e.to_errno(), Relaxed);
        }
    }
    // What the job holds, in one go (moves, no allocation), before the
    // scheduler can see it.
    {
        let mut held = job.held.lock();
        held.bos = bos;
        held.callbacks = callbacks;
        held.unattached = unattached;
    }
    let queued = engine.submit_job(sq, job.clone());
    drop(next);
    match queued {
        Ok(false) => {}
        Ok(true) => engine.run_scheduler(),
        Err(job) => {
            // Unbind took the lists: every earlier job was cancelled.
            {
                let _signalling = fence::Signalling::begin();
                job.retire(Outcome::canceled(), Delta::ZERO);
            }
            job.release();
            return Err(ENODEV);
        }
    }
    match job.failed() {
        Some(e) => Err(e),
        None => Ok(job),
    }
}
