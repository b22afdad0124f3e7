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

#define DRM_IOCTL_ONPU_GET_PARAM \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_ONPU_GET_PARAM, struct drm_onpu_get_param)

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

#if defined(__cplusplus)
}
#endif

#endif /* __ONPU_ACCEL_H__ */
