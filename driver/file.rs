// SPDX-License-Identifier: GPL-2.0-only

//! Per-open-file state and the ioctls.
//!
//! Every field of every argument is checked: unknown flags and non-zero
//! padding give EINVAL, handles that name nothing ENOENT, bad user pointers
//! EFAULT (Documentation/uapi/onpu.rst lists them per ioctl).

use core::fmt::Write;
use kernel::{
    cred::{capable, Capability},
    drm::{self, gem::BaseObject, print::Printer, timeout_abs_to_jiffies},
    new_mutex,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    transmute::AsBytes,
    uaccess::UserSlice,
};

use crate::context::Context;
use crate::drv::{OnpuDevice, OnpuDriver};
use crate::engine::JOB_TIMEOUT_MS;
use crate::fence::{self, Access};
use crate::gem::{self, BoObject};
use crate::job::{self, Job};
use crate::mmu;
use crate::sched::SchedQueue;
use crate::uapi;
use crate::userptr;

/// Queue priorities of uAPI v1 (DRM_ONPU_PRIORITY_LOW .. _REALTIME).
const NUM_PRIORITIES: u32 = 4;

/// Completed jobs a file may leave unreaped before the oldest are dropped.
const MAX_UNREAPED: usize = 1024;

/// Device usage of one file, for fdinfo.
pub(crate) struct Usage {
    pub(crate) busy_ns: Atomic<u64>,
    pub(crate) cycles: Atomic<u64>,
    pub(crate) jobs: Atomic<u64>,
    /// Jobs of the file that have not ended, in all its queues (destroyed
    /// ones too): at most MAX_FILE_JOBS (EAGAIN), so that creating and
    /// destroying queues cannot pile up jobs, and the memory they hold,
    /// without bound.
    pub(crate) active: Atomic<u32>,
}

/// Most jobs one file may have that have not ended (the ring's size: what
/// a file could have queued before queues existed).
pub(crate) const MAX_FILE_JOBS: u32 = 256;

impl Usage {
    fn new() -> Self {
        Self {
            busy_ns: Atomic::new(0),
            cycles: Atomic::new(0),
            jobs: Atomic::new(0),
            active: Atomic::new(0),
        }
    }
}

/// A job queue of a file (QUEUE_CREATE): the address space its jobs run in,
/// and its side in the scheduler (priority, timeline, pending jobs).
pub(crate) struct Queue {
    pub(crate) id: u32,
    pub(crate) ctx: Arc<Context>,
    pub(crate) sched: Arc<SchedQueue>,
}

impl Drop for Queue {
    fn drop(&mut self) {
        // The scheduler forgets it once its jobs entered the ring (at its
        // next pass: run one, or destroyed queues would pile up in its list
        // while SUBMIT's fast path makes passes rare).
        self.sched.destroy();
        let engine = self.ctx.engine();
        engine.queue_gone(self.sched.priority);
        engine.kick_scheduler();
    }
}

/// The queues of a file, and the id the next one gets.
struct Queues {
    list: KVec<Arc<Queue>>,
    next_id: u32,
}

/// The contexts CONTEXT_CREATE made. Id 0 marks one destroyed while jobs
/// of it had not ended: it stays listed so that closing a handle still
/// unmaps the object from it, until they have.
pub(crate) struct Contexts {
    list: KVec<(u32, Arc<Context>)>,
}

/// The address spaces of a file: its default context and the ones
/// CONTEXT_CREATE made. Shared with the file's jobs, which pin the
/// mappings of the objects they use (see [`Vms::unpin`]): the last one to
/// let go of an object (its last handle or its last job) unmaps it.
#[pin_data]
pub(crate) struct Vms {
    /// The file's default context: it gives every buffer object of the
    /// file its NPU address (the same in all the file's contexts) and
    /// counts the file's handles and the jobs using each object.
    pub(crate) ctx: Arc<Context>,
    /// Contexts made by CONTEXT_CREATE. Also serialises the GEM open and
    /// close callbacks and the jobs' pins with the mapping of objects into
    /// these contexts. Lock order: this, then a context's `vm`.
    #[pin]
    contexts: Mutex<Contexts>,
}

/// State of one open /dev/accel/accelN file.
#[pin_data(PinnedDrop)]
pub(crate) struct File {
    /// The file's address spaces.
    vms: Arc<Vms>,
    /// The file's default context (`vms.ctx`).
    ctx: Arc<Context>,
    usage: Arc<Usage>,
    /// Submitted jobs not yet reaped by WAIT, oldest first.
    #[pin]
    jobs: Mutex<KVec<Arc<Job>>>,
    #[pin]
    queues: Mutex<Queues>,
    /// The number the next job gets (WAIT).
    next_seqno: Atomic<u64>,
}

impl drm::file::DriverFile for File {
    type Driver = OnpuDriver;

    fn open(dev: &OnpuDevice) -> Result<Pin<KBox<Self>>> {
        // (The open file, like a dma-buf exported from one of its
        // objects, pins the module through the driver's file operations.)
        let ctx = Context::new(dev)?;
        let vms_ctx = ctx.clone();
        let vms = Arc::pin_init(
            try_pin_init!(Vms { ctx: vms_ctx, contexts <- new_mutex!(Contexts { list: KVec::new() }) }),
            GFP_KERNEL,
        )?;
        let usage = Arc::new(Usage::new(), GFP_KERNEL)?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                vms,
                ctx,
                usage,
                jobs <- new_mutex!(KVec::new()),
                queues <- new_mutex!(Queues { list: KVec::new(), next_id: 1 }),
                next_seqno: Atomic::new(1),
            }),
            GFP_KERNEL,
        )
    }
}

#[pinned_drop]
impl PinnedDrop for File {
    fn drop(self: Pin<&mut Self>) {
        // Queued jobs keep running: they hold the context and their objects.
        // Ended ones go now (rather than in the release work).
        self.ctx.engine().release_retired();
    }
}

impl Vms {
    /// Map `bos` (the objects a job uses, the command buffer among them)
    /// into `ctx` (a context of this file) at their NPU addresses, where
    /// not mapped yet, pinning their pages on first use, and pin each
    /// mapping for the job until [`Vms::unpin`]: a job of `ctx` is about
    /// to use them. All or nothing. The NPU address of the last one (the
    /// command buffer). -ENOENT when one has no handle in this file any
    /// more.
    pub(crate) fn map_for_job(
        &self,
        ctx: &Context,
        bos: &[(ARef<BoObject>, Access)],
    ) -> Result<u64> {
        // Held so that no handle closes (and unmaps) meanwhile.
        let contexts = self.contexts.lock();
        let mut last = 0;
        for (i, (bo, _)) in bos.iter().enumerate() {
            let pinned = if core::ptr::eq(ctx, &*self.ctx) {
                self.ctx.map_and_pin(bo)
            } else {
                self.ctx.npu_addr(bo).ok_or(ENOENT).and_then(|va| {
                    ctx.map_at(bo, va)?;
                    self.ctx.pin(bo).map(|()| va)
                })
            };
            match pinned {
                Ok(va) => last = va,
                Err(e) => {
                    // Not the failed one: it holds no pin.
                    for (done, _) in &bos[..i] {
                        self.unpin_locked(&contexts, done);
                    }
                    return Err(e);
                }
            }
        }
        Ok(last)
    }

    /// A job that pinned `bos` (map_for_job) is done with them (it ended,
    /// or never got to run): with the last pin of an object whose handles
    /// are all closed, the object is unmapped from every context of the
    /// file. Not on the signalling path (it takes the file's locks and may
    /// touch page tables).
    ///
    /// Every job's release comes here: the count goes down under the
    /// default context's lock alone, and only an object left with neither
    /// handle nor pin takes the file's lock, under which it is looked at
    /// again (an object with neither gains no pin without a new handle, and
    /// the handles change under that lock only).
    pub(crate) fn unpin(&self, bos: &[(ARef<BoObject>, Access)]) {
        for (bo, _) in bos {
            if self.ctx.unpin(bo) {
                let contexts = self.contexts.lock();
                if self.ctx.unreferenced(bo) {
                    self.unmap_everywhere(&contexts, bo);
                }
            }
        }
    }

    fn unpin_locked(&self, contexts: &Contexts, bo: &BoObject) {
        if self.ctx.unpin(bo) {
            self.unmap_everywhere(contexts, bo);
        }
    }

    /// Nothing refers to `bo`'s mapping any more (no handle, no job): every
    /// context of the file unmaps the object: the created ones first, then
    /// the default one, which keeps the pages and the address until the
    /// jobs that may reach them have ended.
    fn unmap_everywhere(&self, contexts: &Contexts, bo: &BoObject) {
        let mut elsewhere = false;
        for (_, c) in contexts.list.iter() {
            elsewhere |= c.unmap_now(bo);
        }
        self.ctx.remove_mapping(bo, elsewhere);
    }

    /// GEM open callback: a new handle of this file on `bo` (its address).
    fn open_bo(&self, bo: &BoObject) -> Result {
        let _contexts = self.contexts.lock();
        self.ctx.open_handle(bo)
    }

    /// GEM close callback: a handle of this file on `bo` closed. With the
    /// last one, unless a job that has not been released uses the object
    /// (then with that job's release), the object is unmapped everywhere.
    fn close_bo(&self, bo: &BoObject) {
        let contexts = self.contexts.lock();
        if self.ctx.close_handle(bo) {
            self.unmap_everywhere(&contexts, bo);
        }
    }
}

impl File {
    pub(crate) fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// A new job number of this file.
    pub(crate) fn next_seqno(&self) -> u64 {
        self.next_seqno.fetch_add(1u64, Relaxed)
    }

    /// A context of this file made by CONTEXT_CREATE (-ENOENT otherwise);
    /// 0 is the file's default context.
    fn find_context(&self, contexts: &Contexts, id: u32) -> Result<Arc<Context>> {
        if id == 0 {
            return Ok(self.ctx.clone());
        }
        contexts
            .list
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, c)| c.clone())
            .ok_or(ENOENT)
    }

    /// The file's address spaces (its jobs hold them).
    pub(crate) fn vms(&self) -> &Arc<Vms> {
        &self.vms
    }

    /// GEM open callback: a new handle of this file on `bo`.
    pub(crate) fn open_bo(&self, bo: &BoObject) -> Result {
        self.vms.open_bo(bo)
    }

    /// GEM close callback: a handle of this file on `bo` closed.
    pub(crate) fn close_bo(&self, bo: &BoObject) {
        self.vms.close_bo(bo)
    }

    /// Forget destroyed contexts whose jobs have all ended.
    fn prune_contexts(contexts: &mut Contexts) -> KVec<Arc<Context>> {
        let mut gone = KVec::new();
        let mut i = 0;
        while i < contexts.list.len() {
            let (id, c) = &contexts.list[i];
            if *id == 0 && c.jobs.load(Relaxed) == 0 {
                if let Ok((_, c)) = contexts.list.remove(i) {
                    c.forget_mappings();
                    // (Dropped by the caller outside the lock; a failed
                    // push only drops it here, which is as good.)
                    let _ = gone.push(c, GFP_NOWAIT);
                }
            } else {
                i += 1;
            }
        }
        gone
    }

    /// DRM_IOCTL_ONPU_CONTEXT_CREATE: a new NPU address space.
    pub(crate) fn context_create(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_context_create,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let this = file.inner();
        let mut contexts = this.vms.contexts.lock();
        let gone = Self::prune_contexts(&mut contexts);
        let list = &mut contexts.list;
        if list.iter().filter(|(i, _)| *i != 0).count() >= uapi::DRM_ONPU_MAX_CONTEXTS as usize {
            return Err(ENOSPC);
        }
        // The lowest free id: at most DRM_ONPU_MAX_CONTEXTS are in use.
        let id = (1..=uapi::DRM_ONPU_MAX_CONTEXTS)
            .find(|id| list.iter().all(|(i, _)| i != id))
            .ok_or(ENOSPC)?;
        list.reserve(1, GFP_KERNEL)?;
        let ctx = Context::new(dev)?;
        list.push_within_capacity((id, ctx)).map_err(|_| ENOMEM)?;
        req.context_id = id;
        drop(contexts);
        drop(gone);
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_CONTEXT_DESTROY: forget a context (-EBUSY while
    /// queues use it); jobs of it that have not ended keep it alive.
    pub(crate) fn context_destroy(
        _dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_context_destroy,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.pad != 0 {
            return Err(EINVAL);
        }
        if req.context_id == 0 {
            return Err(ENOENT);
        }
        let this = file.inner();
        let mut contexts = this.vms.contexts.lock();
        let i = contexts
            .list
            .iter()
            .position(|(id, _)| *id == req.context_id)
            .ok_or(ENOENT)?;
        let ctx = contexts.list[i].1.clone();
        if this
            .queues
            .lock()
            .list
            .iter()
            .any(|q| Arc::ptr_eq(&q.ctx, &ctx))
        {
            return Err(EBUSY);
        }
        // Listed as destroyed until its jobs ended, then pruned.
        contexts.list[i].0 = 0;
        let gone = Self::prune_contexts(&mut contexts);
        drop(contexts);
        // Dropped outside the lock: the last reference frees page tables.
        drop(ctx);
        drop(gone);
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_GET_PARAM: one device parameter.
    pub(crate) fn get_param(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_get_param,
        _file: &drm::File<File>,
    ) -> Result<u32> {
        if req.pad != 0 {
            return Err(EINVAL);
        }
        let p = &dev.engine.params;
        req.value = match req.param {
            uapi::drm_onpu_param_DRM_ONPU_PARAM_DEVICE_ID => p.device_id.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_REVISION => p.revision.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_ISA_VERSION => p.isa_version.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_SRAM_SIZE => p.sram_size.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_NUM_CONTEXTS => p.contexts.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_VA_BITS => p.va_bits.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_CAPS => p.caps.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_CLOCK_KHZ => p.clock_khz.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_VA_START => mmu::VA_START,
            uapi::drm_onpu_param_DRM_ONPU_PARAM_VA_END => mmu::VA_END,
            uapi::drm_onpu_param_DRM_ONPU_PARAM_JOB_TIMEOUT_MS => JOB_TIMEOUT_MS.into(),
            uapi::drm_onpu_param_DRM_ONPU_PARAM_NUM_PRIORITIES => NUM_PRIORITIES.into(),
            _ => return Err(EINVAL),
        };
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_BO_CREATE: a new shmem buffer object, its handle and
    /// its NPU address (the GEM open callback reserves it; the first job
    /// using the object maps it).
    pub(crate) fn bo_create(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_bo_create,
        file: &drm::File<File>,
    ) -> Result<u32> {
        let bo = gem::create(dev, req.size, req.flags)?;
        // The handle holds its own reference; ours drops at return.
        let handle = bo.create_handle(file)?;
        req.handle = handle;
        req.size = bo.size() as u64;
        req.npu_addr = file.inner().ctx.npu_addr(&bo).ok_or(EINVAL)?;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_BO_CREATE_USERPTR: a buffer object of the caller's
    /// memory (pinned now), its handle and its NPU address.
    pub(crate) fn bo_create_userptr(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_bo_create_userptr,
        file: &drm::File<File>,
    ) -> Result<u32> {
        let bo = userptr::create(dev, req.user_ptr, req.size, req.flags)?;
        req.handle = bo.create_handle(file)?;
        req.npu_addr = file.inner().ctx.npu_addr(&bo).ok_or(EINVAL)?;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_BO_INFO: size, mmap offset, NPU address and flags.
    pub(crate) fn bo_info(
        _dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_bo_info,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let bo = gem::lookup(file, req.handle)?;
        req.size = bo.size() as u64;
        // No fake offset for an object the CPU may not map.
        req.mmap_offset = if bo.flags() & uapi::DRM_ONPU_BO_NO_MMAP != 0 {
            0
        } else {
            bo.create_mmap_offset()?
        };
        req.npu_addr = file.inner().ctx.npu_addr(&bo).ok_or(ENOENT)?;
        req.bo_flags = bo.flags();
        req.pad = 0;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_QUEUE_CREATE: a new job queue of the file.
    pub(crate) fn queue_create(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_queue_create,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 || req.priority > uapi::DRM_ONPU_PRIORITY_REALTIME {
            return Err(EINVAL);
        }
        // As other drivers do: a priority above every user's needs
        // CAP_SYS_NICE (asked only then: the check is audited).
        if req.priority == uapi::DRM_ONPU_PRIORITY_REALTIME && !capable(Capability::SYS_NICE) {
            return Err(EACCES);
        }
        let this = file.inner();
        // Held until the queue is listed: CONTEXT_DESTROY sees it (EBUSY).
        // Lock order: contexts, then queues.
        let contexts = this.vms.contexts.lock();
        // 0 is the file's default context (libnpu's first queue runs there).
        let ctx = this.find_context(&contexts, req.context_id)?;
        let mut queues = this.queues.lock();
        if queues.list.len() >= uapi::DRM_ONPU_MAX_QUEUES as usize {
            return Err(ENOSPC);
        }
        // Ids are not reused while the file is open (u32: 4 billion
        // creations); an exhausted file gets ENOSPC.
        let id = queues.next_id;
        let next = id.checked_add(1).ok_or(ENOSPC)?;
        queues.list.reserve(1, GFP_KERNEL)?;
        let sched = SchedQueue::new(req.priority)?;
        let engine = ctx.engine().clone();
        // Counted before the queue exists: its drop uncounts it, also when
        // the allocation below fails (which drops the queue built for it).
        engine.queue_made(req.priority);
        let queue = Arc::new(
            Queue {
                id,
                ctx,
                sched: sched.clone(),
            },
            GFP_KERNEL,
        )?;
        dev.engine.add_queue(sched)?;
        queues.list.push(queue, GFP_KERNEL)?;
        queues.next_id = next;
        req.queue_id = id;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_QUEUE_DESTROY: forget a queue (its jobs still run).
    pub(crate) fn queue_destroy(
        _dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_queue_destroy,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.pad != 0 {
            return Err(EINVAL);
        }
        let this = file.inner();
        let mut queues = this.queues.lock();
        let i = queues
            .list
            .iter()
            .position(|q| q.id == req.queue_id)
            .ok_or(ENOENT)?;
        // Its jobs hold what they need; the scheduler forgets it once they
        // entered the ring.
        queues.list.remove(i)?;
        Ok(0)
    }

    /// The queue `id` of the file.
    pub(crate) fn queue(&self, id: u32) -> Result<Arc<Queue>> {
        self.queues
            .lock()
            .list
            .iter()
            .find(|q| q.id == id)
            .cloned()
            .ok_or(ENOENT)
    }

    /// DRM_IOCTL_ONPU_SUBMIT: queue a job; its sequence number.
    pub(crate) fn submit(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_submit,
        file: &drm::File<File>,
    ) -> Result<u32> {
        let this = file.inner();
        // Room in the file's list first, so a queued job is never lost.
        {
            let mut jobs = this.jobs.lock();
            if jobs.len() >= MAX_UNREAPED {
                // Forget the oldest jobs that have ended; WAIT on them gives
                // ENOENT, as documented.
                jobs.retain(|j| j.outcome().is_none());
            }
            jobs.reserve(1, GFP_KERNEL)?;
        }
        let job = job::submit(dev, file, req)?;
        req.seqno = job.seqno;
        this.jobs.lock().push(job, GFP_KERNEL)?;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_WAIT: wait for a job of this file, report and reap it.
    pub(crate) fn wait(
        _dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_wait,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let this = file.inner();
        let job = this
            .jobs
            .lock()
            .iter()
            .find(|j| j.seqno == req.seqno)
            .cloned()
            .ok_or(ENOENT)?;
        if req.profile_size != 0 && !job.profiled {
            return Err(EINVAL);
        }
        // An absolute deadline: a call restarted after a signal waits only
        // for what is left of it. A wait in whole jiffies can end up to one
        // tick before the deadline: wait again until it has passed (then the
        // remaining time is 0, a poll).
        // (A job that has ended needs no deadline.)
        let outcome = match job.outcome() {
            Some(outcome) => outcome,
            None => loop {
                let jiffies = timeout_abs_to_jiffies(req.timeout_abs_ns);
                match job.wait(jiffies)? {
                    Some(outcome) => break outcome,
                    None if jiffies == 0 => return Err(ETIMEDOUT),
                    None => {}
                }
            },
        };
        if req.profile_size != 0 {
            // Zeros for a job the device did not end (aborted, cancelled).
            let words = outcome.profile.unwrap_or_default();
            let bytes = AsBytes::as_bytes(&words);
            let len = (req.profile_size as usize).min(bytes.len());
            let addr = usize::try_from(req.profile).map_err(|_| EFAULT)?;
            // Before the job is reaped: on EFAULT it can be waited for again.
            UserSlice::new(UserPtr::from_addr(addr), len)
                .writer()
                .write_slice(&bytes[..len])?;
        }
        req.status = outcome.status;
        req.error = outcome.error;
        req.fault_addr = outcome.fault_addr;
        req.cycles = outcome.cycles.into();
        this.jobs.lock().retain(|j| j.seqno != req.seqno);
        // The job ended: its objects go now rather than in the release
        // work, so they are gone when WAIT returns (as before the release
        // was deferred off the signalling path).
        this.ctx.engine().release_retired();
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_WAIT_BO: wait until no job uses an object.
    pub(crate) fn wait_bo(
        _dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_wait_bo,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let bo = gem::lookup(file, req.handle)?;
        // As WAIT: until the deadline has passed, not a tick before it.
        loop {
            let jiffies = timeout_abs_to_jiffies(req.timeout_abs_ns);
            if fence::wait_idle(bo.resv(), jiffies)? {
                return Ok(0);
            }
            if jiffies == 0 {
                return Err(ETIMEDOUT);
            }
        }
    }

    /// fdinfo: the DRM usage statistics of this file
    /// (Documentation/gpu/drm-usage-stats.rst).
    pub(crate) fn show_fdinfo(file: &drm::File<File>, p: &mut Printer<'_>) {
        let this = file.inner();
        let params = &this.ctx.engine().params;
        let u = &this.usage;
        let _ = writeln!(p, "drm-engine-npu:\t{} ns", u.busy_ns.load(Relaxed));
        let _ = writeln!(p, "drm-cycles-npu:\t{}", u.cycles.load(Relaxed));
        let _ = writeln!(p, "drm-maxfreq-npu:\t{} MHz", params.clock_khz / 1000);
        let _ = writeln!(p, "onpu-jobs:\t{}", u.jobs.load(Relaxed));
        let _ = writeln!(p, "onpu-hw-context:\t{}", this.ctx.slot().unwrap_or(0));
        p.show_memory_stats(file);
    }
}
