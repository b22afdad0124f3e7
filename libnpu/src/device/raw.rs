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
    uapi::drm_onpu_query => uapi::DRM_IOCTL_ONPU_QUERY,
    uapi::drm_onpu_bo_create => uapi::DRM_IOCTL_ONPU_BO_CREATE,
    uapi::drm_onpu_bo_info => uapi::DRM_IOCTL_ONPU_BO_INFO,
    uapi::drm_onpu_context_create => uapi::DRM_IOCTL_ONPU_CONTEXT_CREATE,
    uapi::drm_onpu_context_destroy => uapi::DRM_IOCTL_ONPU_CONTEXT_DESTROY,
    uapi::drm_onpu_queue_create => uapi::DRM_IOCTL_ONPU_QUEUE_CREATE,
    uapi::drm_onpu_queue_destroy => uapi::DRM_IOCTL_ONPU_QUEUE_DESTROY,
    uapi::drm_onpu_submit => uapi::DRM_IOCTL_ONPU_SUBMIT,
    uapi::drm_onpu_wait => uapi::DRM_IOCTL_ONPU_WAIT,
    uapi::drm_onpu_wait_bo => uapi::DRM_IOCTL_ONPU_WAIT_BO,
    uapi::drm_onpu_bo_create_userptr => uapi::DRM_IOCTL_ONPU_BO_CREATE_USERPTR,
    drm_core::drm_gem_close => drm_core::DRM_IOCTL_GEM_CLOSE,
    drm_core::drm_syncobj_create => drm_core::DRM_IOCTL_SYNCOBJ_CREATE,
    drm_core::drm_syncobj_destroy => drm_core::DRM_IOCTL_SYNCOBJ_DESTROY,
    drm_core::drm_syncobj_wait => drm_core::DRM_IOCTL_SYNCOBJ_WAIT,
    drm_core::drm_syncobj_array => drm_core::DRM_IOCTL_SYNCOBJ_SIGNAL,
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

/// The id of the first queue created on a file (queue ids count from 1).
pub const FIRST_QUEUE: u32 = 1;

/// Open a node read-write and create one NORMAL-priority queue on it:
/// [`FIRST_QUEUE`], for tools that submit.
pub fn open_with_queue(path: &Path) -> io::Result<File> {
    let file = open(path)?;
    let queue = queue_create(&file, uapi::DRM_ONPU_PRIORITY_NORMAL)
        .map_err(io::Error::from_raw_os_error)?;
    if queue != FIRST_QUEUE {
        return Err(io::Error::other(format!(
            "the first queue of a new file has id {queue}, not {FIRST_QUEUE}"
        )));
    }
    Ok(file)
}

pub fn get_param(fd: impl AsFd, param: u32) -> Result<u64, i32> {
    let mut p = uapi::drm_onpu_get_param {
        param,
        ..Default::default()
    };
    ioctl(fd, &mut p)?;
    Ok(p.value)
}

/// DRM_IOCTL_ONPU_QUERY into `buf` as given (its length is the size
/// passed; an empty `buf` passes a null pointer): the full size the driver
/// reports.
pub fn query_raw(fd: impl AsFd, query: u32, buf: &mut [u8]) -> Result<u32, i32> {
    let mut q = uapi::drm_onpu_query {
        query,
        size: u32::try_from(buf.len()).map_err(|_| nix::libc::EINVAL)?,
        data: if buf.is_empty() {
            0
        } else {
            buf.as_mut_ptr() as u64
        },
        ..Default::default()
    };
    ioctl(fd, &mut q)?;
    Ok(q.size)
}

/// A query's struct: `#[repr(C)]` plain integers, valid for any bytes.
pub trait QueryData: Default + Copy + private::Sealed {
    const QUERY: u32;
}

impl private::Sealed for uapi::drm_onpu_query_caps {}
impl QueryData for uapi::drm_onpu_query_caps {
    const QUERY: u32 = uapi::DRM_ONPU_QUERY_CAPS;
}
impl private::Sealed for uapi::drm_onpu_query_cost_model {}
impl QueryData for uapi::drm_onpu_query_cost_model {
    const QUERY: u32 = uapi::DRM_ONPU_QUERY_COST_MODEL;
}

/// One query's struct, filled by the driver (a kernel with a shorter
/// struct leaves the rest zero).
pub fn query<T: QueryData>(fd: impl AsFd) -> Result<T, i32> {
    let mut value = T::default();
    // SAFETY: T is one of the uAPI's query structs (sealed): plain
    // integers without padding, for which any bytes are a valid value;
    // the slice covers exactly `value`, which outlives it.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(
            (&mut value as *mut T).cast::<u8>(),
            std::mem::size_of::<T>(),
        )
    };
    query_raw(fd, T::QUERY, bytes)?;
    Ok(value)
}

/// A buffer object of a file: handle, size, CPU mapping offset (0 when the
/// CPU may not map it), creation flags.
#[derive(Clone, Copy, Debug)]
pub struct Bo {
    pub handle: u32,
    pub size: u64,
    pub mmap_offset: u64,
    pub flags: uapi::BoFlags,
}

pub fn bo_create(fd: impl AsFd, size: u64) -> Result<Bo, i32> {
    bo_create_flags(fd, size, 0)
}

/// BO_CREATE with DRM_ONPU_BO_* `flags` as given (also unknown bits).
pub fn bo_create_flags(fd: impl AsFd, size: u64, flags: u32) -> Result<Bo, i32> {
    let mut c = uapi::drm_onpu_bo_create {
        size,
        flags,
        ..Default::default()
    };
    ioctl(fd.as_fd(), &mut c)?;
    bo_info(fd, c.handle)
}

/// BO_CREATE_USERPTR of `size` bytes at `user_ptr` with `flags`, all as
/// given. The kernel pins that memory until the object is freed: the
/// caller must keep it mapped (or lose what the NPU writes there).
pub fn bo_create_userptr(fd: impl AsFd, user_ptr: u64, size: u64, flags: u32) -> Result<Bo, i32> {
    let mut c = uapi::drm_onpu_bo_create_userptr {
        user_ptr,
        size,
        flags,
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
        flags: uapi::BoFlags::from_bits_retain(i.bo_flags),
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

/// QUEUE_CREATE in the file's default context; the queue's id.
pub fn queue_create(fd: impl AsFd, priority: u32) -> Result<u32, i32> {
    let mut q = uapi::drm_onpu_queue_create {
        priority,
        ..Default::default()
    };
    ioctl(fd, &mut q)?;
    Ok(q.queue_id)
}

pub fn queue_destroy(fd: impl AsFd, queue_id: u32) -> Result<(), i32> {
    let mut d = uapi::drm_onpu_queue_destroy { queue_id, pad: 0 };
    ioctl(fd, &mut d).map(drop)
}

/// An obj_array over `elems` (stride: the element's size; 0 for none).
pub fn obj_array<T>(elems: &[T]) -> uapi::drm_onpu_obj_array {
    uapi::drm_onpu_obj_array {
        stride: std::mem::size_of::<T>() as u32,
        count: elems.len() as u32,
        array: if elems.is_empty() {
            0
        } else {
            elems.as_ptr() as u64
        },
    }
}

/// A binary syncobj as a &drm_onpu_sync (point 0, no flags).
pub fn sync(handle: u32) -> uapi::drm_onpu_sync {
    uapi::drm_onpu_sync {
        handle,
        ..Default::default()
    }
}

/// Submit with every field as given; the sequence number.
pub fn submit(fd: impl AsFd, req: &mut uapi::drm_onpu_submit) -> Result<u64, i32> {
    ioctl(fd, req)?;
    Ok(req.seqno)
}

/// Submit `cmdbuf` (from offset 0) to `queue` using `bos` (handle,
/// DRM_ONPU_BO_* flags).
pub fn submit_simple(
    fd: impl AsFd,
    queue: u32,
    cmdbuf: &Bo,
    size: u32,
    bos: &[uapi::drm_onpu_bo_ref],
    timeout_ms: u32,
) -> Result<u64, i32> {
    let mut req = uapi::drm_onpu_submit {
        queue_id: queue,
        cmdbuf_handle: cmdbuf.handle,
        cmdbuf_size: size,
        bos: obj_array(bos),
        timeout_ms,
        ..Default::default()
    };
    submit(fd, &mut req)
}

/// The absolute CLOCK_MONOTONIC deadline `timeout_ns` from now (0 stays 0:
/// a poll), as WAIT and WAIT_BO take it.
pub fn deadline_in(timeout_ns: i64) -> Result<i64, i32> {
    if timeout_ns <= 0 {
        return Ok(0);
    }
    Ok(monotonic_ns()?.saturating_add(timeout_ns))
}

/// WAIT for a job until the absolute CLOCK_MONOTONIC time `deadline_ns`,
/// passed as is; the outcome.
pub fn wait_until(fd: impl AsFd, seqno: u64, deadline_ns: i64) -> Result<uapi::drm_onpu_wait, i32> {
    let mut w = uapi::drm_onpu_wait {
        seqno,
        timeout_abs_ns: deadline_ns,
        ..Default::default()
    };
    ioctl(fd, &mut w)?;
    Ok(w)
}

/// WAIT for a job `timeout_ns` from now (0 polls); the outcome.
pub fn wait(fd: impl AsFd, seqno: u64, timeout_ns: i64) -> Result<uapi::drm_onpu_wait, i32> {
    wait_until(fd, seqno, deadline_in(timeout_ns)?)
}

/// WAIT_BO `timeout_ns` from now (0 polls).
pub fn wait_bo(fd: impl AsFd, handle: u32, timeout_ns: i64) -> Result<(), i32> {
    let mut w = uapi::drm_onpu_wait_bo {
        handle,
        flags: 0,
        timeout_abs_ns: deadline_in(timeout_ns)?,
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

/// SYNCOBJ_SIGNAL: attach a signalled fence to a (binary) syncobj.
pub fn syncobj_signal(fd: impl AsFd, handle: u32) -> Result<(), i32> {
    let handles = [handle];
    let mut a = drm_core::drm_syncobj_array {
        handles: handles.as_ptr() as u64,
        count_handles: 1,
        pad: 0,
    };
    ioctl(fd, &mut a).map(drop)
}

fn timeline_array(fd: impl AsFd, request: u32, handle: u32, point: &mut u64) -> Result<(), i32> {
    let handles = [handle];
    let mut a = drm_core::drm_syncobj_timeline_array {
        handles: handles.as_ptr() as u64,
        points: std::ptr::from_mut(point) as u64,
        count_handles: 1,
        flags: 0,
    };
    // SAFETY: both requests take a drm_syncobj_timeline_array whose arrays
    // (one handle, one point) live across the call.
    unsafe { call(fd, request, &mut a) }.map(drop)
}

/// SYNCOBJ_TIMELINE_SIGNAL: attach a signalled fence as timeline point
/// `point`.
pub fn syncobj_timeline_signal(fd: impl AsFd, handle: u32, point: u64) -> Result<(), i32> {
    let mut p = point;
    timeline_array(
        fd,
        drm_core::DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL,
        handle,
        &mut p,
    )
}

/// SYNCOBJ_QUERY: the timeline's last (signalled or not) point.
pub fn syncobj_query(fd: impl AsFd, handle: u32) -> Result<u64, i32> {
    let mut p = 0;
    timeline_array(fd, drm_core::DRM_IOCTL_SYNCOBJ_QUERY, handle, &mut p)?;
    Ok(p)
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
