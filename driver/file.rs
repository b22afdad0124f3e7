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
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
};

use crate::context::Context;
use crate::drv::{OnpuDevice, OnpuDriver};
use crate::engine::JOB_TIMEOUT_MS;
use crate::fence;
use crate::gem;
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
}

impl Usage {
    fn new() -> Self {
        Self { busy_ns: Atomic::new(0), cycles: Atomic::new(0), jobs: Atomic::new(0) }
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
        // The scheduler forgets it once its jobs entered the ring.
        self.sched.destroy();
    }
}

/// The queues of a file, and the id the next one gets.
struct Queues {
    list: KVec<Arc<Queue>>,
    next_id: u32,
}

/// State of one open /dev/accel/accelN file.
#[pin_data(PinnedDrop)]
pub(crate) struct File {
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
        let ctx = Context::new(&dev.engine)?;
        let usage = Arc::new(Usage::new(), GFP_KERNEL)?;
        KBox::try_pin_init(
            try_pin_init!(Self {
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

impl File {
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    pub(crate) fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// A new job number of this file.
    pub(crate) fn next_seqno(&self) -> u64 {
        self.next_seqno.fetch_add(1u64, Relaxed)
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
            uapi::DRM_ONPU_PARAM_DEVICE_ID => p.device_id.into(),
            uapi::DRM_ONPU_PARAM_REVISION => p.revision.into(),
            uapi::DRM_ONPU_PARAM_ISA_VERSION => p.isa_version.into(),
            uapi::DRM_ONPU_PARAM_SRAM_SIZE => p.sram_size.into(),
            uapi::DRM_ONPU_PARAM_NUM_CONTEXTS => p.contexts.into(),
            uapi::DRM_ONPU_PARAM_VA_BITS => p.va_bits.into(),
            uapi::DRM_ONPU_PARAM_CAPS => p.caps.into(),
            uapi::DRM_ONPU_PARAM_CLOCK_KHZ => p.clock_khz.into(),
            uapi::DRM_ONPU_PARAM_VA_START => mmu::VA_START,
            uapi::DRM_ONPU_PARAM_VA_END => mmu::VA_END,
            uapi::DRM_ONPU_PARAM_JOB_TIMEOUT_MS => JOB_TIMEOUT_MS.into(),
            uapi::DRM_ONPU_PARAM_NUM_PRIORITIES => NUM_PRIORITIES.into(),
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
        req.mmap_offset = if bo.flags() & uapi::DRM_ONPU_BO_NO_MMAP != 0 { 0 } else { bo.create_mmap_offset()? };
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
        // Until contexts are objects of their own (CONTEXT_CREATE), the
        // file's one address space is context 0.
        if req.context_id != 0 {
            return Err(ENOENT);
        }
        // As other drivers do: a priority above every user's needs
        // CAP_SYS_NICE (asked only then: the check is audited).
        if req.priority == uapi::DRM_ONPU_PRIORITY_REALTIME && !capable(Capability::SYS_NICE) {
            return Err(EACCES);
        }
        let this = file.inner();
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
        let queue = Arc::new(Queue { id, ctx: this.ctx.clone(), sched: sched.clone() }, GFP_KERNEL)?;
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
        let i = queues.list.iter().position(|q| q.id == req.queue_id).ok_or(ENOENT)?;
        // Its jobs hold what they need; the scheduler forgets it once they
        // entered the ring.
        queues.list.remove(i)?;
        Ok(0)
    }

    /// The queue `id` of the file.
    pub(crate) fn queue(&self, id: u32) -> Result<Arc<Queue>> {
        self.queues.lock().list.iter().find(|q| q.id == id).cloned().ok_or(ENOENT)
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
        let job = this.jobs.lock().iter().find(|j| j.seqno == req.seqno).cloned().ok_or(ENOENT)?;
        // No job of this driver is profiled yet (SUBMIT refuses
        // DRM_ONPU_SUBMIT_PROFILE), so asking for a profile is an error.
        if req.profile_size != 0 {
            return Err(EINVAL);
        }
        // An absolute deadline: a call restarted after a signal waits only
        // for what is left of it.
        let outcome = job.wait(timeout_abs_to_jiffies(req.timeout_abs_ns))?.ok_or(ETIMEDOUT)?;
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
        if fence::wait_idle(bo.resv(), timeout_abs_to_jiffies(req.timeout_abs_ns))? {
            Ok(0)
        } else {
            Err(ETIMEDOUT)
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
        let _ = writeln!(p, "onpu-hw-context:\t{}", this.ctx.index());
        p.show_memory_stats(file);
    }
}
