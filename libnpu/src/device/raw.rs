//! The onpu uAPI one ioctl at a time, for tools and tests of the driver
//! itself: every field as the caller sets it (including values the driver
//! must refuse), errors as the raw errno the kernel gave (e.g.
//! `libc::EINVAL`), nothing checked or retried on the way. [`Device`]
//! (super) is built on these calls; programs that want a device rather
//! than a test of one use it instead.
//!
//! [`Device`]: super::Device

use npu_uapi as uapi;
use npu_uapi::drm_core;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A uAPI argument struct and the one ioctl that takes it, so that
/// [`ioctl`] can only pair a request with its own struct.
pub trait Arg: private::Sealed {
    const REQUEST: u32;
}

mod private {
    pub trait Sealed {}
}

macro_rules! args {
    ($($t:ty => $req:expr),* $(,)?) => {
        $(
            impl private::Sealed for $t {}
            impl Arg for $t {
                const REQUEST: u32 = $req;
            }
        )*
    };
}

args! {
    uapi::drm_onpu_get_param => uapi::DRM_IOCTL_ONPU_GET_PARAM,
    uapi::drm_onpu_bo_create => uapi::DRM_IOCTL_ONPU_BO_CREATE,
    uapi::drm_onpu_bo_info => uapi::DRM_IOCTL_ONPU_BO_INFO,
    uapi::drm_onpu_context_create => uapi::DRM_IOCTL_ONPU_CONTEXT_CREATE,
    uapi::drm_onpu_context_destroy => uapi::DRM_IOCTL_ONPU_CONTEXT_DESTROY,
    uapi::drm_onpu_submit => uapi::DRM_IOCTL_ONPU_SUBMIT,
    uapi::drm_onpu_wait => uapi::DRM_IOCTL_ONPU_WAIT,
    uapi::drm_onpu_wait_bo => uapi::DRM_IOCTL_ONPU_WAIT_BO,
    drm_core::drm_gem_close => drm_core::DRM_IOCTL_GEM_CLOSE,
    drm_core::drm_syncobj_create => drm_core::DRM_IOCTL_SYNCOBJ_CREATE,
    drm_core::drm_syncobj_destroy => drm_core::DRM_IOCTL_SYNCOBJ_DESTROY,
    drm_core::drm_syncobj_wait => drm_core::DRM_IOCTL_SYNCOBJ_WAIT,
}

/// DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE (include/uapi/drm/drm.h):
/// export the syncobj's current fence as a sync_file, not the syncobj.
pub const SYNCOBJ_EXPORT_SYNC_FILE: u32 = 1 << 0;

/// The errno of the last failed call (EIO if there is none).
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(nix::libc::EIO)
}

/// `request` with `arg`; the ioctl's return value, or the errno.
///
/// # Safety
/// `request` must take a `T` (its size encoded in the number), and any
/// pointer fields of `arg` must point where the driver may read or write.
unsafe fn call<T>(fd: impl AsFd, request: u32, arg: &mut T) -> Result<i32, i32> {
    // SAFETY: `arg` is a valid, exclusively borrowed `T` for the call; the
    // rest is the caller's promise.
    let r = unsafe {
        nix::libc::ioctl(
            fd.as_fd().as_raw_fd(),
            request as nix::libc::c_ulong,
            arg as *mut T,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// The ioctl that takes `T`, with `arg` exactly as given; the raw errno on
/// failure. Pointer fields (SUBMIT's arrays, SYNCOBJ_WAIT's handles) are
/// passed through: the kernel only reads through them, with
/// copy_from_user, so a bad address is its EFAULT, never a write to our
/// memory.
pub fn ioctl<T: Arg>(fd: impl AsFd, arg: &mut T) -> Result<i32, i32> {
    // SAFETY: T::REQUEST is the uAPI's request for `T` (the `args!` table);
    // pointer fields are only read by the kernel, which checks them.
    unsafe { call(fd, T::REQUEST, arg) }
}

/// The onpu accel nodes, in number order (accel2 before accel10).
pub fn find_devices() -> Vec<PathBuf> {
    super::find_devices()
}

/// The first onpu accel node.
pub fn find_device() -> io::Result<PathBuf> {
    find_devices()
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no onpu accel device"))
}

/// Open a node read-write, nothing asked of it.
pub fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

pub fn get_param(fd: impl AsFd, param: u32) -> Result<u64, i32> {
    let mut p = uapi::drm_onpu_get_param {
        param,
        ..Default::default()
    };
    ioctl(fd, &mut p)?;
    Ok(p.value)
}

/// A buffer object of a file: handle, size, CPU mapping offset.
#[derive(Clone, Copy, Debug)]
pub struct Bo {
    pub handle: u32,
    pub size: u64,
    pub mmap_offset: u64,
}

pub fn bo_create(fd: impl AsFd, size: u64) -> Result<Bo, i32> {
    let mut c = uapi::drm_onpu_bo_create {
        size,
        ..Default::default()
    };
    ioctl(fd.as_fd(), &mut c)?;
    bo_info(fd, c.handle)
}

pub fn bo_info(fd: impl AsFd, handle: u32) -> Result<Bo, i32> {
    let i = bo_info_raw(fd, handle)?;
    Ok(Bo {
        handle,
        size: i.size,
        mmap_offset: i.mmap_offset,
    })
}

/// BO_INFO's whole answer.
pub fn bo_info_raw(fd: impl AsFd, handle: u32) -> Result<uapi::drm_onpu_bo_info, i32> {
    let mut i = uapi::drm_onpu_bo_info {
        handle,
        ..Default::default()
    };
    ioctl(fd, &mut i)?;
    Ok(i)
}

/// The buffer object's NPU address in this file's address space.
pub fn bo_npu_addr(fd: impl AsFd, handle: u32) -> Result<u64, i32> {
    Ok(bo_info_raw(fd, handle)?.npu_addr)
}

pub fn gem_close(fd: impl AsFd, handle: u32) -> Result<(), i32> {
    let mut c = drm_core::drm_gem_close { handle, pad: 0 };
    ioctl(fd, &mut c).map(drop)
}

/// Export a buffer object as a dma-buf file descriptor.
pub fn prime_export(fd: impl AsFd, handle: u32) -> Result<OwnedFd, i32> {
    let mut p = drm_core::drm_prime_handle {
        handle,
        flags: drm_core::DRM_CLOEXEC | drm_core::DRM_RDWR,
        fd: -1,
    };
    // SAFETY: PRIME_HANDLE_TO_FD takes a drm_prime_handle.
    unsafe { call(fd, drm_core::DRM_IOCTL_PRIME_HANDLE_TO_FD, &mut p) }?;
    // SAFETY: the kernel just created this descriptor for us; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(p.fd) })
}

/// Import a dma-buf (any descriptor: the driver refuses what is not one).
pub fn prime_import(fd: impl AsFd, dmabuf: &impl AsFd) -> Result<u32, i32> {
    let mut p = drm_core::drm_prime_handle {
        handle: 0,
        flags: 0,
        fd: dmabuf.as_fd().as_raw_fd(),
    };
    // SAFETY: PRIME_FD_TO_HANDLE takes a drm_prime_handle.
    unsafe { call(fd, drm_core::DRM_IOCTL_PRIME_FD_TO_HANDLE, &mut p) }?;
    Ok(p.handle)
}

/// CONTEXT_CREATE: a new NPU address space of this file; its id.
pub fn context_create(fd: impl AsFd) -> Result<u32, i32> {
    let mut c = uapi::drm_onpu_context_create::default();
    ioctl(fd, &mut c)?;
    Ok(c.context_id)
}

/// CONTEXT_DESTROY with every field as given.
pub fn context_destroy_raw(
    fd: impl AsFd,
    req: &mut uapi::drm_onpu_context_destroy,
) -> Result<(), i32> {
    ioctl(fd, req).map(drop)
}

/// CONTEXT_DESTROY of `context_id`.
pub fn context_destroy(fd: impl AsFd, context_id: u32) -> Result<(), i32> {
    let mut d = uapi::drm_onpu_context_destroy { context_id, pad: 0 };
    context_destroy_raw(fd, &mut d)
}

/// Submit with every field as given; the sequence number.
pub fn submit(fd: impl AsFd, req: &mut uapi::drm_onpu_submit) -> Result<u64, i32> {
    ioctl(fd, req)?;
    Ok(req.seqno)
}

/// Submit `cmdbuf` (from offset 0) using `bos` (handle, DRM_ONPU_BO_* flags).
pub fn submit_simple(
    fd: impl AsFd,
    cmdbuf: &Bo,
    size: u32,
    bos: &[uapi::drm_onpu_bo_ref],
    timeout_ms: u32,
) -> Result<u64, i32> {
    let mut req = uapi::drm_onpu_submit {
        cmdbuf_handle: cmdbuf.handle,
        cmdbuf_size: size,
        bo_count: bos.len() as u32,
        bos: bos.as_ptr() as u64,
        timeout_ms,
        ..Default::default()
    };
    submit(fd, &mut req)
}

/// WAIT for a job (`timeout_ns` relative, passed as is); the outcome.
pub fn wait(fd: impl AsFd, seqno: u64, timeout_ns: i64) -> Result<uapi::drm_onpu_wait, i32> {
    let mut w = uapi::drm_onpu_wait {
        seqno,
        timeout_ns,
        ..Default::default()
    };
    ioctl(fd, &mut w)?;
    Ok(w)
}

pub fn wait_bo(fd: impl AsFd, handle: u32, timeout_ns: i64) -> Result<(), i32> {
    let mut w = uapi::drm_onpu_wait_bo {
        handle,
        flags: 0,
        timeout_ns,
    };
    ioctl(fd, &mut w).map(drop)
}

pub fn syncobj_create(fd: impl AsFd, signaled: bool) -> Result<u32, i32> {
    let flags = if signaled {
        drm_core::DRM_SYNCOBJ_CREATE_SIGNALED
    } else {
        0
    };
    let mut c = drm_core::drm_syncobj_create { handle: 0, flags };
    ioctl(fd, &mut c)?;
    Ok(c.handle)
}

pub fn syncobj_destroy(fd: impl AsFd, handle: u32) -> Result<(), i32> {
    let mut d = drm_core::drm_syncobj_destroy { handle, pad: 0 };
    ioctl(fd, &mut d).map(drop)
}

/// The fence in a syncobj as a sync_file descriptor (EINVAL if it holds
/// none yet).
pub fn syncobj_export_sync_file(fd: impl AsFd, handle: u32) -> Result<OwnedFd, i32> {
    let mut h = drm_core::drm_syncobj_handle {
        handle,
        flags: SYNCOBJ_EXPORT_SYNC_FILE,
        fd: -1,
        pad: 0,
    };
    // SAFETY: SYNCOBJ_HANDLE_TO_FD takes a drm_syncobj_handle.
    unsafe { call(fd, drm_core::DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &mut h) }?;
    // SAFETY: the kernel just created this descriptor for us; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(h.fd) })
}

/// DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS_IMPORT_SYNC_FILE (include/uapi/drm/drm.h):
/// put a sync_file's fence into an existing syncobj.
pub const SYNCOBJ_IMPORT_SYNC_FILE: u32 = 1 << 0;

/// Put the fence of `sync_file` into the syncobj `handle`.
pub fn syncobj_import_sync_file(
    fd: impl AsFd,
    handle: u32,
    sync_file: impl AsFd,
) -> Result<(), i32> {
    let mut h = drm_core::drm_syncobj_handle {
        handle,
        flags: SYNCOBJ_IMPORT_SYNC_FILE,
        fd: sync_file.as_fd().as_raw_fd(),
        pad: 0,
    };
    // SAFETY: SYNCOBJ_FD_TO_HANDLE takes a drm_syncobj_handle.
    unsafe { call(fd, drm_core::DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE, &mut h) }.map(drop)
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock DRM syncobj waits use).
pub fn monotonic_ns() -> Result<i64, i32> {
    let now =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_err(|e| e as i32)?;
    Ok(now
        .tv_sec()
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec()))
}

/// SYNCOBJ_WAIT (WAIT_ALL, and WAIT_FOR_SUBMIT if `for_submit`) for one
/// syncobj until the absolute CLOCK_MONOTONIC time `deadline_ns`.
pub fn syncobj_wait_until(
    fd: impl AsFd,
    handle: u32,
    deadline_ns: i64,
    for_submit: bool,
) -> Result<(), i32> {
    let handles = [handle];
    let mut flags = drm_core::DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL;
    if for_submit {
        flags |= drm_core::DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT;
    }
    let mut w = drm_core::drm_syncobj_wait {
        handles: handles.as_ptr() as u64,
        timeout_nsec: deadline_ns,
        count_handles: 1,
        flags,
        ..Default::default()
    };
    ioctl(fd, &mut w).map(drop)
}

/// Wait for a syncobj's fence, `timeout_ms` from now (WAIT_ALL only: a
/// syncobj without a fence is an error, EINVAL).
pub fn syncobj_wait(fd: impl AsFd, handle: u32, timeout_ms: i64) -> Result<(), i32> {
    let deadline = monotonic_ns()?.saturating_add(timeout_ms.saturating_mul(1_000_000));
    syncobj_wait_until(fd, handle, deadline, false)
}

/// CAPS.FAULT_INJECTION (Documentation/hw/npu-hw.rst): the device server
/// was started with fault-injection rules.
pub const CAPS_FAULT_INJECTION: u64 = 1 << 31;

/// Whether the device injects faults; a failing GET_PARAM is an error,
/// not "no".
pub fn fault_injection(fd: impl AsFd) -> Result<bool, String> {
    get_param(fd, uapi::DRM_ONPU_PARAM_CAPS)
        .map(|caps| caps & CAPS_FAULT_INJECTION != 0)
        .map_err(|e| format!("GET_PARAM(CAPS): errno {e}"))
}

/// A CPU mapping of a buffer object, unmapped on drop.
pub struct Mapping {
    map: memmap2::MmapRaw,
}

impl Mapping {
    /// Map `bo` of the file `fd` at its mmap offset, shared, read-write.
    pub fn new(fd: &impl AsFd, bo: &Bo) -> io::Result<Mapping> {
        let len =
            usize::try_from(bo.size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let map = memmap2::MmapOptions::new()
            .offset(bo.mmap_offset)
            .len(len)
            .map_raw(fd.as_fd().as_raw_fd())?;
        Ok(Mapping { map })
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping covers `len` bytes for as long as `self`
        // lives, and `&mut self` makes this the only view from Rust (the
        // device may write it: the caller waits for its jobs first).
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), self.map.len()) }
    }
}
