/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note OR MIT */
/*
 * onpu_accel.h - uAPI of the onpu DRM accel driver (the open NPU stack)
 *
 * The definitions in uapi/src/abi.rs are the source; this header is kept by
 * hand and checked against them by `cargo test -p npu-uapi`.
 */
#ifndef __ONPU_ACCEL_H__
#define __ONPU_ACCEL_H__

#include "drm.h"

#if defined(__cplusplus)
extern "C" {
#endif

#define DRM_ONPU_GET_PARAM		0x00
#define DRM_ONPU_BO_CREATE		0x01
#define DRM_ONPU_BO_INFO		0x02
#define DRM_ONPU_SUBMIT			0x03
#define DRM_ONPU_WAIT			0x04
#define DRM_ONPU_CONTEXT_CREATE		0x05
#define DRM_ONPU_CONTEXT_DESTROY	0x06
#define DRM_ONPU_WAIT_BO		0x07

#define DRM_IOCTL_ONPU_GET_PARAM \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_GET_PARAM, struct drm_onpu_get_param)
#define DRM_IOCTL_ONPU_BO_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_BO_CREATE, struct drm_onpu_bo_create)
#define DRM_IOCTL_ONPU_BO_INFO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_BO_INFO, struct drm_onpu_bo_info)
#define DRM_IOCTL_ONPU_CONTEXT_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_CONTEXT_CREATE, struct drm_onpu_context_create)
#define DRM_IOCTL_ONPU_CONTEXT_DESTROY \
	DRM_IOW(DRM_COMMAND_BASE + DRM_ONPU_CONTEXT_DESTROY, struct drm_onpu_context_destroy)
#define DRM_IOCTL_ONPU_SUBMIT \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_SUBMIT, struct drm_onpu_submit)
#define DRM_IOCTL_ONPU_WAIT \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_WAIT, struct drm_onpu_wait)
#define DRM_IOCTL_ONPU_WAIT_BO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_WAIT_BO, struct drm_onpu_wait_bo)

/* Largest buffer object: 4 GiB. */
#define DRM_ONPU_BO_MAX_SIZE		(1ULL << 32)

/**
 * enum drm_onpu_param - parameters for &drm_onpu_get_param.param
 *
 * @DRM_ONPU_PARAM_DEVICE_ID: PCI device ID.
 * @DRM_ONPU_PARAM_REVISION: PCI revision.
 * @DRM_ONPU_PARAM_ISA_VERSION: ISA version, major << 16 | minor.
 * @DRM_ONPU_PARAM_SRAM_SIZE: on-chip SRAM size in bytes.
 * @DRM_ONPU_PARAM_NUM_CONTEXTS: hardware contexts (concurrent address spaces).
 * @DRM_ONPU_PARAM_VA_BITS: width of an NPU virtual address.
 * @DRM_ONPU_PARAM_CAPS: capability bits of the hardware.
 * @DRM_ONPU_PARAM_CLOCK_KHZ: modelled clock, to turn cycle counts into time.
 * @DRM_ONPU_PARAM_VA_START: first NPU virtual address the kernel hands out.
 * @DRM_ONPU_PARAM_VA_END: end (exclusive) of that range.
 * @DRM_ONPU_PARAM_JOBS_SUBMITTED: jobs submitted since the device was bound.
 * @DRM_ONPU_PARAM_JOBS_COMPLETED: jobs that ended, successfully or not.
 * @DRM_ONPU_PARAM_JOBS_FAILED: jobs that ended with a fault or a timeout.
 * @DRM_ONPU_PARAM_RESETS: device resets done for recovery.
 * @DRM_ONPU_PARAM_JOB_TIMEOUT_MS: default (and largest) job timeout.
 * @DRM_ONPU_PARAM_HW_CONTEXT: the hardware context of this file.
 */
enum drm_onpu_param {
	DRM_ONPU_PARAM_DEVICE_ID = 0,
	DRM_ONPU_PARAM_REVISION = 1,
	DRM_ONPU_PARAM_ISA_VERSION = 2,
	DRM_ONPU_PARAM_SRAM_SIZE = 3,
	DRM_ONPU_PARAM_NUM_CONTEXTS = 4,
	DRM_ONPU_PARAM_VA_BITS = 5,
	DRM_ONPU_PARAM_CAPS = 6,
	DRM_ONPU_PARAM_CLOCK_KHZ = 7,
	DRM_ONPU_PARAM_VA_START = 8,
	DRM_ONPU_PARAM_VA_END = 9,
	DRM_ONPU_PARAM_JOBS_SUBMITTED = 10,
	DRM_ONPU_PARAM_JOBS_COMPLETED = 11,
	DRM_ONPU_PARAM_JOBS_FAILED = 12,
	DRM_ONPU_PARAM_RESETS = 13,
	DRM_ONPU_PARAM_JOB_TIMEOUT_MS = 14,
	DRM_ONPU_PARAM_HW_CONTEXT = 15,
};

/**
 * struct drm_onpu_get_param - query a device parameter
 *
 * Errors: -EINVAL for an unknown @param or a non-zero @pad.
 */
struct drm_onpu_get_param {
	/** @param: in, one of &enum drm_onpu_param. */
	__u32 param;
	/** @pad: must be zero. */
	__u32 pad;
	/** @value: out, the value of the parameter. */
	__u64 value;
};

/**
 * struct drm_onpu_bo_create - create a buffer object
 *
 * Memory comes from shmem; the object is mapped (read/write) into this
 * file's NPU address space. Errors: -EINVAL for a zero or too large @size or
 * non-zero @flags; -ENOMEM when memory cannot be had; -ENOSPC when the
 * file's NPU address space is full.
 */
struct drm_onpu_bo_create {
	/**
	 * @size: in, the size in bytes, 1 to DRM_ONPU_BO_MAX_SIZE; out, the
	 * size rounded up to whole pages.
	 */
	__u64 size;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @handle: out, the GEM handle of the new object, for this file. */
	__u32 handle;
	/** @npu_addr: out, the object's address in this file's NPU space. */
	__u64 npu_addr;
};

/**
 * struct drm_onpu_bo_info - describe a buffer object
 *
 * Errors: -ENOENT when @handle names nothing; -EINVAL for non-zero @flags.
 */
struct drm_onpu_bo_info {
	/** @handle: in, a GEM handle of this file. */
	__u32 handle;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @size: out, the object's size in bytes. */
	__u64 size;
	/**
	 * @mmap_offset: out, the offset to pass to mmap() on the device file
	 * to map the object into the CPU's address space.
	 */
	__u64 mmap_offset;
	/**
	 * @npu_addr: out, where the object is mapped in this file's NPU
	 * address space; every handle maps its object, also one imported
	 * through PRIME (each importing file at its own address).
	 */
	__u64 npu_addr;
};

/* Most contexts one file may have at a time. */
#define DRM_ONPU_MAX_CONTEXTS		64

/**
 * struct drm_onpu_context_create - create an NPU address space
 *
 * A buffer object has the same NPU address in every context of its file; a
 * context maps it when a job of the context first uses it. A context holds
 * one of the device's hardware contexts only while it has jobs in the
 * device's rings, so contexts are not limited by DRM_ONPU_PARAM_NUM_CONTEXTS.
 *
 * Errors: -EINVAL for non-zero @flags; -ENOSPC when the file has
 * DRM_ONPU_MAX_CONTEXTS contexts; -ENOMEM; -ENODEV when the device is gone.
 */
struct drm_onpu_context_create {
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @context_id: out, the context's id in this file (from 1). */
	__u32 context_id;
};

/**
 * struct drm_onpu_context_destroy - destroy a context
 *
 * Jobs of the context already submitted still run; its address space goes
 * when the last of them has ended.
 *
 * Errors: -ENOENT for an unknown @context_id; -EINVAL for non-zero @pad;
 * -EBUSY while queues of the file use the context.
 */
struct drm_onpu_context_destroy {
	/** @context_id: in, a context of this file. */
	__u32 context_id;
	/** @pad: must be zero. */
	__u32 pad;
};

/* How a job uses a buffer object (&drm_onpu_bo_ref.flags). */
#define DRM_ONPU_BO_READ		(1 << 0)
#define DRM_ONPU_BO_WRITE		(1 << 1)

#define DRM_ONPU_MAX_JOB_BOS		256
#define DRM_ONPU_MAX_IN_SYNCOBJS	16
#define DRM_ONPU_MAX_CMDBUF_SIZE	(1 << 24)
#define DRM_ONPU_INSN_SIZE		64

/**
 * struct drm_onpu_bo_ref - a buffer object a job uses
 *
 * Reads wait for earlier writers of the object, writes for every earlier
 * user (implicit synchronisation through the object's reservation object).
 */
struct drm_onpu_bo_ref {
	/** @handle: a GEM handle of this file (-ENOENT if it names nothing). */
	__u32 handle;
	/** @flags: DRM_ONPU_BO_READ and/or DRM_ONPU_BO_WRITE, at least one. */
	__u32 flags;
};

/**
 * struct drm_onpu_submit - queue a job on the NPU
 *
 * Returns 0 once the job is queued (its outcome comes from
 * &drm_onpu_wait). Errors: -EINVAL for non-zero @flags or @pad, a
 * misaligned or out-of-range command buffer, too many objects or syncobjs,
 * unknown &drm_onpu_bo_ref flags or a too long @timeout_ms; -ENOENT for a
 * handle or syncobj that names nothing; -EFAULT for a bad user pointer;
 * -ERESTARTSYS when a signal interrupted the wait for input fences;
 * -ENODEV when the device is gone.
 */
struct drm_onpu_submit {
	/** @cmdbuf_handle: in, the object holding the command buffer. */
	__u32 cmdbuf_handle;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @cmdbuf_offset: in, multiple of DRM_ONPU_INSN_SIZE. */
	__u64 cmdbuf_offset;
	/**
	 * @cmdbuf_size: in, non-zero multiple of DRM_ONPU_INSN_SIZE, at most
	 * DRM_ONPU_MAX_CMDBUF_SIZE, within the object.
	 */
	__u32 cmdbuf_size;
	/** @bo_count: in, entries at @bos, at most DRM_ONPU_MAX_JOB_BOS. */
	__u32 bo_count;
	/** @bos: in, pointer to &struct drm_onpu_bo_ref[@bo_count]. */
	__u64 bos;
	/** @in_syncobjs: in, pointer to __u32 syncobj handles to wait for. */
	__u64 in_syncobjs;
	/** @in_syncobj_count: in, at most DRM_ONPU_MAX_IN_SYNCOBJS. */
	__u32 in_syncobj_count;
	/** @out_syncobj: in, 0 or a syncobj that receives the job's fence. */
	__u32 out_syncobj;
	/**
	 * @timeout_ms: in, longest run time on the device, 0 for the default,
	 * at most DRM_ONPU_PARAM_JOB_TIMEOUT_MS.
	 */
	__u32 timeout_ms;
	/** @pad: must be zero. */
	__u32 pad;
	/** @seqno: out, the job's sequence number. */
	__u64 seqno;
};

/*
 * &drm_onpu_submit.flags: record the job's profile (returned by WAIT);
 * -EINVAL when the device cannot (no JOB_PROFILE, bit 5, in CAPS).
 */
#define DRM_ONPU_SUBMIT_PROFILE		(1 << 0)

/**
 * struct drm_onpu_job_profile - what one job did on the device (the
 * device's profile record, Documentation/hw/npu-hw.rst)
 */
struct drm_onpu_job_profile {
	/** @cycles: modelled cycles of the job (not saturated). */
	__u64 cycles;
	/** @instructions: instructions fetched and decoded, END included. */
	__u64 instructions;
	/** @macs: multiply-accumulates of the MATMULs that completed. */
	__u64 macs;
	/** @dma_bytes_read: bytes read through the MMU, fetches included. */
	__u64 dma_bytes_read;
	/** @dma_bytes_written: bytes written through the MMU. */
	__u64 dma_bytes_written;
	/** @dma_engine_cycles: summed costs of DMA-engine instructions. */
	__u64 dma_engine_cycles;
	/** @compute_engine_cycles: summed costs of compute instructions. */
	__u64 compute_engine_cycles;
	/** @reserved: 0. */
	__u64 reserved;
};

/* &drm_onpu_wait.status values besides the device's fault codes (1..255). */
#define DRM_ONPU_JOB_OK			0
#define DRM_ONPU_JOB_TIMEDOUT		0x100
#define DRM_ONPU_JOB_CANCELED		0x101

/**
 * struct drm_onpu_wait - wait for a job of this file and read its outcome
 *
 * Returns 0 once the job has ended, whatever its outcome; the job is then
 * reaped. Errors: -ENOENT for a seqno this file does not have (or already
 * reaped); -EINVAL for non-zero @flags or a negative @timeout_ns;
 * -ETIMEDOUT when @timeout_ns passed first; -ERESTARTSYS on a signal.
 */
struct drm_onpu_wait {
	/** @seqno: in, from &drm_onpu_submit.seqno. */
	__u64 seqno;
	/** @timeout_ns: in, relative; 0 polls. */
	__s64 timeout_ns;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @status: out, 0, a device fault code or DRM_ONPU_JOB_*. */
	__u32 status;
	/** @error: out, 0, -EIO, -ETIMEDOUT or -ECANCELED (the fence error). */
	__s32 error;
	/**
	 * @profile_size: in, bytes at @profile (0: none); non-zero for a job
	 * submitted without DRM_ONPU_SUBMIT_PROFILE gives -EINVAL.
	 */
	__u32 profile_size;
	/** @fault_addr: out, faulting NPU address or command-buffer offset. */
	__u64 fault_addr;
	/** @cycles: out, modelled cycles the job took. */
	__u64 cycles;
	/**
	 * @profile: in, pointer to a struct drm_onpu_job_profile; at most
	 * @profile_size bytes of it are written.
	 */
	__u64 profile;
};

/**
 * struct drm_onpu_wait_bo - wait until no job uses a buffer object
 *
 * Errors: -ENOENT for a bad @handle; -EINVAL for non-zero @flags or a
 * negative @timeout_ns; -ETIMEDOUT when a job still uses the object.
 */
struct drm_onpu_wait_bo {
	/** @handle: in, a GEM handle of this file. */
	__u32 handle;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @timeout_ns: in, relative; 0 polls. */
	__s64 timeout_ns;
};

#if defined(__cplusplus)
}
#endif

#endif /* __ONPU_ACCEL_H__ */
