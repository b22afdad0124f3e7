//! What the tests ask of an exported fence (a sync_file,
//! include/uapi/linux/sync_file.h): whether and how it signalled.

use std::os::fd::AsRawFd;

/// SYNC_IOC_FILE_INFO: _IOWR('>', 4, struct sync_file_info), 56 bytes.
const SYNC_IOC_FILE_INFO: libc::c_ulong = 0xc038_3e04;

/// struct sync_file_info, without the fence array (num_fences 0 asks for
/// none).
#[repr(C)]
#[derive(Default)]
struct SyncFileInfo {
    name: [u8; 32],
    status: i32,
    flags: u32,
    num_fences: u32,
    pad: u32,
    sync_fence_info: u64,
}

/// The fence status of a sync_file (SYNC_IOC_FILE_INFO): 1 signalled, 0
/// active, negative the error it signalled with.
pub fn status(fd: &impl AsRawFd) -> Result<i32, String> {
    let mut info = SyncFileInfo::default();
    // SAFETY: SYNC_IOC_FILE_INFO writes a struct sync_file_info; with
    // num_fences 0 it writes nothing through sync_fence_info.
    if unsafe { libc::ioctl(fd.as_raw_fd(), SYNC_IOC_FILE_INFO, &mut info) } != 0 {
        return Err(format!(
            "SYNC_IOC_FILE_INFO: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(info.status)
}

/// Wait (at most `timeout_ms`) for a sync_file's fence to signal; then its
/// status as [`status`] gives it.
pub fn wait_status(fd: &impl AsRawFd, timeout_ms: i32) -> Result<i32, String> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, timeout_ms) } != 1 {
        return Err(format!("the fence did not signal within {} ms", timeout_ms));
    }
    status(fd)
}
