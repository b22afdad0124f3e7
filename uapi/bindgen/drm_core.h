/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note OR MIT */
/*
 * Input of scripts/uapi-bindgen.sh for uapi/src/drm_core.rs: the DRM core
 * ioctls the stack uses on accel nodes (GEM_CLOSE, PRIME, SYNCOBJ_*), from
 * the kernel's own include/uapi/drm/drm.h. Not the onpu driver's ABI, so
 * not in onpu_accel.h. fcntl.h gives DRM_CLOEXEC its value (O_CLOEXEC).
 */
#include <fcntl.h>
#include <drm/drm.h>
