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

/// `_IOW('d', DRM_COMMAND_BASE + nr, size)`: the kernel only reads the
/// argument.
pub const fn drm_iow(nr: u32, size: usize) -> u32 {
    (IOC_WRITE << (IOC_NRBITS + IOC_TYPEBITS + IOC_SIZEBITS))
        | ((size as u32) << (IOC_NRBITS + IOC_TYPEBITS))
        | (DRM_IOCTL_BASE << IOC_NRBITS)
        | (DRM_COMMAND_BASE + nr)
}

/// Driver-private command numbers (offsets from DRM_COMMAND_BASE).
pub const DRM_ONPU_GET_PARAM: u32 = 0x00;
pub const DRM_ONPU_BO_CREATE: u32 = 0x01;
pub const DRM_ONPU_BO_INFO: u32 = 0x02;
pub const DRM_ONPU_SUBMIT: u32 = 0x03;
pub const DRM_ONPU_WAIT: u32 = 0x04;
pub const DRM_ONPU_CONTEXT_CREATE: u32 = 0x05;
pub const DRM_ONPU_CONTEXT_DESTROY: u32 = 0x06;
// v1: 0x0b once QUEUE_CREATE/DESTROY and the v1 SUBMIT/WAIT are numbered
// (DRM's ioctl table has no gaps).
pub const DRM_ONPU_WAIT_BO: u32 = 0x07;

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
/// DRM_ONPU_PARAM_JOBS_SUBMITTED, DRM_ONPU_PARAM_JOBS_COMPLETED,
/// DRM_ONPU_PARAM_JOBS_FAILED, DRM_ONPU_PARAM_RESETS: device-wide counters
/// since the driver bound the device (failed counts faults and timeouts).
pub const DRM_ONPU_PARAM_JOBS_SUBMITTED: u32 = 10;
pub const DRM_ONPU_PARAM_JOBS_COMPLETED: u32 = 11;
pub const DRM_ONPU_PARAM_JOBS_FAILED: u32 = 12;
pub const DRM_ONPU_PARAM_RESETS: u32 = 13;
/// DRM_ONPU_PARAM_JOB_TIMEOUT_MS: the timeout a job gets when its
/// &drm_onpu_submit.timeout_ms is 0, and the largest one it may ask for.
pub const DRM_ONPU_PARAM_JOB_TIMEOUT_MS: u32 = 14;
/// DRM_ONPU_PARAM_HW_CONTEXT: the hardware context of this file (its NPU
/// address space); every open file has its own.
pub const DRM_ONPU_PARAM_HW_CONTEXT: u32 = 15;
/// One past the last parameter.
pub const DRM_ONPU_PARAM_COUNT: u32 = 16;

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

/// struct drm_onpu_bo_create - create a buffer object
///
/// @size: in, the size in bytes, 1..=DRM_ONPU_BO_MAX_SIZE; out, the size
///        rounded up to whole pages. 0 or too large gives -EINVAL.
/// @flags: in, must be zero (-EINVAL otherwise).
/// @handle: out, the GEM handle of the new object, for this file.
/// @npu_addr: out, where the object is mapped (read/write) in this file's
///            NPU address space.
///
/// Memory comes from shmem; -ENOMEM when it cannot be had, -ENOSPC when the
/// file's NPU address space is full.
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
///               map the object into the CPU's address space.
/// @npu_addr: out, where the object is mapped in this file's NPU address
///            space. Every handle of a file maps its object, also one
///            imported through PRIME (each importing file at its own address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_bo_info {
    pub handle: u32,
    pub flags: u32,
    pub size: u64,
    pub mmap_offset: u64,
    pub npu_addr: u64,
}

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

/// Flags of &drm_onpu_bo_ref.flags: how the job uses the object. They decide
/// implicit synchronisation: a job waits for the previous writers of what it
/// reads, and for every previous user of what it writes.
pub const DRM_ONPU_BO_READ: u32 = 1 << 0;
pub const DRM_ONPU_BO_WRITE: u32 = 1 << 1;

/// Most buffer objects one job may list.
pub const DRM_ONPU_MAX_JOB_BOS: u32 = 256;
/// Most input syncobjs one job may list.
pub const DRM_ONPU_MAX_IN_SYNCOBJS: u32 = 16;
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

/// struct drm_onpu_submit - queue a job on the NPU
///
/// @cmdbuf_handle: in, the buffer object holding the command buffer; it is
///                 read by the device at its address in this file's NPU
///                 address space (-ENOENT if it names nothing).
/// @flags: in, must be zero (-EINVAL otherwise).
/// @cmdbuf_offset: in, byte offset of the first instruction in the object,
///                 a multiple of DRM_ONPU_INSN_SIZE (-EINVAL otherwise).
/// @cmdbuf_size: in, bytes of instructions: non-zero, a multiple of
///               DRM_ONPU_INSN_SIZE, at most DRM_ONPU_MAX_CMDBUF_SIZE, and
///               offset + size within the object (-EINVAL otherwise).
/// @bo_count: in, entries at @bos, at most DRM_ONPU_MAX_JOB_BOS (-EINVAL).
/// @bos: in, user pointer to an array of &drm_onpu_bo_ref: every object the
///       job touches besides the command buffer (which is implicitly read).
///       The job holds these objects until it ends. A bad pointer gives
///       -EFAULT.
/// @in_syncobjs: in, user pointer to an array of u32 syncobj handles whose
///               fences must signal before the job runs.
/// @in_syncobj_count: in, entries at @in_syncobjs, at most
///                    DRM_ONPU_MAX_IN_SYNCOBJS (-EINVAL); a handle that
///                    names nothing gives -ENOENT.
/// @out_syncobj: in, 0 or a syncobj handle that receives the job's fence
///               (-ENOENT if it names nothing).
/// @timeout_ms: in, how long the job may run once it reaches the device;
///              0 for the default, at most DRM_ONPU_PARAM_JOB_TIMEOUT_MS
///              (-EINVAL). A job that runs longer is failed with
///              -ETIMEDOUT and the device is reset; jobs of other files
///              that were queued behind it run afterwards.
/// @pad: must be zero (-EINVAL otherwise).
/// @seqno: out, the job's sequence number, for DRM_IOCTL_ONPU_WAIT.
///
/// Returns 0 when the job is queued (it may still fail: see
/// &drm_onpu_wait), -EINTR/-ERESTARTSYS when a signal interrupted the wait
/// for the input fences, -ENOMEM, or -ENODEV when the device is gone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_submit {
    pub cmdbuf_handle: u32,
    pub flags: u32,
    pub cmdbuf_offset: u64,
    pub cmdbuf_size: u32,
    pub bo_count: u32,
    pub bos: u64,
    pub in_syncobjs: u64,
    pub in_syncobj_count: u32,
    pub out_syncobj: u32,
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
/// DRM_ONPU_JOB_CANCELED: the job never ran: the device went away or its
///                        file was closed first.
pub const DRM_ONPU_JOB_OK: u32 = 0;
pub const DRM_ONPU_JOB_TIMEDOUT: u32 = 0x100;
pub const DRM_ONPU_JOB_CANCELED: u32 = 0x101;

/// struct drm_onpu_wait - wait for a job of this file and read its outcome
///
/// @seqno: in, a sequence number DRM_IOCTL_ONPU_SUBMIT returned to this
///         file (-ENOENT for any other, or one this file already reaped).
/// @timeout_ns: in, how long to wait, relative, in nanoseconds; 0 polls.
///              Negative gives -EINVAL.
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
/// @profile: in, user pointer to a &drm_onpu_job_profile (-EFAULT when bad).
///
/// Returns 0 once the job has ended, whatever its outcome (read @status);
/// the job is then reaped, and its @seqno forgotten. -ETIMEDOUT when
/// @timeout_ns passed first (the job is still queued or running),
/// -ERESTARTSYS on a signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_wait {
    pub seqno: u64,
    pub timeout_ns: i64,
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
/// @timeout_ns: in, relative, in nanoseconds; 0 polls; negative gives
///              -EINVAL.
///
/// Returns 0 once every job (of any file, also through PRIME) that uses the
/// object has ended, -ETIMEDOUT if one still runs after @timeout_ns,
/// -ERESTARTSYS on a signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_wait_bo {
    pub handle: u32,
    pub flags: u32,
    pub timeout_ns: i64,
}

pub const DRM_IOCTL_ONPU_SUBMIT: u32 =
    drm_iowr(DRM_ONPU_SUBMIT, core::mem::size_of::<drm_onpu_submit>());
pub const DRM_IOCTL_ONPU_WAIT: u32 = drm_iowr(DRM_ONPU_WAIT, core::mem::size_of::<drm_onpu_wait>());
pub const DRM_IOCTL_ONPU_WAIT_BO: u32 =
    drm_iowr(DRM_ONPU_WAIT_BO, core::mem::size_of::<drm_onpu_wait_bo>());
