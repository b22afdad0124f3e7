// SPDX-License-Identifier: GPL-2.0-only

//! Per-open-file state and the ioctls.
//!
//! Every field of every argument is checked: unknown flags and non-zero
//! padding give EINVAL, handles that name nothing ENOENT, bad user pointers
//! EFAULT (Documentation/uapi/onpu.rst lists them per ioctl).

use core::fmt::Write;
use kernel::{
    drm::{self, gem::BaseObject, print::Printer},
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    time::nsecs_to_jiffies,
    transmute::AsBytes,
    uaccess::UserSlice,
};

use crate::context::Context;
use crate::drv::{OnpuDevice, OnpuDriver};
use crate::engine::JOB_TIMEOUT_MS;
use crate::fence;
use crate::gem::{self, BoObject};
use crate::job::{self, Job};
use crate::mmu;
use crate::uapi;

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

/// The contexts CONTEXT_CREATE made, by id.
pub(crate) struct Contexts {
    list: KVec<(u32, Arc<Context>)>,
}

/// State of one open /dev/accel/accelN file.
#[pin_data(PinnedDrop)]
pub(crate) struct File {
    /// The file's default context: it gives every buffer object of the
    /// file its NPU address (the same in all the file's contexts) and
    /// counts the file's handles; today's SUBMIT runs jobs in it.
    ctx: Arc<Context>,
    /// Contexts made by CONTEXT_CREATE. Also serialises the GEM open and
    /// close callbacks with the mapping of objects into these contexts.
    /// Lock order: this, then a context's `vm`.
    #[pin]
    contexts: Mutex<Contexts>,
    usage: Arc<Usage>,
    /// Submitted jobs not yet reaped by WAIT, oldest first.
    #[pin]
    jobs: Mutex<KVec<Arc<Job>>>,
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
                contexts <- new_mutex!(Contexts { list: KVec::new() }),
                usage,
                jobs <- new_mutex!(KVec::new()),
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
    pub(crate) fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// A context of this file made by CONTEXT_CREATE (-ENOENT otherwise),
    /// for the queues that run jobs in it.
    // Used by QUEUE_CREATE (not in this change yet).
    #[allow(dead_code)]
    pub(crate) fn find_context(&self, id: u32) -> Result<Arc<Context>> {
        let contexts = self.contexts.lock();
        contexts.list.iter().find(|(i, _)| *i == id).map(|(_, c)| c.clone()).ok_or(ENOENT)
    }

    /// Map `bos` into `ctx` (a context of this file) at their NPU
    /// addresses, where not mapped yet: a job of `ctx` is about to use
    /// them. -ENOENT when one has no handle in this file any more.
    pub(crate) fn map_for_job<'a>(&self, ctx: &Context, bos: impl Iterator<Item = &'a BoObject>) -> Result {
        if core::ptr::eq(ctx, &*self.ctx) {
            // The default context maps every object at its handle's creation.
            return Ok(());
        }
        // Held so that no handle closes (and unmaps) meanwhile.
        let _contexts = self.contexts.lock();
        for bo in bos {
            let va = self.ctx.npu_addr(bo).ok_or(ENOENT)?;
            ctx.map_at(bo, va)?;
        }
        Ok(())
    }

    /// GEM open callback: a new handle of this file on `bo`.
    pub(crate) fn open_bo(&self, bo: &BoObject) -> Result {
        let _contexts = self.contexts.lock();
        self.ctx.map(bo)
    }

    /// GEM close callback: a handle of this file on `bo` closed. With the
    /// last one, every context of the file unmaps the object: the created
    /// ones first, then the default one, which keeps the pages and the
    /// address until the jobs that may reach them have ended.
    pub(crate) fn close_bo(&self, bo: &BoObject) {
        let contexts = self.contexts.lock();
        if self.ctx.handles(bo) == 1 {
            for (_, c) in contexts.list.iter() {
                c.unmap_now(bo);
            }
        }
        self.ctx.unmap(bo);
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
        let mut contexts = this.contexts.lock();
        let list = &mut contexts.list;
        if list.len() >= uapi::DRM_ONPU_MAX_CONTEXTS as usize {
            return Err(ENOSPC);
        }
        // The lowest free id: at most DRM_ONPU_MAX_CONTEXTS are in use.
        let id = (1..=uapi::DRM_ONPU_MAX_CONTEXTS).find(|id| list.iter().all(|(i, _)| i != id)).ok_or(ENOSPC)?;
        list.reserve(1, GFP_KERNEL)?;
        let ctx = Context::new(&dev.engine)?;
        list.push_within_capacity((id, ctx)).map_err(|_| ENOMEM)?;
        req.context_id = id;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_CONTEXT_DESTROY: forget a context; its jobs keep it
    /// alive until they end.
    pub(crate) fn context_destroy(
        _dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_context_destroy,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.pad != 0 {
            return Err(EINVAL);
        }
        let this = file.inner();
        let ctx = {
            let mut contexts = this.contexts.lock();
            let i = contexts.list.iter().position(|(id, _)| *id == req.context_id).ok_or(ENOENT)?;
            // (-EBUSY while queues use it: queues do not exist yet.)
            contexts.list.remove(i)?.1
        };
        // Dropped outside the lock: the last reference frees page tables.
        drop(ctx);
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_GET_PARAM: one device parameter.
    pub(crate) fn get_param(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_get_param,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.pad != 0 {
            return Err(EINVAL);
        }
        let e = &dev.engine;
        let p = &e.params;
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
            uapi::DRM_ONPU_PARAM_JOBS_SUBMITTED => e.counters.submitted.load(Relaxed),
            uapi::DRM_ONPU_PARAM_JOBS_COMPLETED => e.counters.completed.load(Relaxed),
            uapi::DRM_ONPU_PARAM_JOBS_FAILED => e.counters.failed.load(Relaxed),
            uapi::DRM_ONPU_PARAM_RESETS => e.counters.resets.load(Relaxed),
            uapi::DRM_ONPU_PARAM_JOB_TIMEOUT_MS => JOB_TIMEOUT_MS.into(),
            uapi::DRM_ONPU_PARAM_HW_CONTEXT => file.inner().ctx.slot().unwrap_or(0).into(),
            _ => return Err(EINVAL),
        };
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_BO_CREATE: a new shmem buffer object, its handle and
    /// its NPU address (the GEM open callback maps it).
    pub(crate) fn bo_create(
        dev: &OnpuDevice,
        req: &mut uapi::drm_onpu_bo_create,
        file: &drm::File<File>,
    ) -> Result<u32> {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let bo = gem::create(dev, req.size)?;
        // The handle holds its own reference; ours drops at return.
        let handle = bo.create_handle(file)?;
        req.handle = handle;
        req.size = bo.size() as u64;
        req.npu_addr = file.inner().ctx.npu_addr(&bo).ok_or(EINVAL)?;
        Ok(0)
    }

    /// DRM_IOCTL_ONPU_BO_INFO: size, mmap offset and NPU address.
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
        req.mmap_offset = bo.create_mmap_offset()?;
        req.npu_addr = file.inner().ctx.npu_addr(&bo).ok_or(ENOENT)?;
        Ok(0)
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
        // Until queues name a context, jobs run in the default one.
        let job = job::submit(dev, file, &this.ctx, req)?;
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
        if req.flags != 0 || req.timeout_ns < 0 {
            return Err(EINVAL);
        }
        let this = file.inner();
        let job = this.jobs.lock().iter().find(|j| j.seqno == req.seqno).cloned().ok_or(ENOENT)?;
        if req.profile_size != 0 && !job.profiled {
            return Err(EINVAL);
        }
        let outcome = job.wait(req.timeout_ns)?.ok_or(ETIMEDOUT)?;
        if req.profile_size != 0 {
            // Zeros for a job the device did not end (aborted, cancelled).
            let words = outcome.profile.unwrap_or_default();
            let bytes = AsBytes::as_bytes(&words);
            let len = (req.profile_size as usize).min(bytes.len());
            let addr = usize::try_from(req.profile).map_err(|_| EFAULT)?;
            // Before the job is reaped: on EFAULT it can be waited for again.
            UserSlice::new(UserPtr::from_addr(addr), len).writer().write_slice(&bytes[..len])?;
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
        if req.flags != 0 || req.timeout_ns < 0 {
            return Err(EINVAL);
        }
        let bo = gem::lookup(file, req.handle)?;
        let jiffies = nsecs_to_jiffies(req.timeout_ns as u64);
        if fence::wait_idle(bo.resv(), jiffies)? {
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
        let _ = writeln!(p, "onpu-hw-context:\t{}", this.ctx.slot().unwrap_or(0));
        p.show_memory_stats(file);
    }
}
