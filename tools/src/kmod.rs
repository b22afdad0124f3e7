//! The driver's module and PCI binding, for the lifetime tests: unload and
//! load onpu.ko, wait for the accel node, name the PCI function.

use npu::device::raw as accel;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

/// Where the harness puts the module in the guest.
pub const MODULE: &str = "/lib/modules/onpu.ko";

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// delete_module("onpu"); with `nonblock`, fail (EWOULDBLOCK) instead of
/// waiting while the module is in use. The raw errno on failure.
pub fn unload(nonblock: bool) -> Result<(), i32> {
    let name = CString::new("onpu").map_err(|_| libc::EINVAL)?;
    let flags = if nonblock { libc::O_NONBLOCK } else { 0 };
    // SAFETY: a NUL-terminated name and plain flags.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// finit_module of MODULE.
pub fn load() -> Result<(), String> {
    let f = File::open(MODULE).map_err(|e| format!("{MODULE}: {e}"))?;
    let params = CString::new("").map_err(|e| e.to_string())?;
    // SAFETY: a valid fd, an empty parameter string, no flags.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!("finit_module: errno {}", errno()))
    }
}

/// The accel node, waiting up to 5 s for it to (re)appear after a probe.
pub fn wait_for_device() -> Result<PathBuf, String> {
    for _ in 0..250 {
        if let Ok(p) = accel::find_device() {
            if p.exists() {
                return Ok(p);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("no onpu accel device".into())
}

/// The PCI function the accel node belongs to (e.g. 0000:00:03.0).
pub fn pci_name() -> Result<String, String> {
    let dev = wait_for_device()?;
    let name = dev
        .file_name()
        .ok_or("bad device path")?
        .to_string_lossy()
        .into_owned();
    let link =
        std::fs::read_link(format!("/sys/class/accel/{name}/device")).map_err(|e| e.to_string())?;
    Ok(link
        .file_name()
        .ok_or("bad sysfs link")?
        .to_string_lossy()
        .into_owned())
}

/// The kernel log's records (/dev/kmsg: "prio,seq,time,flags;text"), as
/// (sequence number, text), oldest first.
pub fn kernel_log() -> Result<Vec<(u64, String)>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| format!("/dev/kmsg: {e}"))?;
    let mut records = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                let (head, text) = rec.split_once(';').unwrap_or(("", &rec));
                let seq = head.split(',').nth(1).and_then(|s| s.parse().ok());
                if let Some(seq) = seq {
                    records.push((seq, text.trim_end().to_string()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // A record overwritten while we read: go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(format!("/dev/kmsg: {e}")),
        }
    }
    Ok(records)
}

/// The sequence number of the newest kernel log record (0 for none).
pub fn kernel_log_end() -> Result<u64, String> {
    Ok(kernel_log()?.last().map_or(0, |r| r.0))
}

/// Kernel log lines after record `after` that contain `needle`.
pub fn kernel_log_since(after: u64, needle: &str) -> Result<Vec<String>, String> {
    Ok(kernel_log()?
        .into_iter()
        .filter(|(seq, text)| *seq > after && text.contains(needle))
        .map(|(_, text)| text)
        .collect())
}
