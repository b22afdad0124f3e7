//! The onpu accel node and its ioctls, on the shared uAPI definitions.

use npu_uapi as uapi;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Find the first /dev/accel/accel* whose driver is onpu.
pub fn find_device() -> io::Result<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/class/accel")? {
        let e = e?;
        let name = e.file_name();
        let driver = std::fs::read_link(e.path().join("device/driver")).ok();
        if driver
            .as_deref()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "onpu")
        {
            found.push(Path::new("/dev/accel").join(name));
        }
    }
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no onpu accel device"))
}

pub fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// One ioctl with an in/out argument struct; the raw errno on failure.
pub fn ioctl<T>(file: &File, request: u32, arg: &mut T) -> Result<i32, i32> {
    // SAFETY: `arg` is a valid, exclusively borrowed `T` for the duration
    // of the call, and every request passed here is an _IOWR whose size is
    // `size_of::<T>()` (the uAPI crate computes the numbers from the types).
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request as libc::c_ulong, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(r)
    }
}

pub fn get_param(file: &File, param: u32) -> Result<u64, i32> {
    let mut p = uapi::drm_onpu_get_param {
        param,
        ..Default::default()
    };
    ioctl(file, uapi::DRM_IOCTL_ONPU_GET_PARAM, &mut p)?;
    Ok(p.value)
}

/// A buffer object of this file: handle, size, CPU mapping offset.
pub struct Bo {
    pub handle: u32,
    pub size: u64,
    pub mmap_offset: u64,
}

pub fn bo_create(file: &File, size: u64) -> Result<Bo, i32> {
    let mut c = uapi::drm_onpu_bo_create {
        size,
        ..Default::default()
    };
    ioctl(file, uapi::DRM_IOCTL_ONPU_BO_CREATE, &mut c)?;
    bo_info(file, c.handle)
}

pub fn bo_info(file: &File, handle: u32) -> Result<Bo, i32> {
    let mut i = uapi::drm_onpu_bo_info {
        handle,
        ..Default::default()
    };
    ioctl(file, uapi::DRM_IOCTL_ONPU_BO_INFO, &mut i)?;
    Ok(Bo {
        handle,
        size: i.size,
        mmap_offset: i.mmap_offset,
    })
}

pub fn gem_close(file: &File, handle: u32) -> Result<(), i32> {
    let mut c = uapi::drm_core::drm_gem_close { handle, pad: 0 };
    ioctl(file, uapi::drm_core::DRM_IOCTL_GEM_CLOSE, &mut c).map(|_| ())
}

/// Export a buffer object as a dma-buf file descriptor.
pub fn prime_export(file: &File, handle: u32) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    let mut p = uapi::drm_core::drm_prime_handle {
        handle,
        flags: uapi::drm_core::DRM_CLOEXEC | uapi::drm_core::DRM_RDWR,
        fd: -1,
    };
    ioctl(file, uapi::drm_core::DRM_IOCTL_PRIME_HANDLE_TO_FD, &mut p)?;
    // SAFETY: the kernel just created this descriptor for us; we own it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(p.fd) })
}

pub fn prime_import(file: &File, fd: &impl AsRawFd) -> Result<u32, i32> {
    let mut p = uapi::drm_core::drm_prime_handle {
        handle: 0,
        flags: 0,
        fd: fd.as_raw_fd(),
    };
    ioctl(file, uapi::drm_core::DRM_IOCTL_PRIME_FD_TO_HANDLE, &mut p)?;
    Ok(p.handle)
}

/// A CPU mapping of a buffer object, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    pub fn new(file: &File, bo: &Bo) -> io::Result<Mapping> {
        let len =
            usize::try_from(bo.size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let offset = libc::off_t::try_from(bo.mmap_offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh shared mapping of the device file at the offset the
        // driver gave for this object; nothing else aliases it in Rust.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` bytes for as long as `self` lives, and
        // `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A buffer object with its NPU address in this file's address space.
pub fn bo_npu_addr(file: &File, handle: u32) -> Result<u64, i32> {
    let mut i = uapi::drm_onpu_bo_info {
        handle,
        ..Default::default()
    };
    ioctl(file, uapi::DRM_IOCTL_ONPU_BO_INFO, &mut i)?;
    Ok(i.npu_addr)
}

/// Submit with every field given; the sequence number.
pub fn submit(file: &File, req: &mut uapi::drm_onpu_submit) -> Result<u64, i32> {
    ioctl(file, uapi::DRM_IOCTL_ONPU_SUBMIT, req)?;
    Ok(req.seqno)
}

/// Submit `cmdbuf` (whole object) using `bos` (handle, DRM_ONPU_BO_* flags).
pub fn submit_simple(
    file: &File,
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
    submit(file, &mut req)
}

/// Wait for a job; the outcome once it has ended.
pub fn wait(file: &File, seqno: u64, timeout_ns: i64) -> Result<uapi::drm_onpu_wait, i32> {
    let mut w = uapi::drm_onpu_wait {
        seqno,
        timeout_ns,
        ..Default::default()
    };
    ioctl(file, uapi::DRM_IOCTL_ONPU_WAIT, &mut w)?;
    Ok(w)
}

pub fn wait_bo(file: &File, handle: u32, timeout_ns: i64) -> Result<(), i32> {
    let mut w = uapi::drm_onpu_wait_bo {
        handle,
        flags: 0,
        timeout_ns,
    };
    ioctl(file, uapi::DRM_IOCTL_ONPU_WAIT_BO, &mut w).map(|_| ())
}

pub fn syncobj_create(file: &File, signaled: bool) -> Result<u32, i32> {
    let flags = if signaled {
        uapi::drm_core::DRM_SYNCOBJ_CREATE_SIGNALED
    } else {
        0
    };
    let mut c = uapi::drm_core::drm_syncobj_create { handle: 0, flags };
    ioctl(file, uapi::drm_core::DRM_IOCTL_SYNCOBJ_CREATE, &mut c)?;
    Ok(c.handle)
}

/// Wait for a syncobj's fence, `timeout_ms` from now.
pub fn syncobj_wait(file: &File, handle: u32, timeout_ms: i64) -> Result<(), i32> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let deadline = now.tv_sec * 1_000_000_000 + now.tv_nsec + timeout_ms * 1_000_000;
    let handles = [handle];
    let mut w = uapi::drm_core::drm_syncobj_wait {
        handles: handles.as_ptr() as u64,
        timeout_nsec: deadline,
        count_handles: 1,
        flags: uapi::drm_core::DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL,
        ..Default::default()
    };
    ioctl(file, uapi::drm_core::DRM_IOCTL_SYNCOBJ_WAIT, &mut w).map(|_| ())
}

/// CAPS.FAULT_INJECTION (Documentation/hw/npu-hw.rst): the device server
/// was started with fault-injection rules.
pub const CAPS_FAULT_INJECTION: u64 = 1 << 31;

/// Whether the device injects faults; a failing GET_PARAM is an error,
/// not "no".
pub fn fault_injection(file: &File) -> Result<bool, String> {
    get_param(file, uapi::DRM_ONPU_PARAM_CAPS)
        .map(|caps| caps & CAPS_FAULT_INJECTION != 0)
        .map_err(|e| format!("GET_PARAM(CAPS): errno {e}"))
}
