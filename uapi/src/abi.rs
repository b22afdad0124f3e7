// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The onpu accel driver's ioctl ABI: one definition for the kernel driver
//! (which compiles this file as its `uapi` module) and for userspace (through
//! the `npu-uapi` crate). Dependency-free and `core`-only on purpose.
//!
//! include/uapi/drm/onpu_accel.h is the same ABI for C; a host test checks
//! that every size, offset and ioctl number agrees.
#![allow(non_camel_case_types)]

/// DRM's ioctl type letter and the first driver-private command number.
pub const DRM_IOCTL_BASE: u32 = b'd' as u32;
pub const DRM_COMMAND_BASE: u32 = 0x40;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOWR('d', DRM_COMMAND_BASE + nr, size)` as the kernel computes it.
pub const fn drm_iowr(nr: u32, size: usize) -> u32 {
    ((IOC_READ | IOC_WRITE) << (IOC_NRBITS + IOC_TYPEBITS + IOC_SIZEBITS))
        | ((size as u32) << (IOC_NRBITS + IOC_TYPEBITS))
        | (DRM_IOCTL_BASE << IOC_NRBITS)
        | (DRM_COMMAND_BASE + nr)
}

/// `_IOW('d', DRM_COMMAND_BASE + nr, size)`: an ioctl that returns nothing.
pub const fn drm_iow(nr: u32, size: usize) -> u32 {
    (IOC_WRITE << (IOC_NRBITS + IOC_TYPEBITS + IOC_SIZEBITS))
        | ((size as u32) << (IOC_NRBITS + IOC_TYPEBITS))
        | (DRM_IOCTL_BASE << IOC_NRBITS)
        | (DRM_COMMAND_BASE + nr)
}

/// Driver-private command numbers (offsets from DRM_COMMAND_BASE).
pub const DRM_ONPU_GET_PARAM: u32 = 0x00;
pub const DRM_ONPU_QUERY: u32 = 0x01;
pub const DRM_ONPU_BO_CREATE: u32 = 0x02;
pub const DRM_ONPU_BO_CREATE_USERPTR: u32 = 0x03;
pub const DRM_ONPU_BO_INFO: u32 = 0x04;
pub const DRM_ONPU_CONTEXT_CREATE: u32 = 0x05;
pub const DRM_ONPU_CONTEXT_DESTROY: u32 = 0x06;
pub const DRM_ONPU_QUEUE_CREATE: u32 = 0x07;
pub const DRM_ONPU_QUEUE_DESTROY: u32 = 0x08;
pub const DRM_ONPU_SUBMIT: u32 = 0x09;
pub const DRM_ONPU_WAIT: u32 = 0x0a;
pub const DRM_ONPU_WAIT_BO: u32 = 0x0b;

/// Largest buffer object: 4 GiB.
pub const DRM_ONPU_BO_MAX_SIZE: u64 = 1 << 32;

/// Parameters of &drm_onpu_get_param.param.
///
/// DRM_ONPU_PARAM_DEVICE_ID: PCI device ID.
/// DRM_ONPU_PARAM_REVISION: PCI revision.
/// DRM_ONPU_PARAM_ISA_VERSION: ISA version, major << 16 | minor.
/// DRM_ONPU_PARAM_SRAM_SIZE: on-chip SRAM size in bytes (what compilers tile for).
/// DRM_ONPU_PARAM_NUM_CONTEXTS: hardware contexts (concurrent address spaces).
/// DRM_ONPU_PARAM_VA_BITS: width of an NPU virtual address.
/// DRM_ONPU_PARAM_CAPS: capability bits of the hardware (CAPS register).
/// DRM_ONPU_PARAM_CLOCK_KHZ: modelled clock, to turn cycle counts into time.
pub const DRM_ONPU_PARAM_DEVICE_ID: u32 = 0;
pub const DRM_ONPU_PARAM_REVISION: u32 = 1;
pub const DRM_ONPU_PARAM_ISA_VERSION: u32 = 2;
pub const DRM_ONPU_PARAM_SRAM_SIZE: u32 = 3;
pub const DRM_ONPU_PARAM_NUM_CONTEXTS: u32 = 4;
pub const DRM_ONPU_PARAM_VA_BITS: u32 = 5;
pub const DRM_ONPU_PARAM_CAPS: u32 = 6;
pub const DRM_ONPU_PARAM_CLOCK_KHZ: u32 = 7;
/// DRM_ONPU_PARAM_VA_START, DRM_ONPU_PARAM_VA_END: the range of NPU virtual
/// addresses the kernel hands out for buffer objects, [start, end).
pub const DRM_ONPU_PARAM_VA_START: u32 = 8;
pub const DRM_ONPU_PARAM_VA_END: u32 = 9;
/// DRM_ONPU_PARAM_JOB_TIMEOUT_MS: the timeout a job gets when its
/// &drm_onpu_submit.timeout_ms is 0, and the largest one it may ask for.
pub const DRM_ONPU_PARAM_JOB_TIMEOUT_MS: u32 = 10;
/// DRM_ONPU_PARAM_NUM_PRIORITIES: queue priorities the driver offers
/// (DRM_ONPU_PRIORITY_LOW .. DRM_ONPU_PRIORITY_REALTIME).
pub const DRM_ONPU_PARAM_NUM_PRIORITIES: u32 = 11;
/// One past the last parameter. Device-wide job counters are not
/// parameters: they are in debugfs (Documentation/uapi/onpu.rst).
pub const DRM_ONPU_PARAM_COUNT: u32 = 12;

/// struct drm_onpu_get_param - query a device parameter
///
/// @param: in, one of DRM_ONPU_PARAM_*; an unknown one gives -EINVAL.
/// @pad: must be zero (-EINVAL otherwise).
/// @value: out, the parameter's value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_get_param {
    pub param: u32,
    pub pad: u32,
    pub value: u64,
}

pub const DRM_IOCTL_ONPU_GET_PARAM: u32 = drm_iowr(
    DRM_ONPU_GET_PARAM,
    core::mem::size_of::<drm_onpu_get_param>(),
);

/// Queries of &drm_onpu_query.query.
///
/// DRM_ONPU_QUERY_CAPS: &drm_onpu_query_caps, what the device and driver offer.
/// DRM_ONPU_QUERY_COST_MODEL: &drm_onpu_query_cost_model, the device's
/// cost-model parameters (its COST_* registers).
pub const DRM_ONPU_QUERY_CAPS: u32 = 0;
pub const DRM_ONPU_QUERY_COST_MODEL: u32 = 1;

/// struct drm_onpu_query - read a structured description of the device
///
/// @query: in, one of DRM_ONPU_QUERY_*; an unknown one gives -EINVAL.
/// @flags: in, must be zero (-EINVAL otherwise).
/// @size: in, the bytes at @data; out, the full size of the query's
///        struct. With 0 only the size is returned; a smaller non-zero
///        size gets the first @size bytes (so a newer kernel's longer
///        struct does not break older userspace).
/// @pad: must be zero (-EINVAL otherwise).
/// @data: in, user pointer to the query's struct (-EFAULT if bad).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_query {
    pub query: u32,
    pub flags: u32,
    pub size: u32,
    pub pad: u32,
    pub data: u64,
}

/// struct drm_onpu_query_caps - DRM_ONPU_QUERY_CAPS
///
/// @device_id: PCI device ID. @revision: PCI revision.
/// @isa_version: ISA version, major << 16 | minor.
/// @caps: the CAPS register (Documentation/hw/npu-hw.rst "Capabilities").
/// @sram_size: on-chip SRAM bytes. @num_contexts: hardware contexts.
/// @num_rings: submission rings (1 on a device without NUM_RINGS).
/// @va_bits: width of an NPU virtual address.
/// @va_start, @va_end: the NPU addresses the kernel hands out, [start, end).
/// @clock_khz: modelled clock. @max_job_bos: DRM_ONPU_MAX_JOB_BOS.
/// @max_cmdbuf_size: DRM_ONPU_MAX_CMDBUF_SIZE.
/// @job_timeout_ms: as DRM_ONPU_PARAM_JOB_TIMEOUT_MS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_query_caps {
    pub device_id: u32,
    pub revision: u32,
    pub isa_version: u32,
    pub caps: u32,
    pub sram_size: u32,
    pub num_contexts: u32,
    pub num_rings: u32,
    pub va_bits: u32,
    pub va_start: u64,
    pub va_end: u64,
    pub clock_khz: u32,
    pub max_job_bos: u32,
    pub max_cmdbuf_size: u32,
    pub job_timeout_ms: u32,
}

/// struct drm_onpu_query_cost_model - DRM_ONPU_QUERY_COST_MODEL
///
/// The device's COST_* registers, in register order
/// (Documentation/hw/npu-hw.rst, "Cost model"): what a compiler needs to
/// estimate the cycles of a tiling.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_query_cost_model {
    pub dma_bytes_per_cycle: u32,
    pub dma_latency: u32,
    pub f32_macs_per_cycle: u32,
    pub i8_macs_per_cycle: u32,
    pub vector_elems_per_cycle: u32,
    pub special_elems_per_cycle: u32,
    pub insn_overhead: u32,
    pub walk_cycles: u32,
}

pub const DRM_IOCTL_ONPU_QUERY: u32 =
    drm_iowr(DRM_ONPU_QUERY, core::mem::size_of::<drm_onpu_query>());
/// Flags of &drm_onpu_bo_create.flags (and &drm_onpu_bo_info.bo_flags).
///
/// DRM_ONPU_BO_READ_ONLY: the NPU maps the object without write permission:
///     a job that writes to it ends with the MMU_PERMISSION fault status, and
///     listing it with DRM_ONPU_BO_WRITE in a SUBMIT gives -EACCES.
/// DRM_ONPU_BO_NO_MMAP: the CPU cannot map the object: BO_INFO gives
///     mmap_offset 0, and mmap() of a dma-buf exported from it gives -EACCES.
/// DRM_ONPU_BO_CPU_WC: the CPU mapping is write-combined (default: cached;
///     the device reaches memory coherently, so both are correct).
pub const DRM_ONPU_BO_READ_ONLY: u32 = 1 << 0;
pub const DRM_ONPU_BO_NO_MMAP: u32 = 1 << 1;
pub const DRM_ONPU_BO_CPU_WC: u32 = 1 << 2;
/// Every flag of &drm_onpu_bo_create.flags; any other bit gives -EINVAL.
pub const DRM_ONPU_BO_CREATE_FLAGS: u32 =
    DRM_ONPU_BO_READ_ONLY | DRM_ONPU_BO_NO_MMAP | DRM_ONPU_BO_CPU_WC;

/// struct drm_onpu_bo_create - create a buffer object
///
/// @size: in, the size in bytes, 1..=DRM_ONPU_BO_MAX_SIZE; out, the size
///        rounded up to whole pages. 0 or too large gives -EINVAL.
/// @flags: in, DRM_ONPU_BO_* creation flags (-EINVAL for unknown bits).
/// @handle: out, the GEM handle of the new object, for this file.
/// @npu_addr: out, the object's NPU address in this file's address space
///            (read/write, or read-only with DRM_ONPU_BO_READ_ONLY).
///
/// The address is reserved at once; the memory (shmem) is allocated and
/// pinned, and the object mapped for the NPU, only when a job first uses it
/// (lists it or runs it as command buffer) or the CPU maps it. -ENOSPC when
/// the file's NPU address space is full; -ENOMEM when the memory cannot be
/// had (then at that first use: SUBMIT or mmap() fails with it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_bo_create {
    pub size: u64,
    pub flags: u32,
    pub handle: u32,
    pub npu_addr: u64,
}

/// struct drm_onpu_bo_info - describe a buffer object
///
/// @handle: in, a GEM handle of this file (-ENOENT if it names nothing).
/// @flags: in, must be zero (-EINVAL otherwise).
/// @size: out, the object's size in bytes.
/// @mmap_offset: out, the offset to pass to mmap() on the device file to
///               map the object into the CPU's address space; 0 for an
///               object the CPU may not map (DRM_ONPU_BO_NO_MMAP).
/// @npu_addr: out, the object's address in this file's NPU address space.
///            Every handle gets one, also one imported through PRIME (each
///            importing file at its own address).
/// @bo_flags: out, the DRM_ONPU_BO_* creation flags of the object.
/// @pad: out, zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_bo_info {
    pub handle: u32,
    pub flags: u32,
    pub size: u64,
    pub mmap_offset: u64,
    pub npu_addr: u64,
    pub bo_flags: u32,
    pub pad: u32,
}

/// struct drm_onpu_bo_create_userptr - a buffer object of the caller's memory
///
/// @user_ptr: in, the start of the memory, page aligned (-EINVAL otherwise).
/// @size: in, its length in bytes, a non-zero multiple of the page size, at
///        most DRM_ONPU_BO_MAX_SIZE (-EINVAL otherwise).
/// @flags: in, 0 or DRM_ONPU_BO_READ_ONLY (any other bit: -EINVAL).
/// @handle: out, the GEM handle of the new object, for this file.
/// @npu_addr: out, the object's NPU address in this file's address space.
///
/// The pages are pinned at once (long-term; for writing too unless
/// READ_ONLY, so a read-only mapping needs DRM_ONPU_BO_READ_ONLY) and stay
/// pinned until the object is freed: the NPU reaches that memory, whatever
/// the process later does with the range. The object is NO_MMAP (BO_INFO
/// reports DRM_ONPU_BO_NO_MMAP; the process has the memory already), and
/// cannot be exported through PRIME (-EINVAL). The pages count against the
/// creating process's RLIMIT_MEMLOCK (its pinned_vm) until the object is
/// freed. -EFAULT when a page of the range is not mapped (with the access
/// needed), -ENOMEM above RLIMIT_MEMLOCK without CAP_IPC_LOCK or out of
/// memory, -ENOSPC as for BO_CREATE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_bo_create_userptr {
    pub user_ptr: u64,
    pub size: u64,
    pub flags: u32,
    pub handle: u32,
    pub npu_addr: u64,
}

pub const DRM_IOCTL_ONPU_BO_CREATE_USERPTR: u32 = drm_iowr(
    DRM_ONPU_BO_CREATE_USERPTR,
    core::mem::size_of::<drm_onpu_bo_create_userptr>(),
);

pub const DRM_IOCTL_ONPU_BO_CREATE: u32 = drm_iowr(
    DRM_ONPU_BO_CREATE,
    core::mem::size_of::<drm_onpu_bo_create>(),
);
pub const DRM_IOCTL_ONPU_BO_INFO: u32 =
    drm_iowr(DRM_ONPU_BO_INFO, core::mem::size_of::<drm_onpu_bo_info>());

/// Most contexts one file may have at a time.
pub const DRM_ONPU_MAX_CONTEXTS: u32 = 64;

/// struct drm_onpu_context_create - create an NPU address space
///
/// @flags: in, must be zero (-EINVAL otherwise).
/// @context_id: out, the context's id in this file (from 1; ids of
///              destroyed contexts may be handed out again).
///
/// A context is an NPU address space of its own: a job of one context
/// cannot reach the buffer objects that only other contexts' jobs used. A
/// buffer object has the same NPU address (&drm_onpu_bo_create.npu_addr)
/// in every context of its file; a context maps it when a job of the
/// context first uses it. The device's hardware contexts are shared by all
/// files: a context holds one only while it has jobs in the device's rings,
/// so the number of contexts is not limited by DRM_ONPU_PARAM_NUM_CONTEXTS.
///
/// Returns 0, -ENOSPC when the file has DRM_ONPU_MAX_CONTEXTS contexts,
/// -ENOMEM, or -ENODEV when the device is gone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_context_create {
    pub flags: u32,
    pub context_id: u32,
}

/// struct drm_onpu_context_destroy - destroy a context
///
/// @context_id: in, a context of this file (-ENOENT otherwise).
/// @pad: must be zero (-EINVAL otherwise).
///
/// Jobs of the context already submitted still run; its address space goes
/// when the last of them has ended. Returns 0, -ENOENT, -EINVAL, or -EBUSY
/// while queues of the file use the context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_context_destroy {
    pub context_id: u32,
    pub pad: u32,
}

pub const DRM_IOCTL_ONPU_CONTEXT_CREATE: u32 = drm_iowr(
    DRM_ONPU_CONTEXT_CREATE,
    core::mem::size_of::<drm_onpu_context_create>(),
);
pub const DRM_IOCTL_ONPU_CONTEXT_DESTROY: u32 = drm_iow(
    DRM_ONPU_CONTEXT_DESTROY,
    core::mem::size_of::<drm_onpu_context_destroy>(),
);

/// Priorities of &drm_onpu_queue_create.priority. Priority p feeds the
/// device's ring p; the device takes its next job from the highest-priority
/// ring that has one, at job boundaries.
///
/// DRM_ONPU_PRIORITY_REALTIME needs CAP_SYS_NICE (-EACCES otherwise); the
/// others are open to every user.
pub const DRM_ONPU_PRIORITY_LOW: u32 = 0;
pub const DRM_ONPU_PRIORITY_NORMAL: u32 = 1;
pub const DRM_ONPU_PRIORITY_HIGH: u32 = 2;
pub const DRM_ONPU_PRIORITY_REALTIME: u32 = 3;

/// Most queues one file may have at once.
pub const DRM_ONPU_MAX_QUEUES: u32 = 64;
/// Most jobs of one queue that have not ended yet; SUBMIT beyond gives
/// -EAGAIN (wait for the oldest job, then submit again).
pub const DRM_ONPU_MAX_QUEUE_JOBS: u32 = 64;

/// struct drm_onpu_queue_create - create a job queue
///
/// @context_id: in, the NPU address space the queue's jobs run in: a
///              context of this file, or 0 for the file's default context
///              (-ENOENT if it names nothing).
/// @priority: in, one of DRM_ONPU_PRIORITY_* (-EINVAL above REALTIME,
///            -EACCES for REALTIME without CAP_SYS_NICE).
/// @flags: in, must be zero (-EINVAL otherwise).
/// @queue_id: out, the queue's id for SUBMIT, from 1, unique in this file
///            while the queue exists.
///
/// -ENOSPC when the file has DRM_ONPU_MAX_QUEUES queues already.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_queue_create {
    pub context_id: u32,
    pub priority: u32,
    pub flags: u32,
    pub queue_id: u32,
}

/// struct drm_onpu_queue_destroy - destroy a job queue
///
/// @queue_id: in, a queue of this file (-ENOENT if it names nothing).
/// @pad: in, must be zero (-EINVAL otherwise).
///
/// Jobs already submitted to the queue still run, and WAIT still reaps
/// them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_queue_destroy {
    pub queue_id: u32,
    pub pad: u32,
}

pub const DRM_IOCTL_ONPU_QUEUE_CREATE: u32 = drm_iowr(
    DRM_ONPU_QUEUE_CREATE,
    core::mem::size_of::<drm_onpu_queue_create>(),
);
pub const DRM_IOCTL_ONPU_QUEUE_DESTROY: u32 = drm_iow(
    DRM_ONPU_QUEUE_DESTROY,
    core::mem::size_of::<drm_onpu_queue_destroy>(),
);

/// struct drm_onpu_obj_array - an array of structures in user memory
///
/// @stride: in, bytes from one element to the next: at least the size of
///          the element this kernel knows (-EINVAL otherwise). Bytes of an
///          element past that size must be zero (-E2BIG otherwise), so an
///          older kernel refuses what a newer userspace asks of it.
/// @count: in, the number of elements.
/// @array: in, user pointer to the first element (0 with @count 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_obj_array {
    pub stride: u32,
    pub count: u32,
    pub array: u64,
}

/// Flags of &drm_onpu_bo_ref.flags: how the job uses the object. They decide
/// implicit synchronisation: a job waits for the previous writers of what it
/// reads, and for every previous user of what it writes.
pub const DRM_ONPU_BO_READ: u32 = 1 << 0;
pub const DRM_ONPU_BO_WRITE: u32 = 1 << 1;

/// Most buffer objects one job may list.
pub const DRM_ONPU_MAX_JOB_BOS: u32 = 256;
/// Most input syncobjs one job may list.
pub const DRM_ONPU_MAX_IN_SYNCS: u32 = 16;
/// Most output syncobjs one job may list.
pub const DRM_ONPU_MAX_OUT_SYNCS: u32 = 16;
/// Largest command buffer of one job, in bytes.
pub const DRM_ONPU_MAX_CMDBUF_SIZE: u32 = 1 << 24;
/// Instructions are 64 bytes; command buffers are made of whole ones.
pub const DRM_ONPU_INSN_SIZE: u32 = 64;

/// struct drm_onpu_bo_ref - a buffer object a job uses
///
/// @handle: a GEM handle of this file (-ENOENT if it names nothing).
/// @flags: DRM_ONPU_BO_READ and/or DRM_ONPU_BO_WRITE, at least one; other
///         bits give -EINVAL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_bo_ref {
    pub handle: u32,
    pub flags: u32,
}

/// Flags of &drm_onpu_sync.flags.
///
/// DRM_ONPU_SYNC_WAIT_FOR_SUBMIT: inputs only: when the syncobj (point)
/// has no fence yet, the job waits until one is attached, instead of
/// SUBMIT failing with -EINVAL.
pub const DRM_ONPU_SYNC_WAIT_FOR_SUBMIT: u32 = 1 << 0;

/// struct drm_onpu_sync - a syncobj a job waits for or signals
///
/// @handle: a syncobj handle of this file (-ENOENT if it names nothing).
/// @flags: DRM_ONPU_SYNC_* (unknown bits, or WAIT_FOR_SUBMIT on an output,
///         give -EINVAL).
/// @point: 0 for a binary syncobj; otherwise a timeline point. An input
///         waits for the fence of that point; an output adds the job's
///         fence as that point, which must be above the timeline's last
///         (-EINVAL otherwise).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_sync {
    pub handle: u32,
    pub flags: u32,
    pub point: u64,
}

/// struct drm_onpu_submit - queue a job on the NPU
///
/// @queue_id: in, a queue of this file (-ENOENT if it names nothing).
/// @flags: in, DRM_ONPU_SUBMIT_* (-EINVAL for unknown bits).
/// @cmdbuf_handle: in, the buffer object holding the command buffer; it is
///                 read by the device at its address in the queue's NPU
///                 address space (-ENOENT if it names nothing).
/// @cmdbuf_size: in, bytes of instructions: non-zero, a multiple of
///               DRM_ONPU_INSN_SIZE, at most DRM_ONPU_MAX_CMDBUF_SIZE, and
///               offset + size within the object (-EINVAL otherwise).
/// @cmdbuf_offset: in, byte offset of the first instruction in the object,
///                 a multiple of DRM_ONPU_INSN_SIZE (-EINVAL otherwise).
/// @bos: in, &drm_onpu_bo_ref elements: every object the job touches
///       besides the command buffer (which is implicitly read), at most
///       DRM_ONPU_MAX_JOB_BOS (-EINVAL). The job holds them until it ends.
/// @in_syncs: in, &drm_onpu_sync elements whose fences must signal before
///            the job runs, at most DRM_ONPU_MAX_IN_SYNCS (-EINVAL).
/// @out_syncs: in, &drm_onpu_sync elements that receive the job's fence,
///             at most DRM_ONPU_MAX_OUT_SYNCS (-EINVAL).
/// @timeout_ms: in, how long the job may run once it reaches the device;
///              0 for the default, at most DRM_ONPU_PARAM_JOB_TIMEOUT_MS
///              (-EINVAL). A job that runs longer is failed with
///              -ETIMEDOUT and the device is reset.
/// @pad: must be zero (-EINVAL otherwise).
/// @seqno: out, the job's sequence number in this file, for WAIT.
///
/// SUBMIT does not wait for the job's dependencies: it returns once the job
/// is queued and its fence installed in the output syncobjs and the
/// objects' reservations. Returns -EAGAIN when the queue has
/// DRM_ONPU_MAX_QUEUE_JOBS jobs that have not ended (or the file 256, over
/// all its queues, destroyed ones too), -EFAULT for an
/// unreadable array, -ENOMEM, -EIO when the device is wedged, -ENODEV when
/// it is gone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_submit {
    pub queue_id: u32,
    pub flags: u32,
    pub cmdbuf_handle: u32,
    pub cmdbuf_size: u32,
    pub cmdbuf_offset: u64,
    pub bos: drm_onpu_obj_array,
    pub in_syncs: drm_onpu_obj_array,
    pub out_syncs: drm_onpu_obj_array,
    pub timeout_ms: u32,
    pub pad: u32,
    pub seqno: u64,
}

/// Flags of &drm_onpu_submit.flags.
///
/// DRM_ONPU_SUBMIT_PROFILE: the device records the job's profile
/// (&drm_onpu_job_profile), which WAIT returns. -EINVAL when the device
/// cannot (no JOB_PROFILE, bit 5, in DRM_ONPU_PARAM_CAPS).
pub const DRM_ONPU_SUBMIT_PROFILE: u32 = 1 << 0;

/// struct drm_onpu_job_profile - what one job did on the device
///
/// @cycles: modelled cycles of the job (not saturated).
/// @instructions: instructions fetched and decoded, END included.
/// @macs: multiply-accumulates of the MATMULs that completed.
/// @dma_bytes_read: bytes read through the MMU, instruction fetches
///                  included.
/// @dma_bytes_written: bytes written through the MMU.
/// @dma_engine_cycles: summed costs of the DMA engine's instructions.
/// @compute_engine_cycles: summed costs of the compute engine's
///                         instructions.
/// @reserved: 0.
///
/// The device's profile record (Documentation/hw/npu-hw.rst, "Job profile
/// records"). A job that never ran, or that a reset aborted, reports zeros.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_job_profile {
    pub cycles: u64,
    pub instructions: u64,
    pub macs: u64,
    pub dma_bytes_read: u64,
    pub dma_bytes_written: u64,
    pub dma_engine_cycles: u64,
    pub compute_engine_cycles: u64,
    pub reserved: u64,
}

/// Values of &drm_onpu_wait.status besides the device's fault codes
/// (1..=0xff, Documentation/hw/npu-hw.rst "Fault codes"; 0 is success).
///
/// DRM_ONPU_JOB_TIMEDOUT: the job ran past its timeout and was aborted.
/// DRM_ONPU_JOB_CANCELED: the job never ran: the device went away, or a
///                        dependency failed to be waited for.
pub const DRM_ONPU_JOB_OK: u32 = 0;
pub const DRM_ONPU_JOB_TIMEDOUT: u32 = 0x100;
pub const DRM_ONPU_JOB_CANCELED: u32 = 0x101;

/// struct drm_onpu_wait - wait for a job of this file and read its outcome
///
/// @seqno: in, a sequence number DRM_IOCTL_ONPU_SUBMIT returned to this
///         file (-ENOENT for any other, or one this file already reaped).
/// @timeout_abs_ns: in, absolute CLOCK_MONOTONIC deadline in nanoseconds;
///                  one that passed already (or 0) polls.
/// @flags: in, must be zero (-EINVAL otherwise).
/// @status: out, DRM_ONPU_JOB_OK, a device fault code, or one of the
///          DRM_ONPU_JOB_* values above.
/// @error: out, the same as an errno: 0, -EIO (a device fault),
///         -ETIMEDOUT (the job timed out) or -ECANCELED. It is also the
///         error of the job's fence.
/// @fault_addr: out, for a fault: the faulting NPU virtual address (MMU
///              faults) or the byte offset in the command buffer (command
///              faults).
/// @profile_size: in, bytes at @profile: 0 for none, else at most
///                 sizeof(struct drm_onpu_job_profile) bytes of the job's
///                 profile are written there (a larger size is fine; the
///                 rest is left alone). Non-zero for a job submitted
///                 without DRM_ONPU_SUBMIT_PROFILE gives -EINVAL.
/// @cycles: out, the modelled cycles the job took on the device.
/// @profile: in, user pointer to a &drm_onpu_job_profile, written when the
///           job was submitted with DRM_ONPU_SUBMIT_PROFILE (a non-zero
///           @profile_size for another job gives -EINVAL).
///
/// Returns 0 once the job has ended, whatever its outcome (read @status);
/// the job is then reaped, and its @seqno forgotten. -ETIMEDOUT when the
/// deadline passed first (the job is still queued or running),
/// -ERESTARTSYS on a signal: the restarted call waits until the same
/// deadline.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_wait {
    pub seqno: u64,
    pub timeout_abs_ns: i64,
    pub flags: u32,
    pub status: u32,
    pub error: i32,
    pub profile_size: u32,
    pub fault_addr: u64,
    pub cycles: u64,
    pub profile: u64,
}

/// struct drm_onpu_wait_bo - wait until no job uses a buffer object
///
/// @handle: in, a GEM handle of this file (-ENOENT if it names nothing).
/// @flags: in, must be zero (-EINVAL otherwise).
/// @timeout_abs_ns: in, absolute CLOCK_MONOTONIC deadline in nanoseconds;
///                  one that passed already (or 0) polls.
///
/// Returns 0 once every job (of any file, also through PRIME) that uses the
/// object has ended, -ETIMEDOUT if one still runs at the deadline,
/// -ERESTARTSYS on a signal (the restarted call keeps the deadline).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_wait_bo {
    pub handle: u32,
    pub flags: u32,
    pub timeout_abs_ns: i64,
}

pub const DRM_IOCTL_ONPU_SUBMIT: u32 =
    drm_iowr(DRM_ONPU_SUBMIT, core::mem::size_of::<drm_onpu_submit>());
pub const DRM_IOCTL_ONPU_WAIT: u32 = drm_iowr(DRM_ONPU_WAIT, core::mem::size_of::<drm_onpu_wait>());
pub const DRM_IOCTL_ONPU_WAIT_BO: u32 =
    drm_iow(DRM_ONPU_WAIT_BO, core::mem::size_of::<drm_onpu_wait_bo>());
