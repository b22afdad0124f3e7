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

#define DRM_IOCTL_ONPU_GET_PARAM \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_GET_PARAM, struct drm_onpu_get_param)
#define DRM_IOCTL_ONPU_BO_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_BO_CREATE, struct drm_onpu_bo_create)
#define DRM_IOCTL_ONPU_BO_INFO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_BO_INFO, struct drm_onpu_bo_info)

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
 * Memory comes from shmem. Errors: -EINVAL for a zero or too large @size or
 * non-zero @flags; -ENOMEM when memory cannot be had.
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
};

#if defined(__cplusplus)
}
#endif

#endif /* __ONPU_ACCEL_H__ */
