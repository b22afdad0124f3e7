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
        if driver.as_deref().and_then(Path::file_name).is_some_and(|d| d == "onpu") {
            found.push(Path::new("/dev/accel").join(name));
        }
    }
    found.sort();
    found.into_iter().next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no onpu accel device"))
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
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(r)
    }
}

pub fn get_param(file: &File, param: u32) -> Result<u64, i32> {
    let mut p = uapi::drm_onpu_get_param { param, ..Default::default() };
    ioctl(file, uapi::DRM_IOCTL_ONPU_GET_PARAM, &mut p)?;
    Ok(p.value)
}
