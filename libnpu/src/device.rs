//! The NPU through the onpu driver: open the accel node, query it, create
//! and map buffers, share them as dma-bufs, submit jobs and wait for them.
//!
//! Every ioctl goes through `nix` on the `npu-uapi` crate's definitions,
//! the same `#[repr(C)]` ABI the driver is compiled with.

use memmap2::{MmapOptions, MmapRaw};
use npu_isa::Fault;
use npu_uapi as uapi;
use npu_uapi::drm_core;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What can go wrong talking to the NPU.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no onpu NPU found under /sys/class/accel: is the onpu module loaded and the device present?")]
    NotFound,
    #[error("cannot open {path}: {source}{}", open_hint(source))]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not answer the onpu GET_PARAM ioctl ({errno}): not an onpu device, or a driver too old for this libnpu?")]
    NotOnpu {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("{what} failed: {errno} ({})", errno.desc())]
    Ioctl {
        what: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("cannot map a {size}-byte buffer: {source}")]
    Map { size: u64, source: std::io::Error },
    #[error("job {seqno} faulted: {}", describe_fault(*status, *addr))]
    JobFault { seqno: u64, status: u32, addr: u64 },
    #[error("job {seqno} ran past its timeout; the driver reset the NPU")]
    JobTimedOut { seqno: u64 },
    #[error("job {seqno} was cancelled: the device went away or the file was closed first")]
    JobCanceled { seqno: u64 },
    #[error("job {seqno} still running after waiting {waited:?} (it stays queued; wait again or raise the timeout)")]
    WaitTimeout { seqno: u64, waited: Duration },
    #[error("{0}")]
    Invalid(String),
}

impl DeviceError {
    /// The device fault of a [`DeviceError::JobFault`].
    pub fn fault(&self) -> Option<Fault> {
        match self {
            DeviceError::JobFault { status, .. } => Fault::from_code(*status),
            _ => None,
        }
    }
}

fn open_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (is your user in the group that owns /dev/accel, e.g. `render`?)"
        }
        std::io::ErrorKind::NotFound => " (no such node: is the onpu module loaded?)",
        _ => "",
    }
}

/// A fault code and its address, as the hardware spec's fault table says
/// what the address means for each code.
pub fn describe_fault(status: u32, addr: u64) -> String {
    let name = fault_name(status);
    match Fault::from_code(status) {
        Some(f) if f.is_mmu() || f == Fault::DmaBusError => {
            format!("{name} at NPU address {addr:#x}")
        }
        // Instruction faults: the byte offset in the command buffer.
        Some(Fault::BadOpcode | Fault::BadOperand | Fault::SramRange | Fault::IndexRange) => {
            let insn = addr / npu_isa::INSN_SIZE as u64;
            format!("{name} at {addr:#x} (command buffer offset, instruction {insn})")
        }
        Some(Fault::CmdbufOverrun) => {
            format!("{name} at {addr:#x} (the command buffer ended without END)")
        }
        Some(Fault::BadContext) => format!("{name} (hardware context {addr})"),
        _ => format!("{name} at {addr:#x}"),
    }
}

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

pub mod raw;

/// A raw call's errno as a [`DeviceError::Ioctl`].
fn check<T>(what: &'static str, r: Result<T, i32>) -> Result<T> {
    r.map_err(|e| DeviceError::Ioctl {
        what,
        errno: nix::errno::Errno::from_raw(e),
    })
}

/// The device's parameters (DRM_IOCTL_ONPU_QUERY, DRM_ONPU_QUERY_CAPS).
#[derive(Clone, Copy, Debug, Default)]
pub struct Params {
    pub device_id: u32,
    pub revision: u32,
    pub isa_version: u32,
    pub sram_size: u32,
    pub contexts: u32,
    pub va_bits: u32,
    pub caps: u32,
    pub clock_khz: u32,
    pub va_start: u64,
    pub va_end: u64,
    pub job_timeout_ms: u32,
    pub num_rings: u32,
    pub max_job_bos: u32,
    pub max_cmdbuf_size: u32,
}

impl From<uapi::drm_onpu_query_caps> for Params {
    fn from(c: uapi::drm_onpu_query_caps) -> Self {
        Params {
            device_id: c.device_id,
            revision: c.revision,
            isa_version: c.isa_version,
            sram_size: c.sram_size,
            contexts: c.num_contexts,
            va_bits: c.va_bits,
            caps: c.caps,
            clock_khz: c.clock_khz,
            va_start: c.va_start,
            va_end: c.va_end,
            job_timeout_ms: c.job_timeout_ms,
            num_rings: c.num_rings,
            max_job_bos: c.max_job_bos,
            max_cmdbuf_size: c.max_cmdbuf_size,
        }
    }
}

/// The device's cost-model parameters (DRM_ONPU_QUERY_COST_MODEL: its
/// COST_* registers, Documentation/hw/npu-hw.rst "Cost model").
pub type CostModel = uapi::drm_onpu_query_cost_model;

/// An open NPU.
#[derive(Debug)]
pub struct Device {
    /// The open file, shared with the [`SharedBuffer`]s made from it.
    shared: Arc<DeviceFile>,
    path: PathBuf,
    params: Params,
    /// The NORMAL-priority queue made at open, for jobs that name none.
    queue: u32,
}

/// A device's open file and the references to its GEM handles: what a
/// buffer object needs to close itself, with or without the [`Device`].
#[derive(Debug)]
struct DeviceFile {
    file: File,
    /// Live references per GEM handle ([`Buffer`]s, [`ParkedBuffer`]s,
    /// [`SharedBuffer`]s): importing this file's own export gives back the
    /// same handle, which must be closed only once.
    handles: Mutex<HashMap<u32, u32>>,
    /// Tells this open file from every other one ([`ParkedBuffer`]).
    id: u64,
}

impl DeviceFile {
    fn handle_refs(&self) -> std::sync::MutexGuard<'_, HashMap<u32, u32>> {
        // The map stays consistent even if a holder panicked.
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_ref(&self, handle: u32) {
        *self.handle_refs().entry(handle).or_insert(0) += 1;
    }

    /// Drop one reference to `handle`; GEM_CLOSE it with the last.
    fn close_handle(&self, handle: u32) {
        {
            let mut refs = self.handle_refs();
            match refs.get_mut(&handle) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return;
                }
                _ => {
                    refs.remove(&handle);
                }
            }
        }
        if let Err(e) = raw::gem_close(&self.file, handle) {
            log::warn!("GEM_CLOSE of handle {handle}: errno {e}");
        }
    }

    /// Take a reference to the new (or imported) `handle` and describe it:
    /// its BO_INFO and a CPU view (`user` for a userptr object; else the
    /// file's mapping, none for a NO_MMAP object). The reference is
    /// dropped again on failure.
    fn adopt(&self, handle: u32, view: View) -> Result<BoParts> {
        self.add_ref(handle);
        let mut i = uapi::drm_onpu_bo_info {
            handle,
            ..Default::default()
        };
        if let Err(e) = check("BO_INFO", raw::ioctl(&self.file, &mut i)) {
            self.close_handle(handle);
            return Err(e);
        }
        let flags = uapi::BoFlags::from_bits_retain(i.bo_flags);
        let map = match view {
            View::User(ptr, len) => Ok(CpuMap::User { ptr, len }),
            _ if flags.contains(uapi::BoFlags::NO_MMAP) => Ok(CpuMap::None),
            View::Map | View::MapIfPossible => MmapOptions::new()
                .offset(i.mmap_offset)
                .len(i.size as usize)
                .map_raw(&self.file)
                .map(|m| CpuMap::Mmap(Arc::new(m)))
                .or_else(|source| match view {
                    // An import whose exporter does not let the CPU map it.
                    View::MapIfPossible => {
                        log::debug!("handle {handle} stays unmapped: {source}");
                        Ok(CpuMap::None)
                    }
                    _ => Err(DeviceError::Map {
                        size: i.size,
                        source,
                    }),
                }),
        };
        match map {
            Ok(map) => Ok(BoParts {
                handle,
                size: i.size,
                npu_addr: i.npu_addr,
                flags,
                map,
            }),
            Err(e) => {
                self.close_handle(handle);
                Err(e)
            }
        }
    }
}

/// The CPU view [`DeviceFile::adopt`] gives an object.
#[derive(Clone, Copy)]
enum View {
    /// Its mapping through the device file (none for NO_MMAP).
    Map,
    /// The same, but without one if mmap() fails (imports).
    MapIfPossible,
    /// A userptr object's own memory: `len` bytes at the pointer.
    User(*mut u8, usize),
}

/// What [`DeviceFile::adopt`] found out about a buffer object.
struct BoParts {
    handle: u32,
    size: u64,
    npu_addr: u64,
    flags: uapi::BoFlags,
    map: CpuMap,
}

/// How the CPU sees a buffer object.
#[derive(Clone, Debug)]
enum CpuMap {
    /// The device file's mapping (shared by every view of the object).
    Mmap(Arc<MmapRaw>),
    /// A userptr object: the process's own memory, `len` bytes of it (the
    /// object covers whole pages).
    User { ptr: *mut u8, len: usize },
    /// The CPU cannot map it (NO_MMAP).
    None,
}

// SAFETY: `User` is memory whose creator promised (SharedDevice::userptr)
// that it stays valid while the object lives; the pointer is only read
// through `Buffer::bytes` and friends, as an `Mmap` would be.
unsafe impl Send for CpuMap {}
// SAFETY: as above; shared use is that of a shared mapping.
unsafe impl Sync for CpuMap {}

impl CpuMap {
    /// The start and length of the CPU view (null and 0 for none).
    fn raw(&self) -> (*mut u8, usize) {
        match self {
            CpuMap::Mmap(m) => (m.as_mut_ptr(), m.len()),
            CpuMap::User { ptr, len } => (*ptr, *len),
            CpuMap::None => (std::ptr::null_mut(), 0),
        }
    }
}

/// Source of [`Device::id`]s.
static NEXT_DEVICE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The accel nodes driven by onpu, in order.
pub fn find_devices() -> Vec<PathBuf> {
    find_devices_in(Path::new("/sys/class/accel"), Path::new("/dev/accel"))
}

/// [`find_devices`] on another sysfs class directory and device directory
/// (tests, chroots): the `accelN` entries whose `device/driver` link ends
/// in `onpu`, as paths under `dev`, sorted by number.
pub fn find_devices_in(class: &Path, dev: &Path) -> Vec<PathBuf> {
    let mut found: Vec<std::ffi::OsString> = Vec::new();
    let Ok(dir) = std::fs::read_dir(class) else {
        return Vec::new();
    };
    for e in dir.flatten() {
        let driver = std::fs::read_link(e.path().join("device/driver")).ok();
        if driver
            .as_deref()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "onpu")
        {
            found.push(e.file_name());
        }
    }
    // accel10 after accel9.
    found.sort_by_key(|n| {
        let n = n.to_string_lossy();
        let num = n
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse::<u64>()
            .unwrap_or(u64::MAX);
        (num, n.into_owned())
    });
    found.into_iter().map(|n| dev.join(n)).collect()
}

impl Device {
    /// The first onpu NPU.
    pub fn open() -> Result<Device> {
        let path = find_devices()
            .into_iter()
            .next()
            .ok_or(DeviceError::NotFound)?;
        Device::open_path(&path)
    }

    pub fn open_path(path: &Path) -> Result<Device> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| DeviceError::Open {
                path: path.to_owned(),
                source,
            })?;
        Device::from_file(file, path)
    }

    /// An accel node the caller opened (read-write); its path is what
    /// /proc/self/fd says, for messages.
    pub fn from_fd(fd: OwnedFd) -> Result<Device> {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap_or_else(|_| PathBuf::from(format!("fd {}", fd.as_raw_fd())));
        Device::from_file(File::from(fd), &path)
    }

    fn from_file(file: File, path: &Path) -> Result<Device> {
        let id = NEXT_DEVICE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut dev = Device {
            shared: Arc::new(DeviceFile {
                file,
                handles: Mutex::default(),
                id,
            }),
            path: path.to_owned(),
            params: Params::default(),
            queue: 0,
        };
        // The first query tells an onpu node from anything else.
        if let Err(DeviceError::Ioctl { errno, .. }) = dev.param(uapi::DRM_ONPU_PARAM_DEVICE_ID) {
            return Err(DeviceError::NotOnpu {
                path: path.to_owned(),
                errno,
            });
        }
        dev.params = dev.caps()?.into();
        dev.queue = dev.create_queue_id(Priority::Normal)?;
        log::debug!("opened {} ({:?})", path.display(), dev.params);
        Ok(dev)
    }

    fn file(&self) -> &File {
        &self.shared.file
    }

    /// A handle on this device's file that makes [`SharedBuffer`]s from
    /// any thread, without the `Device` (which its owner may keep behind a
    /// lock); the file stays open while it or one of its buffers lives.
    pub fn shared(&self) -> SharedDevice {
        SharedDevice(self.shared.clone())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// One DRM_ONPU_PARAM_* value.
    pub fn param(&self, param: u32) -> Result<u64> {
        let mut p = uapi::drm_onpu_get_param {
            param,
            ..Default::default()
        };
        check("GET_PARAM", raw::ioctl(self.file(), &mut p))?;
        Ok(p.value)
    }

    /// What the device and driver offer (DRM_ONPU_QUERY_CAPS), asked now.
    pub fn caps(&self) -> Result<uapi::drm_onpu_query_caps> {
        check("QUERY(CAPS)", raw::query(self.file()))
    }

    /// The device's cost model (DRM_ONPU_QUERY_COST_MODEL).
    pub fn cost_model(&self) -> Result<CostModel> {
        check("QUERY(COST_MODEL)", raw::query(self.file()))
    }

    /// A new buffer of at least `size` bytes, mapped for the CPU and at an
    /// NPU address in this file's address space.
    pub fn alloc(&self, size: u64) -> Result<Buffer<'_>> {
        self.alloc_with_flags(size, uapi::BoFlags::empty())
    }

    /// [`Device::alloc`] with creation flags: [`uapi::BoFlags::READ_ONLY`]
    /// (jobs may only read it), [`uapi::BoFlags::CPU_WC`] (write-combined
    /// CPU mapping). A [`Buffer`] is always mapped for the CPU, so
    /// [`uapi::BoFlags::NO_MMAP`] is refused here (raw::bo_create_flags
    /// makes such objects).
    pub fn alloc_with_flags(&self, size: u64, flags: uapi::BoFlags) -> Result<Buffer<'_>> {
        if flags.contains(uapi::BoFlags::NO_MMAP) {
            return Err(DeviceError::Invalid(
                "a Buffer is mapped for the CPU: it cannot be NO_MMAP".into(),
            ));
        }
        let mut c = uapi::drm_onpu_bo_create {
            size,
            flags: flags.bits(),
            ..Default::default()
        };
        check("BO_CREATE", raw::ioctl(self.file(), &mut c))?;
        self.wrap(c.handle)
    }

    /// Import a dma-buf (from this or another file of an onpu device).
    pub fn import(&self, fd: BorrowedFd<'_>) -> Result<Buffer<'_>> {
        let handle = check("PRIME_FD_TO_HANDLE", raw::prime_import(self.file(), &fd))?;
        self.wrap(handle)
    }

    fn wrap(&self, handle: u32) -> Result<Buffer<'_>> {
        let p = self.shared.adopt(handle, View::Map)?;
        Ok(Buffer {
            dev: self,
            handle: p.handle,
            size: p.size,
            npu_addr: p.npu_addr,
            map: p.map,
        })
    }

    /// A view of `b` for jobs of this device ([`Job::reads`],
    /// [`Job::writes`]): one more reference to its handle, dropped with
    /// the view. A buffer of another device file is refused.
    pub fn view<'d>(&'d self, b: &SharedBuffer) -> Result<Buffer<'d>> {
        if !Arc::ptr_eq(&self.shared, &b.file) {
            return Err(DeviceError::Invalid(
                "a shared buffer of another device file: import it here first (export, import)"
                    .into(),
            ));
        }
        self.shared.add_ref(b.handle);
        Ok(Buffer {
            dev: self,
            handle: b.handle,
            size: b.size,
            npu_addr: b.npu_addr,
            map: b.map.clone(),
        })
    }

    /// A buffer [`Buffer::park`]ed from this device, back in use. A buffer
    /// parked from another device file comes back as the error.
    pub(crate) fn unpark(&self, p: ParkedBuffer) -> Result<Buffer<'_>, ParkedBuffer> {
        if p.device != self.shared.id {
            return Err(p);
        }
        Ok(Buffer {
            dev: self,
            handle: p.handle,
            size: p.size,
            npu_addr: p.npu_addr,
            map: p.map,
        })
    }

    /// Drop one reference to `handle`; GEM_CLOSE it with the last.
    fn close_handle(&self, handle: u32) {
        self.shared.close_handle(handle)
    }

    fn create_queue_id(&self, priority: Priority) -> Result<u32> {
        let mut q = uapi::drm_onpu_queue_create {
            priority: priority as u32,
            ..Default::default()
        };
        match raw::ioctl(self.file(), &mut q).map_err(nix::errno::Errno::from_raw) {
            Ok(_) => Ok(q.queue_id),
            Err(nix::errno::Errno::EACCES) => Err(DeviceError::Invalid(format!(
                "a {priority:?} queue needs CAP_SYS_NICE"
            ))),
            Err(errno) => Err(DeviceError::Ioctl {
                what: "QUEUE_CREATE",
                errno,
            }),
        }
    }

    /// A new job queue with `priority` (the device runs the jobs of higher
    /// priorities first, at job boundaries). Destroyed on drop.
    pub fn create_queue(&self, priority: Priority) -> Result<Queue<'_>> {
        Ok(Queue {
            dev: self,
            id: self.create_queue_id(priority)?,
        })
    }

    /// Queue a job; its sequence number.
    pub fn submit(&self, job: &Job<'_>) -> Result<u64> {
        job.validate()?;
        let limit = self.params.job_timeout_ms;
        if limit != 0 && job.timeout_ms > limit {
            return Err(DeviceError::Invalid(format!("a job timeout of {} ms is above the driver's limit of {limit} ms (DRM_ONPU_PARAM_JOB_TIMEOUT_MS)", job.timeout_ms)));
        }
        // One entry per object (a buffer listed twice, or imported twice,
        // gets the union of its uses); a written buffer is read too.
        let mut refs: Vec<uapi::drm_onpu_bo_ref> = Vec::with_capacity(job.buffers.len());
        for (b, w) in &job.buffers {
            let flags = if *w {
                uapi::DRM_ONPU_BO_READ | uapi::DRM_ONPU_BO_WRITE
            } else {
                uapi::DRM_ONPU_BO_READ
            };
            match refs.iter_mut().find(|r| r.handle == b.handle) {
                Some(r) => r.flags |= flags,
                None => refs.push(uapi::drm_onpu_bo_ref {
                    handle: b.handle,
                    flags,
                }),
            }
        }
        // validate() bounded it by DRM_ONPU_MAX_CMDBUF_SIZE.
        let size = job.cmdbuf_size as u32;
        let mut req = uapi::drm_onpu_submit {
            queue_id: job.queue.unwrap_or(self.queue),
            cmdbuf_handle: job.cmdbuf.handle,
            cmdbuf_offset: job.cmdbuf_offset,
            cmdbuf_size: size,
            bos: raw::obj_array(&refs),
            in_syncs: raw::obj_array(&job.in_syncs),
            out_syncs: raw::obj_array(&job.out_syncs),
            timeout_ms: job.timeout_ms,
            ..Default::default()
        };
        // SAFETY: `req` and the arrays it points at outlive the call.
        check("SUBMIT", raw::ioctl(self.file(), &mut req))?;
        log::trace!(
            "submitted job {} ({} bytes of commands, {} buffers)",
            req.seqno,
            size,
            refs.len()
        );
        Ok(req.seqno)
    }

    /// Wait up to `timeout` for job `seqno` and reap it. A job that failed
    /// on the device gives its fault, with the address.
    pub fn wait(&self, seqno: u64, timeout: Duration) -> Result<Outcome> {
        // One absolute deadline for every retry after a signal.
        let deadline = deadline_after(timeout)?;
        let w = loop {
            let mut w = uapi::drm_onpu_wait {
                seqno,
                timeout_abs_ns: deadline,
                ..Default::default()
            };
            match raw::ioctl(self.file(), &mut w).map_err(nix::errno::Errno::from_raw) {
                Ok(_) => break w,
                Err(nix::errno::Errno::ETIMEDOUT) => {
                    return Err(DeviceError::WaitTimeout {
                        seqno,
                        waited: timeout,
                    })
                }
                // A signal (the driver's -ERESTARTSYS): the job is not
                // reaped yet, so waiting again is safe.
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(DeviceError::Ioctl {
                        what: "WAIT",
                        errno,
                    })
                }
            }
        };
        match w.status {
            uapi::DRM_ONPU_JOB_OK => Ok(Outcome {
                seqno,
                cycles: w.cycles,
            }),
            uapi::DRM_ONPU_JOB_TIMEDOUT => Err(DeviceError::JobTimedOut { seqno }),
            uapi::DRM_ONPU_JOB_CANCELED => Err(DeviceError::JobCanceled { seqno }),
            status => {
                log::debug!(
                    "job {seqno}: status {status:#x}, error {}, fault_addr {:#x}",
                    w.error,
                    w.fault_addr
                );
                Err(DeviceError::JobFault {
                    seqno,
                    status,
                    addr: w.fault_addr,
                })
            }
        }
    }

    /// A new syncobj of this file, signalled already if `signaled`.
    pub fn syncobj(&self, signaled: bool) -> Result<Syncobj<'_>> {
        let flags = if signaled {
            drm_core::DRM_SYNCOBJ_CREATE_SIGNALED
        } else {
            0
        };
        let mut c = drm_core::drm_syncobj_create { handle: 0, flags };
        check("SYNCOBJ_CREATE", raw::ioctl(self.file(), &mut c))?;
        Ok(Syncobj {
            dev: self,
            handle: c.handle,
        })
    }

    /// Wait until no job uses `buffer`.
    pub fn wait_idle(&self, buffer: &Buffer<'_>, timeout: Duration) -> Result<()> {
        let deadline = deadline_after(timeout)?;
        loop {
            let mut w = uapi::drm_onpu_wait_bo {
                handle: buffer.handle,
                flags: 0,
                timeout_abs_ns: deadline,
            };
            match raw::ioctl(self.file(), &mut w).map_err(nix::errno::Errno::from_raw) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(DeviceError::Ioctl {
                        what: "WAIT_BO",
                        errno,
                    })
                }
            }
        }
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file().as_fd()
    }
}

/// The absolute CLOCK_MONOTONIC deadline `timeout` from now, as WAIT and
/// WAIT_BO take it (a zero timeout polls).
fn deadline_after(timeout: Duration) -> Result<i64> {
    if timeout.is_zero() {
        return Ok(0);
    }
    let now = raw::monotonic_ns().map_err(|e| DeviceError::Ioctl {
        what: "clock_gettime(CLOCK_MONOTONIC)",
        errno: nix::errno::Errno::from_raw(e),
    })?;
    Ok(now.saturating_add(ns(timeout)))
}

/// A relative timeout for the uAPI: nanoseconds, saturated (never negative).
fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The name of a device fault code (Documentation/hw/npu-hw.rst).
pub fn fault_name(status: u32) -> String {
    match Fault::from_code(status) {
        Some(f) => format!("{f:?}"),
        None => format!("fault {status:#x}"),
    }
}

/// A job that ended well.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub seqno: u64,
    /// Modelled device cycles.
    pub cycles: u64,
}

/// What to submit: a command buffer and the buffers it uses.
pub struct Job<'a> {
    pub cmdbuf: &'a Buffer<'a>,
    pub cmdbuf_offset: u64,
    pub cmdbuf_size: u64,
    /// Buffers the job uses, and whether it writes them.
    pub buffers: Vec<(&'a Buffer<'a>, bool)>,
    /// Syncobjs (points) the job waits for, and those it signals.
    pub in_syncs: Vec<uapi::drm_onpu_sync>,
    pub out_syncs: Vec<uapi::drm_onpu_sync>,
    /// The queue (its id) to submit to; None: the device's default queue.
    pub queue: Option<u32>,
    /// 0: the driver's default.
    pub timeout_ms: u32,
}

impl<'a> Job<'a> {
    pub fn new(cmdbuf: &'a Buffer<'a>, size: u64) -> Self {
        Job {
            cmdbuf,
            cmdbuf_offset: 0,
            cmdbuf_size: size,
            buffers: Vec::new(),
            in_syncs: Vec::new(),
            out_syncs: Vec::new(),
            queue: None,
            timeout_ms: 0,
        }
    }

    pub fn reads(mut self, b: &'a Buffer<'a>) -> Self {
        self.buffers.push((b, false));
        self
    }

    pub fn writes(mut self, b: &'a Buffer<'a>) -> Self {
        self.buffers.push((b, true));
        self
    }

    /// Run only once `s` has signalled.
    pub fn after(mut self, s: &Syncobj<'_>) -> Self {
        self.in_syncs.push(raw::sync(s.handle));
        self
    }

    /// Put the job's fence in `s` (it signals when the job ends); a job
    /// may signal several syncobjs.
    pub fn signal(mut self, s: &Syncobj<'_>) -> Self {
        self.out_syncs.push(raw::sync(s.handle));
        self
    }

    /// Submit to `q` rather than the device's default queue.
    pub fn on(mut self, q: &'a Queue<'a>) -> Self {
        self.queue = Some(q.id);
        self
    }

    /// The uAPI's limits, checked here for messages that say which one.
    fn validate(&self) -> Result<()> {
        let insn = u64::from(uapi::DRM_ONPU_INSN_SIZE);
        let bad = |m: String| Err(DeviceError::Invalid(m));
        if self.cmdbuf_size == 0 || self.cmdbuf_size % insn != 0 || self.cmdbuf_offset % insn != 0 {
            return bad(format!("command buffer at offset {} of {} bytes: both must be multiples of {insn} (whole instructions), the size non-zero", self.cmdbuf_offset, self.cmdbuf_size));
        }
        if self.cmdbuf_size > u64::from(uapi::DRM_ONPU_MAX_CMDBUF_SIZE) {
            return bad(format!(
                "command buffer of {} bytes: the limit is {}",
                self.cmdbuf_size,
                uapi::DRM_ONPU_MAX_CMDBUF_SIZE
            ));
        }
        if self
            .cmdbuf_offset
            .checked_add(self.cmdbuf_size)
            .is_none_or(|end| end > self.cmdbuf.size)
        {
            return bad(format!(
                "command buffer [{}, +{}) lies outside its {}-byte buffer",
                self.cmdbuf_offset, self.cmdbuf_size, self.cmdbuf.size
            ));
        }
        if self.buffers.len() > uapi::DRM_ONPU_MAX_JOB_BOS as usize {
            return bad(format!(
                "a job may use at most {} buffers, this one lists {}",
                uapi::DRM_ONPU_MAX_JOB_BOS,
                self.buffers.len()
            ));
        }
        if self.in_syncs.len() > uapi::DRM_ONPU_MAX_IN_SYNCS as usize {
            return bad(format!(
                "a job may wait for at most {} syncobjs, this one lists {}",
                uapi::DRM_ONPU_MAX_IN_SYNCS,
                self.in_syncs.len()
            ));
        }
        if self.out_syncs.len() > uapi::DRM_ONPU_MAX_OUT_SYNCS as usize {
            return bad(format!(
                "a job may signal at most {} syncobjs, this one lists {}",
                uapi::DRM_ONPU_MAX_OUT_SYNCS,
                self.out_syncs.len()
            ));
        }
        if self
            .buffers
            .iter()
            .any(|(b, _)| !std::ptr::eq(b.dev, self.cmdbuf.dev))
        {
            return bad("a job's buffers must belong to the device (file) it is submitted on; import them there first".into());
        }
        Ok(())
    }
}

/// Priorities of a job queue (DRM_ONPU_PRIORITY_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Priority {
    Low = uapi::DRM_ONPU_PRIORITY_LOW,
    Normal = uapi::DRM_ONPU_PRIORITY_NORMAL,
    High = uapi::DRM_ONPU_PRIORITY_HIGH,
    /// Needs CAP_SYS_NICE.
    Realtime = uapi::DRM_ONPU_PRIORITY_REALTIME,
}

/// A job queue of a device file ([`Device::create_queue`], [`Job::on`]).
/// Destroyed on drop (its submitted jobs still run).
pub struct Queue<'d> {
    dev: &'d Device,
    id: u32,
}

impl Queue<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for Queue<'_> {
    fn drop(&mut self) {
        if let Err(e) = raw::queue_destroy(self.dev.file(), self.id) {
            log::warn!("QUEUE_DESTROY of queue {}: errno {e}", self.id);
        }
    }
}

/// A DRM syncobj of a device file: a container for a job's fence, to order
/// jobs ([`Job::after`]) or wait for them ([`Job::signal`], [`Syncobj::wait`]).
/// Destroyed on drop.
pub struct Syncobj<'d> {
    dev: &'d Device,
    handle: u32,
}

impl Syncobj<'_> {
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Wait up to `timeout` until the fence in it has signalled (also for
    /// one a job puts there later). Ok(false) when the time ran out.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let now =
            nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_err(|errno| {
                DeviceError::Ioctl {
                    what: "clock_gettime",
                    errno,
                }
            })?;
        let now = Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32);
        // DRM_IOCTL_SYNCOBJ_WAIT takes an absolute CLOCK_MONOTONIC time.
        let deadline = ns(now.saturating_add(timeout));
        let handles = [self.handle];
        loop {
            let mut w = drm_core::drm_syncobj_wait {
                handles: handles.as_ptr() as u64,
                timeout_nsec: deadline,
                count_handles: 1,
                flags: drm_core::DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT,
                ..Default::default()
            };
            // `w` and `handles` outlive the call.
            match raw::ioctl(self.dev.file(), &mut w).map_err(nix::errno::Errno::from_raw) {
                Ok(_) => return Ok(true),
                Err(nix::errno::Errno::ETIME | nix::errno::Errno::ETIMEDOUT) => return Ok(false),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(DeviceError::Ioctl {
                        what: "SYNCOBJ_WAIT",
                        errno,
                    })
                }
            }
        }
    }
}

impl Syncobj<'_> {
    /// Put the fence of a sync_file in it (a job that waits for this
    /// syncobj then waits for that fence).
    pub fn import_sync_file(&self, sync_file: BorrowedFd<'_>) -> Result<()> {
        check(
            "SYNCOBJ_FD_TO_HANDLE",
            raw::syncobj_import_sync_file(self.dev.file(), self.handle, sync_file),
        )
    }

    /// The fence in it as a sync_file descriptor (poll it for POLLIN, or
    /// hand it to another driver). The syncobj must hold a fence: export
    /// after the job that signals it was submitted.
    pub fn export_sync_file(&self) -> Result<OwnedFd> {
        check(
            "SYNCOBJ_HANDLE_TO_FD",
            raw::syncobj_export_sync_file(self.dev.file(), self.handle),
        )
    }
}

impl Drop for Syncobj<'_> {
    fn drop(&mut self) {
        let mut d = drm_core::drm_syncobj_destroy {
            handle: self.handle,
            pad: 0,
        };
        if let Err(e) = raw::ioctl(self.dev.file(), &mut d) {
            log::warn!("SYNCOBJ_DESTROY of handle {}: errno {e}", self.handle);
        }
    }
}

/// Elements a buffer can be viewed as.
pub trait Element: bytemuck::Pod {}
impl Element for u8 {}
impl Element for i8 {}
impl Element for i32 {}
impl Element for u32 {}
impl Element for f32 {}

/// A buffer set aside for reuse ([`Buffer::park`]): the GEM handle, the CPU
/// mapping and the NPU address stay; the borrow of the device does not, so
/// the owner of a [`Device`] can keep its buffers beside it. Dropped
/// without [`Device::unpark`], it is unmapped and its handle lives on until
/// the device file closes.
#[derive(Debug)]
pub(crate) struct ParkedBuffer {
    device: u64,
    handle: u32,
    size: u64,
    npu_addr: u64,
    map: CpuMap,
}

impl ParkedBuffer {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

/// A buffer object: a GEM handle of the device file, its CPU mapping, its
/// NPU address. Closed (and unmapped) on drop.
pub struct Buffer<'d> {
    dev: &'d Device,
    handle: u32,
    size: u64,
    npu_addr: u64,
    map: CpuMap,
}

impl std::fmt::Debug for Buffer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Buffer {{ handle: {}, size: {}, npu_addr: {:#x} }}",
            self.handle, self.size, self.npu_addr
        )
    }
}

impl Buffer<'_> {
    pub fn handle(&self) -> u32 {
        self.handle
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the device sees the buffer (in this file's address space).
    pub fn npu_addr(&self) -> u64 {
        self.npu_addr
    }

    /// The buffer's bytes. The device may write them while a job runs:
    /// wait for it first.
    /// Empty for an object the CPU cannot map (NO_MMAP); a userptr
    /// object's is the process's memory it was made of.
    pub fn bytes(&self) -> &[u8] {
        cpu_bytes(&self.map)
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        cpu_bytes_mut(&mut self.map)
    }

    /// The buffer as a slice of `T` (the mapping is page aligned).
    pub fn view<T: Element>(&self) -> &[T] {
        let b = self.bytes();
        bytemuck::cast_slice(&b[..b.len() / size_of::<T>() * size_of::<T>()])
    }

    pub fn view_mut<T: Element>(&mut self) -> &mut [T] {
        let b = self.bytes_mut();
        let n = b.len() / size_of::<T>() * size_of::<T>();
        bytemuck::cast_slice_mut(&mut b[..n])
    }

    /// Export as a dma-buf file descriptor (for another process or device).
    pub fn export(&self) -> Result<OwnedFd> {
        check(
            "PRIME_HANDLE_TO_FD",
            raw::prime_export(self.dev.file(), self.handle),
        )
    }
}

impl Buffer<'_> {
    /// Keep the buffer object (handle, mapping, NPU address) for a later
    /// [`Device::unpark`] instead of closing it.
    pub(crate) fn park(self) -> ParkedBuffer {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the mapping is
        // moved out exactly once; the handle's reference moves with it.
        let map = unsafe { std::ptr::read(&this.map) };
        ParkedBuffer {
            device: this.dev.shared.id,
            handle: this.handle,
            size: this.size,
            npu_addr: this.npu_addr,
            map,
        }
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        self.dev.close_handle(self.handle);
    }
}

/// The CPU view of a buffer object's bytes (empty for none).
fn cpu_bytes(map: &CpuMap) -> &[u8] {
    match map.raw() {
        (_, 0) => &[],
        // SAFETY: the mapping (or the userptr creator's memory) covers
        // `len` bytes while `map` lives; shared-memory semantics are the
        // caller's to respect (documented).
        (ptr, len) => unsafe { std::slice::from_raw_parts(ptr, len) },
    }
}

/// [`cpu_bytes`], writable: `&mut` to this view; other views of the
/// object (other handles, jobs, importers) are the caller's to order.
fn cpu_bytes_mut(map: &mut CpuMap) -> &mut [u8] {
    match map.raw() {
        (_, 0) => &mut [],
        // SAFETY: as in cpu_bytes; `&mut` makes this the only CPU view
        // through this handle (documented for the others).
        (ptr, len) => unsafe { std::slice::from_raw_parts_mut(ptr, len) },
    }
}

/// The CPU's page size: the unit of userptr objects and of buffer object
/// sizes.
pub fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let n = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// A handle on a device's open file ([`Device::shared`]) that makes
/// [`SharedBuffer`]s from any thread. Clones share the file, which stays
/// open while a handle or one of its buffers lives.
#[derive(Clone, Debug)]
pub struct SharedDevice(Arc<DeviceFile>);

impl SharedDevice {
    fn adopt(&self, handle: u32, view: View) -> Result<SharedBuffer> {
        let p = self.0.adopt(handle, view)?;
        Ok(SharedBuffer {
            file: self.0.clone(),
            handle: p.handle,
            size: p.size,
            npu_addr: p.npu_addr,
            flags: p.flags,
            map: p.map,
        })
    }

    /// A new buffer object of at least `size` bytes (BO_CREATE: zeroed,
    /// whole pages), mapped for the CPU.
    pub fn alloc(&self, size: u64) -> Result<SharedBuffer> {
        let mut c = uapi::drm_onpu_bo_create {
            size,
            ..Default::default()
        };
        check("BO_CREATE", raw::ioctl(&self.0.file, &mut c))?;
        self.adopt(c.handle, View::Map)
    }

    /// A buffer object of the process's own memory (BO_CREATE_USERPTR):
    /// `len` bytes at `ptr`, which must be page aligned; the object covers
    /// whole pages, so the rest of the last page is in it too. The kernel
    /// pins the pages at once and until the object is freed.
    ///
    /// # Safety
    /// The pages must stay mapped in this process (writable unless
    /// `read_only`) while the object lives: its [`SharedBuffer::bytes`] are
    /// that memory, and jobs that list it read it (and write it, unless
    /// `read_only`) there.
    pub unsafe fn userptr(
        &self,
        ptr: *mut u8,
        len: usize,
        read_only: bool,
    ) -> Result<SharedBuffer> {
        let page = page_size();
        if len == 0 || (ptr as usize) % page != 0 {
            return Err(DeviceError::Invalid(format!(
                "a userptr buffer must start on a page ({page} bytes) and not be empty: {ptr:p}, {len} bytes"
            )));
        }
        let mut c = uapi::drm_onpu_bo_create_userptr {
            user_ptr: ptr as u64,
            size: len.div_ceil(page) as u64 * page as u64,
            flags: if read_only {
                uapi::BoFlags::READ_ONLY.bits()
            } else {
                0
            },
            ..Default::default()
        };
        check("BO_CREATE_USERPTR", raw::ioctl(&self.0.file, &mut c))?;
        self.adopt(c.handle, View::User(ptr, len))
    }

    /// Import a dma-buf (PRIME): a buffer object of this file for it (the
    /// same one again for this file's own export). Mapped for the CPU if
    /// the object allows it.
    pub fn import(&self, fd: BorrowedFd<'_>) -> Result<SharedBuffer> {
        let handle = check("PRIME_FD_TO_HANDLE", raw::prime_import(&self.0.file, &fd))?;
        self.adopt(handle, View::MapIfPossible)
    }

    /// Whether `dev` is this file.
    pub fn is_file_of(&self, dev: &Device) -> bool {
        Arc::ptr_eq(&self.0, &dev.shared)
    }
}

/// A buffer object owned apart from its [`Device`] (so it can live in
/// another object, e.g. a request): the device file's handle, its NPU
/// address and CPU view. Jobs use it through [`Device::view`]. Closed on
/// drop (the object lives on while other handles, views, jobs or dma-buf
/// descriptors hold it).
pub struct SharedBuffer {
    file: Arc<DeviceFile>,
    handle: u32,
    size: u64,
    npu_addr: u64,
    flags: uapi::BoFlags,
    map: CpuMap,
}

impl std::fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedBuffer {{ handle: {}, size: {}, npu_addr: {:#x}, flags: {:?} }}",
            self.handle, self.size, self.npu_addr, self.flags
        )
    }
}

impl SharedBuffer {
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// In bytes: whole pages.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn npu_addr(&self) -> u64 {
        self.npu_addr
    }

    /// The object's DRM_ONPU_BO_* flags (BO_INFO).
    pub fn flags(&self) -> uapi::BoFlags {
        self.flags
    }

    /// Whether the CPU sees its bytes ([`SharedBuffer::bytes`] is not
    /// empty).
    pub fn is_mapped(&self) -> bool {
        !matches!(self.map, CpuMap::None)
    }

    /// Whether `other` is the same object of the same device file (a
    /// dma-buf imported where it was exported).
    pub fn same_object(&self, other: &SharedBuffer) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.handle == other.handle
    }

    /// The bytes as the CPU sees them (empty if it cannot map them). Jobs
    /// may write them meanwhile: wait for them first.
    pub fn bytes(&self) -> &[u8] {
        cpu_bytes(&self.map)
    }

    /// Writable bytes: other views of the object (jobs, importers) are the
    /// caller's to order.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        cpu_bytes_mut(&mut self.map)
    }

    /// Export as a dma-buf descriptor (PRIME, read-write, close-on-exec);
    /// the caller owns it. Userptr objects cannot be exported (EINVAL).
    pub fn export(&self) -> Result<OwnedFd> {
        check(
            "PRIME_HANDLE_TO_FD",
            raw::prime_export(&self.file.file, self.handle),
        )
    }
}

impl Drop for SharedBuffer {
    fn drop(&mut self) {
        self.file.close_handle(self.handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_onpu_nodes_by_driver_link_in_numeric_order() {
        let root = std::env::temp_dir().join(format!("npu-sysfs-{}", std::process::id()));
        let class = root.join("class/accel");
        for (node, driver) in [
            ("accel10", "onpu"),
            ("accel2", "onpu"),
            ("accel0", "ivpu"),
            ("accel3", "onpu-not"),
        ] {
            let dev = root.join("devices").join(node);
            std::fs::create_dir_all(&dev).expect("mkdir");
            std::fs::create_dir_all(root.join("drivers").join(driver)).expect("mkdir");
            std::os::unix::fs::symlink(root.join("drivers").join(driver), dev.join("driver"))
                .expect("symlink");
            std::fs::create_dir_all(class.join(node)).expect("mkdir");
            std::os::unix::fs::symlink(&dev, class.join(node).join("device")).expect("symlink");
        }
        // A node without a bound driver is skipped, not an error.
        std::fs::create_dir_all(class.join("accel4/device")).expect("mkdir");
        let found = find_devices_in(&class, Path::new("/dev/accel"));
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            found,
            [
                PathBuf::from("/dev/accel/accel2"),
                PathBuf::from("/dev/accel/accel10")
            ]
        );
        assert!(
            find_devices_in(Path::new("/nonexistent/accel"), Path::new("/dev/accel")).is_empty()
        );
    }

    #[test]
    fn fault_messages_say_what_the_address_is() {
        let e = DeviceError::JobFault {
            seqno: 3,
            status: Fault::MmuUnmapped.code(),
            addr: 0x20_0040,
        };
        assert_eq!(
            e.to_string(),
            "job 3 faulted: MmuUnmapped at NPU address 0x200040"
        );
        assert_eq!(e.fault(), Some(Fault::MmuUnmapped));
        let e = DeviceError::JobFault {
            seqno: 4,
            status: Fault::BadOperand.code(),
            addr: 0x80,
        };
        assert_eq!(
            e.to_string(),
            "job 4 faulted: BadOperand at 0x80 (command buffer offset, instruction 2)"
        );
        assert_eq!(describe_fault(0x42, 7), "fault 0x42 at 0x7");
        assert_eq!(DeviceError::JobTimedOut { seqno: 1 }.fault(), None);
    }

    #[test]
    fn open_errors_carry_a_hint() {
        let e = Device::open_path(Path::new("/nonexistent/accel0")).expect_err("no such node");
        assert!(e.to_string().contains("is the onpu module loaded?"), "{e}");
        // A file that is not a DRM node does not answer GET_PARAM.
        let e = Device::open_path(Path::new("/dev/null")).expect_err("not an NPU");
        assert!(matches!(e, DeviceError::NotOnpu { .. }), "{e}");
        assert!(e.to_string().contains("not an onpu device"), "{e}");
    }
}
