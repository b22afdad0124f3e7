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
#define DRM_ONPU_QUERY			0x01
#define DRM_ONPU_BO_CREATE		0x02
#define DRM_ONPU_BO_CREATE_USERPTR	0x03
#define DRM_ONPU_BO_INFO		0x04
#define DRM_ONPU_CONTEXT_CREATE		0x05
#define DRM_ONPU_CONTEXT_DESTROY	0x06
#define DRM_ONPU_QUEUE_CREATE		0x07
#define DRM_ONPU_QUEUE_DESTROY		0x08
#define DRM_ONPU_SUBMIT			0x09
#define DRM_ONPU_WAIT			0x0a
#define DRM_ONPU_WAIT_BO		0x0b

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
 * @DRM_ONPU_PARAM_JOB_TIMEOUT_MS: default (and largest) job timeout.
 * @DRM_ONPU_PARAM_NUM_PRIORITIES: queue priorities the driver offers.
 *
 * Device-wide job counters are in debugfs, not here.
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
	DRM_ONPU_PARAM_JOB_TIMEOUT_MS = 10,
	DRM_ONPU_PARAM_NUM_PRIORITIES = 11,
	DRM_ONPU_PARAM_COUNT = 12,
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

/*
 * Flags of &drm_onpu_bo_create.flags (and &drm_onpu_bo_info.bo_flags):
 * DRM_ONPU_BO_READ_ONLY: the NPU maps the object without write permission; a
 *   job that writes to it ends with the MMU_PERMISSION fault status, and
 *   listing it with DRM_ONPU_BO_WRITE in a SUBMIT gives -EACCES.
 * DRM_ONPU_BO_NO_MMAP: the CPU cannot map the object (BO_INFO's mmap_offset
 *   is 0; mmap() of a dma-buf exported from it gives -EACCES).
 * DRM_ONPU_BO_CPU_WC: write-combined CPU mapping (default: cached).
 */
#define DRM_ONPU_BO_READ_ONLY		(1 << 0)
#define DRM_ONPU_BO_NO_MMAP		(1 << 1)
#define DRM_ONPU_BO_CPU_WC		(1 << 2)
#define DRM_ONPU_BO_CREATE_FLAGS \
	(DRM_ONPU_BO_READ_ONLY | DRM_ONPU_BO_NO_MMAP | DRM_ONPU_BO_CPU_WC)

/**
 * enum drm_onpu_query_type - queries for &drm_onpu_query.query
 *
 * @DRM_ONPU_QUERY_CAPS: &struct drm_onpu_query_caps.
 * @DRM_ONPU_QUERY_COST_MODEL: &struct drm_onpu_query_cost_model.
 */
enum drm_onpu_query_type {
	DRM_ONPU_QUERY_CAPS = 0,
	DRM_ONPU_QUERY_COST_MODEL = 1,
};

/**
 * struct drm_onpu_query - read a structured description of the device
 *
 * Size protocol: @size 0 returns only the query's full size in @size; a
 * smaller non-zero @size gets the first @size bytes of the struct; @size
 * is always set to the full size on return. Errors: -EINVAL for an unknown
 * @query or non-zero @flags or @pad; -EFAULT for a bad @data.
 */
struct drm_onpu_query {
	/** @query: in, one of &enum drm_onpu_query_type. */
	__u32 query;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @size: in, bytes at @data; out, the full size of the struct. */
	__u32 size;
	/** @pad: must be zero. */
	__u32 pad;
	/** @data: in, user pointer to the query's struct. */
	__u64 data;
};

/**
 * struct drm_onpu_query_caps - what the device and the driver offer
 */
struct drm_onpu_query_caps {
	/** @device_id: PCI device ID. */
	__u32 device_id;
	/** @revision: PCI revision. */
	__u32 revision;
	/** @isa_version: ISA version, major << 16 | minor. */
	__u32 isa_version;
	/** @caps: the CAPS register. */
	__u32 caps;
	/** @sram_size: on-chip SRAM bytes. */
	__u32 sram_size;
	/** @num_contexts: hardware contexts. */
	__u32 num_contexts;
	/** @num_rings: submission rings (1 on a device without NUM_RINGS). */
	__u32 num_rings;
	/** @va_bits: width of an NPU virtual address. */
	__u32 va_bits;
	/** @va_start: first NPU address the kernel hands out. */
	__u64 va_start;
	/** @va_end: end (exclusive) of that range. */
	__u64 va_end;
	/** @clock_khz: modelled clock. */
	__u32 clock_khz;
	/** @max_job_bos: DRM_ONPU_MAX_JOB_BOS. */
	__u32 max_job_bos;
	/** @max_cmdbuf_size: DRM_ONPU_MAX_CMDBUF_SIZE. */
	__u32 max_cmdbuf_size;
	/** @job_timeout_ms: default (and largest) job timeout. */
	__u32 job_timeout_ms;
};

/**
 * struct drm_onpu_query_cost_model - the device's COST_* registers
 *
 * In register order; Documentation/hw/npu-hw.rst, "Cost model".
 */
struct drm_onpu_query_cost_model {
	/** @dma_bytes_per_cycle: DMA_BYTES_PER_CYCLE. */
	__u32 dma_bytes_per_cycle;
	/** @dma_latency: DMA_LATENCY. */
	__u32 dma_latency;
	/** @f32_macs_per_cycle: F32_MACS_PER_CYCLE. */
	__u32 f32_macs_per_cycle;
	/** @i8_macs_per_cycle: I8_MACS_PER_CYCLE. */
	__u32 i8_macs_per_cycle;
	/** @vector_elems_per_cycle: VECTOR_ELEMS_PER_CYCLE. */
	__u32 vector_elems_per_cycle;
	/** @special_elems_per_cycle: SPECIAL_ELEMS_PER_CYCLE. */
	__u32 special_elems_per_cycle;
	/** @insn_overhead: INSN_OVERHEAD. */
	__u32 insn_overhead;
	/** @walk_cycles: WALK_CYCLES. */
	__u32 walk_cycles;
};

/**
 * struct drm_onpu_bo_create - create a buffer object
 *
 * The NPU address is reserved at once; the memory (shmem) is allocated and
 * pinned, and the object mapped for the NPU, when a job first uses it or the
 * CPU maps it. Errors: -EINVAL for a zero or too large @size or unknown
 * @flags; -ENOSPC when the file's NPU address space is full; -ENOMEM when
 * memory cannot be had (at the first use: SUBMIT or mmap() fails with it).
 */
struct drm_onpu_bo_create {
	/**
	 * @size: in, the size in bytes, 1 to DRM_ONPU_BO_MAX_SIZE; out, the
	 * size rounded up to whole pages.
	 */
	__u64 size;
	/** @flags: in, DRM_ONPU_BO_* creation flags. */
	__u32 flags;
	/** @handle: out, the GEM handle of the new object, for this file. */
	__u32 handle;
	/** @npu_addr: out, the object's address in this file's NPU space. */
	__u64 npu_addr;
};

/**
 * struct drm_onpu_bo_create_userptr - a buffer object of the caller's memory
 *
 * The pages are pinned at once (long-term; for writing too unless
 * DRM_ONPU_BO_READ_ONLY) until the object is freed. The object is NO_MMAP
 * and cannot be exported through PRIME (-EINVAL). The pages count against
 * the creating process's RLIMIT_MEMLOCK (its pinned_vm) until the object is
 * freed. Errors: -EINVAL for an unaligned @user_ptr or @size, a zero or too
 * large @size, or a flag other than DRM_ONPU_BO_READ_ONLY; -EFAULT when a
 * page of the range is not mapped (with the access needed); -ENOMEM above
 * RLIMIT_MEMLOCK without CAP_IPC_LOCK, or out of memory; -ENOSPC as for
 * BO_CREATE.
 */
struct drm_onpu_bo_create_userptr {
	/** @user_ptr: in, the start of the memory, page aligned. */
	__u64 user_ptr;
	/** @size: in, bytes, a non-zero multiple of the page size. */
	__u64 size;
	/** @flags: in, 0 or DRM_ONPU_BO_READ_ONLY. */
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
	 * to map the object into the CPU's address space; 0 for an object
	 * the CPU may not map (DRM_ONPU_BO_NO_MMAP).
	 */
	__u64 mmap_offset;
	/**
	 * @npu_addr: out, the object's address in this file's NPU address
	 * space; every handle gets one, also one imported through PRIME
	 * (each importing file at its own address).
	 */
	__u64 npu_addr;
	/** @bo_flags: out, the DRM_ONPU_BO_* creation flags of the object. */
	__u32 bo_flags;
	/** @pad: out, zero. */
	__u32 pad;
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

/* &drm_onpu_queue_create.priority: priority p feeds the device's ring p. */
#define DRM_ONPU_PRIORITY_LOW		0
#define DRM_ONPU_PRIORITY_NORMAL	1
#define DRM_ONPU_PRIORITY_HIGH		2
#define DRM_ONPU_PRIORITY_REALTIME	3	/* needs CAP_SYS_NICE */

#define DRM_ONPU_MAX_QUEUES		64
#define DRM_ONPU_MAX_QUEUE_JOBS		64

/**
 * struct drm_onpu_queue_create - create a job queue
 *
 * Errors: -EINVAL for non-zero @flags or a priority above REALTIME;
 * -EACCES for REALTIME without CAP_SYS_NICE; -ENOENT for an unknown
 * @context_id; -ENOSPC when the file has DRM_ONPU_MAX_QUEUES queues.
 */
struct drm_onpu_queue_create {
	/** @context_id: in, a context of this file, 0 for the default one. */
	__u32 context_id;
	/** @priority: in, DRM_ONPU_PRIORITY_*. */
	__u32 priority;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @queue_id: out, the queue's id for SUBMIT (from 1). */
	__u32 queue_id;
};

/**
 * struct drm_onpu_queue_destroy - destroy a job queue
 *
 * Jobs already submitted still run. Errors: -ENOENT for an unknown
 * @queue_id; -EINVAL for non-zero @pad.
 */
struct drm_onpu_queue_destroy {
	/** @queue_id: in, a queue of this file. */
	__u32 queue_id;
	/** @pad: must be zero. */
	__u32 pad;
};

/**
 * struct drm_onpu_obj_array - an array of structures in user memory
 *
 * @stride must be at least the size of the element this kernel knows
 * (-EINVAL); bytes of an element past that size must be zero (-E2BIG).
 */
struct drm_onpu_obj_array {
	/** @stride: in, bytes from one element to the next. */
	__u32 stride;
	/** @count: in, number of elements. */
	__u32 count;
	/** @array: in, user pointer to the first element. */
	__u64 array;
};

/* &drm_onpu_bo_ref.flags: how the job uses the object. */
#define DRM_ONPU_BO_READ		(1 << 0)
#define DRM_ONPU_BO_WRITE		(1 << 1)

#define DRM_ONPU_MAX_JOB_BOS		256
#define DRM_ONPU_MAX_IN_SYNCS		16
#define DRM_ONPU_MAX_OUT_SYNCS		16
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

/*
 * &drm_onpu_sync.flags: inputs only: wait (in the kernel) until the point
 * has a fence, rather than failing with -EINVAL.
 */
#define DRM_ONPU_SYNC_WAIT_FOR_SUBMIT	(1 << 0)

/**
 * struct drm_onpu_sync - a syncobj (point) a job waits for or signals
 */
struct drm_onpu_sync {
	/** @handle: a syncobj handle of this file. */
	__u32 handle;
	/** @flags: DRM_ONPU_SYNC_*. */
	__u32 flags;
	/** @point: 0 for a binary syncobj, else a timeline point. */
	__u64 point;
};

/**
 * struct drm_onpu_submit - queue a job on the NPU
 *
 * Returns 0 once the job is queued (its dependencies are waited for in the
 * kernel; its outcome comes from &drm_onpu_wait). Errors: -EINVAL for
 * unknown @flags, non-zero @pad, a misaligned or out-of-range command
 * buffer, too many elements, a bad stride, unknown element flags, an input
 * without a fence (and without DRM_ONPU_SYNC_WAIT_FOR_SUBMIT), an output
 * point not above the timeline's last, or a too long @timeout_ms; -E2BIG
 * for non-zero bytes past an element's known size; -ENOENT for a queue or
 * handle that names nothing; -EAGAIN when the queue has
 * DRM_ONPU_MAX_QUEUE_JOBS jobs not yet ended (or the file 256 over all
 * its queues, destroyed ones too); -EFAULT for a bad user
 * pointer; -EIO when the device is wedged; -ENODEV when it is gone.
 */
struct drm_onpu_submit {
	/** @queue_id: in, a queue of this file. */
	__u32 queue_id;
	/** @flags: in, DRM_ONPU_SUBMIT_*. */
	__u32 flags;
	/** @cmdbuf_handle: in, the object holding the command buffer. */
	__u32 cmdbuf_handle;
	/**
	 * @cmdbuf_size: in, non-zero multiple of DRM_ONPU_INSN_SIZE, at most
	 * DRM_ONPU_MAX_CMDBUF_SIZE, within the object.
	 */
	__u32 cmdbuf_size;
	/** @cmdbuf_offset: in, multiple of DRM_ONPU_INSN_SIZE. */
	__u64 cmdbuf_offset;
	/** @bos: in, &struct drm_onpu_bo_ref, at most DRM_ONPU_MAX_JOB_BOS. */
	struct drm_onpu_obj_array bos;
	/** @in_syncs: in, &struct drm_onpu_sync, at most DRM_ONPU_MAX_IN_SYNCS. */
	struct drm_onpu_obj_array in_syncs;
	/** @out_syncs: in, &struct drm_onpu_sync, at most DRM_ONPU_MAX_OUT_SYNCS. */
	struct drm_onpu_obj_array out_syncs;
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
 * reaped); -EINVAL for non-zero @flags or a @profile_size for a job
 * submitted without DRM_ONPU_SUBMIT_PROFILE; -ETIMEDOUT when the deadline
 * passed first; -ERESTARTSYS on a signal (the restart keeps the deadline).
 */
struct drm_onpu_wait {
	/** @seqno: in, from &drm_onpu_submit.seqno. */
	__u64 seqno;
	/** @timeout_abs_ns: in, absolute CLOCK_MONOTONIC deadline; past polls. */
	__s64 timeout_abs_ns;
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
 * Errors: -ENOENT for a bad @handle; -EINVAL for non-zero @flags;
 * -ETIMEDOUT when a job still uses the object at the deadline.
 */
struct drm_onpu_wait_bo {
	/** @handle: in, a GEM handle of this file. */
	__u32 handle;
	/** @flags: in, must be zero. */
	__u32 flags;
	/** @timeout_abs_ns: in, absolute CLOCK_MONOTONIC deadline; past polls. */
	__s64 timeout_abs_ns;
};

/*
 * The ioctl numbers. An enum, not #defines, so that bindgen (the kernel's
 * uapi crate, the npu-uapi crate) turns them into Rust constants too.
 */
enum {
	DRM_IOCTL_ONPU_GET_PARAM =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_GET_PARAM, struct drm_onpu_get_param),
	DRM_IOCTL_ONPU_QUERY =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_QUERY, struct drm_onpu_query),
	DRM_IOCTL_ONPU_BO_CREATE =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_BO_CREATE, struct drm_onpu_bo_create),
	DRM_IOCTL_ONPU_BO_CREATE_USERPTR =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_BO_CREATE_USERPTR, struct drm_onpu_bo_create_userptr),
	DRM_IOCTL_ONPU_BO_INFO =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_BO_INFO, struct drm_onpu_bo_info),
	DRM_IOCTL_ONPU_CONTEXT_CREATE =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_CONTEXT_CREATE, struct drm_onpu_context_create),
	DRM_IOCTL_ONPU_CONTEXT_DESTROY =
		DRM_IOW(DRM_COMMAND_BASE + DRM_ONPU_CONTEXT_DESTROY, struct drm_onpu_context_destroy),
	DRM_IOCTL_ONPU_QUEUE_CREATE =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_QUEUE_CREATE, struct drm_onpu_queue_create),
	DRM_IOCTL_ONPU_QUEUE_DESTROY =
		DRM_IOW(DRM_COMMAND_BASE + DRM_ONPU_QUEUE_DESTROY, struct drm_onpu_queue_destroy),
	DRM_IOCTL_ONPU_SUBMIT =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_SUBMIT, struct drm_onpu_submit),
	DRM_IOCTL_ONPU_WAIT =
		DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_WAIT, struct drm_onpu_wait),
	DRM_IOCTL_ONPU_WAIT_BO =
		DRM_IOW(DRM_COMMAND_BASE + DRM_ONPU_WAIT_BO, struct drm_onpu_wait_bo),
};

#if defined(__cplusplus)
}
#endif

#endif /* __ONPU_ACCEL_H__ */
