//! The DRM core ioctls the stack uses on accel nodes (from the kernel's
//! include/uapi/drm/drm.h), for userspace. Not part of the onpu driver's
//! own ABI, so not in onpu_accel.h (nor in the bindings generated from it).
#![allow(non_camel_case_types)]

/// DRM's ioctl type letter and the first driver-private command number.
pub const DRM_IOCTL_BASE: u32 = b'd' as u32;
pub const DRM_COMMAND_BASE: u32 = 0x40;

const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn drm_ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (DRM_IOCTL_BASE << 8) | nr
}

/// struct drm_gem_close: release a GEM handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_gem_close {
    pub handle: u32,
    pub pad: u32,
}

/// struct drm_prime_handle: GEM handle <-> dma-buf file descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_prime_handle {
    pub handle: u32,
    /// DRM_CLOEXEC | DRM_RDWR for export.
    pub flags: u32,
    pub fd: i32,
}

pub const DRM_CLOEXEC: u32 = 0o2000000;
pub const DRM_RDWR: u32 = 0o2;

pub const DRM_IOCTL_GEM_CLOSE: u32 =
    drm_ioc(IOC_WRITE, 0x09, core::mem::size_of::<drm_gem_close>());
pub const DRM_IOCTL_PRIME_HANDLE_TO_FD: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0x2d,
    core::mem::size_of::<drm_prime_handle>(),
);
pub const DRM_IOCTL_PRIME_FD_TO_HANDLE: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0x2e,
    core::mem::size_of::<drm_prime_handle>(),
);

/// struct drm_syncobj_create: a new syncobj (flags: DRM_SYNCOBJ_CREATE_SIGNALED).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_syncobj_create {
    pub handle: u32,
    pub flags: u32,
}

pub const DRM_SYNCOBJ_CREATE_SIGNALED: u32 = 1 << 0;

/// struct drm_syncobj_destroy: release a syncobj handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_syncobj_destroy {
    pub handle: u32,
    pub pad: u32,
}

/// struct drm_syncobj_handle: syncobj handle <-> file descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_syncobj_handle {
    pub handle: u32,
    pub flags: u32,
    pub fd: i32,
    pub pad: u32,
}

/// struct drm_syncobj_wait: wait for syncobjs; `timeout_nsec` is absolute
/// (CLOCK_MONOTONIC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_syncobj_wait {
    pub handles: u64,
    pub timeout_nsec: i64,
    pub count_handles: u32,
    pub flags: u32,
    pub first_signaled: u32,
    pub pad: u32,
    pub deadline_nsec: u64,
}

pub const DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL: u32 = 1 << 0;
pub const DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT: u32 = 1 << 1;

pub const DRM_IOCTL_SYNCOBJ_CREATE: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xbf,
    core::mem::size_of::<drm_syncobj_create>(),
);
pub const DRM_IOCTL_SYNCOBJ_DESTROY: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xc0,
    core::mem::size_of::<drm_syncobj_destroy>(),
);
pub const DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xc1,
    core::mem::size_of::<drm_syncobj_handle>(),
);
pub const DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xc2,
    core::mem::size_of::<drm_syncobj_handle>(),
);
pub const DRM_IOCTL_SYNCOBJ_WAIT: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xc3,
    core::mem::size_of::<drm_syncobj_wait>(),
);

/// struct drm_syncobj_array: syncobj handles (SIGNAL: attach a signalled
/// fence to each).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_syncobj_array {
    pub handles: u64,
    pub count_handles: u32,
    pub pad: u32,
}

/// struct drm_syncobj_timeline_array: syncobj handles with a point each
/// (TIMELINE_SIGNAL: attach a signalled fence as the point; QUERY: read
/// each timeline's last point).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct drm_syncobj_timeline_array {
    pub handles: u64,
    pub points: u64,
    pub count_handles: u32,
    pub flags: u32,
}

pub const DRM_IOCTL_SYNCOBJ_SIGNAL: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xc5,
    core::mem::size_of::<drm_syncobj_array>(),
);
pub const DRM_IOCTL_SYNCOBJ_QUERY: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xcb,
    core::mem::size_of::<drm_syncobj_timeline_array>(),
);
pub const DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL: u32 = drm_ioc(
    IOC_READ | IOC_WRITE,
    0xcd,
    core::mem::size_of::<drm_syncobj_timeline_array>(),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_drm_h() {
        // Values of the kernel's DRM_IOW(0x09, ...) and DRM_IOWR(0x2d/0x2e, ...).
        assert_eq!(DRM_IOCTL_GEM_CLOSE, 0x4008_6409);
        assert_eq!(DRM_IOCTL_PRIME_HANDLE_TO_FD, 0xc00c_642d);
        assert_eq!(DRM_IOCTL_PRIME_FD_TO_HANDLE, 0xc00c_642e);
        // DRM_IOWR(0xBF..0xC3, ...) from drm.h.
        assert_eq!(DRM_IOCTL_SYNCOBJ_CREATE, 0xc008_64bf);
        assert_eq!(DRM_IOCTL_SYNCOBJ_DESTROY, 0xc008_64c0);
        assert_eq!(DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, 0xc010_64c1);
        assert_eq!(DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, 0xc010_64c2);
        assert_eq!(DRM_IOCTL_SYNCOBJ_WAIT, 0xc028_64c3);
        // DRM_IOWR(0xC5, 16 bytes), DRM_IOWR(0xCB/0xCD, 24 bytes).
        assert_eq!(DRM_IOCTL_SYNCOBJ_SIGNAL, 0xc010_64c5);
        assert_eq!(DRM_IOCTL_SYNCOBJ_QUERY, 0xc018_64cb);
        assert_eq!(DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL, 0xc018_64cd);
    }
}
