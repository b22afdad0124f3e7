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

/// Driver-private command numbers (offsets from DRM_COMMAND_BASE).
pub const DRM_ONPU_GET_PARAM: u32 = 0x00;
pub const DRM_ONPU_BO_CREATE: u32 = 0x01;
pub const DRM_ONPU_BO_INFO: u32 = 0x02;

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
/// One past the last parameter.
pub const DRM_ONPU_PARAM_COUNT: u32 = 8;

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

pub const DRM_IOCTL_ONPU_GET_PARAM: u32 =
    drm_iowr(DRM_ONPU_GET_PARAM, core::mem::size_of::<drm_onpu_get_param>());

/// struct drm_onpu_bo_create - create a buffer object
///
/// @size: in, the size in bytes, 1..=DRM_ONPU_BO_MAX_SIZE; out, the size
///        rounded up to whole pages. 0 or too large gives -EINVAL.
/// @flags: in, must be zero (-EINVAL otherwise).
/// @handle: out, the GEM handle of the new object, for this file.
///
/// Memory comes from shmem; -ENOMEM when it cannot be had.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_bo_create {
    pub size: u64,
    pub flags: u32,
    pub handle: u32,
}

/// struct drm_onpu_bo_info - describe a buffer object
///
/// @handle: in, a GEM handle of this file (-ENOENT if it names nothing).
/// @flags: in, must be zero (-EINVAL otherwise).
/// @size: out, the object's size in bytes.
/// @mmap_offset: out, the offset to pass to mmap() on the device file to
///               map the object into the CPU's address space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct drm_onpu_bo_info {
    pub handle: u32,
    pub flags: u32,
    pub size: u64,
    pub mmap_offset: u64,
}

pub const DRM_IOCTL_ONPU_BO_CREATE: u32 =
    drm_iowr(DRM_ONPU_BO_CREATE, core::mem::size_of::<drm_onpu_bo_create>());
pub const DRM_IOCTL_ONPU_BO_INFO: u32 =
    drm_iowr(DRM_ONPU_BO_INFO, core::mem::size_of::<drm_onpu_bo_info>());
