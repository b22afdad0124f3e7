//! Selftest: buffer-object creation flags and pinning on first use.
//!
//! READ_ONLY objects are mapped for the NPU without write permission (a job
//! reads them, a job writing them faults MMU_PERMISSION at the object's
//! address, SUBMIT refuses to list them for writing); NO_MMAP objects cannot
//! be mapped by the CPU, not even through a dma-buf exported from them, but
//! jobs use them; CPU_WC objects round-trip through the NPU; unknown flags
//! are refused. An object's pages are only allocated when a job first uses
//! it: fdinfo's drm-resident-memory shows a large unused object costs
//! nothing, and all of it once a job used it. Userptr objects (pinned
//! process memory) round-trip through jobs, honour READ_ONLY, refuse PRIME
//! export, and their arguments are checked.

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Fault};
use npu_tools::copyjob;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::os::fd::AsRawFd;

const SEC: i64 = 1_000_000_000;
const LEN: u32 = 8192;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// An object of `file` with `flags`, and its NPU address.
fn bo(file: &File, size: u64, flags: u32) -> Result<(Bo, u64), String> {
    let b = accel::bo_create_flags(file, size, flags)
        .map_err(|e| format!("bo_create: {}", errno_name(e)))?;
    let va =
        accel::bo_npu_addr(file, b.handle).map_err(|e| format!("bo_info: {}", errno_name(e)))?;
    Ok((b, va))
}

fn fill(file: &File, b: &Bo, seed: u32) -> Result<Vec<u8>, String> {
    let data = copyjob::pattern(seed, b.size as usize);
    let mut m = Mapping::new(file, b).map_err(|e| format!("mmap: {e}"))?;
    m.as_mut_slice().copy_from_slice(&data);
    Ok(data)
}

fn read(file: &File, b: &Bo) -> Result<Vec<u8>, String> {
    let mut m = Mapping::new(file, b).map_err(|e| format!("mmap: {e}"))?;
    Ok(m.as_mut_slice().to_vec())
}

/// Run a job copying LEN bytes from `src_va` to `dst_va`, listing `refs`;
/// its outcome.
fn copy(
    file: &File,
    src_va: u64,
    dst_va: u64,
    refs: &[uapi::drm_onpu_bo_ref],
) -> Result<uapi::drm_onpu_wait, String> {
    let (cmd, _) = bo(file, 4096, 0)?;
    let code = assemble(&copyjob::insns(src_va, dst_va, LEN));
    Mapping::new(file, &cmd)
        .map_err(|e| format!("mmap: {e}"))?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let seqno = accel::submit_simple(file, accel::FIRST_QUEUE, &cmd, code.len() as u32, refs, 0)
        .map_err(|e| format!("submit: {}", errno_name(e)))?;
    let w = accel::wait(file, seqno, 30 * SEC).map_err(|e| format!("wait: {}", errno_name(e)));
    let _ = accel::gem_close(file, cmd.handle);
    w
}

fn r(handle: u32, flags: u32) -> uapi::drm_onpu_bo_ref {
    uapi::drm_onpu_bo_ref { handle, flags }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// BO_INFO.bo_flags gives back each valid combination; every unknown bit
/// is EINVAL.
fn flags_reported(file: &File) -> Result<(), String> {
    for flags in 0..=uapi::DRM_ONPU_BO_CREATE_FLAGS {
        let (b, _) = bo(file, 4096, flags)?;
        let i = accel::bo_info_raw(file, b.handle).map_err(errno_name)?;
        expect(i.bo_flags == flags && i.pad == 0, || {
            format!(
                "created with {flags:#x}, BO_INFO says {:#x} pad {}",
                i.bo_flags, i.pad
            )
        })?;
        let _ = accel::gem_close(file, b.handle);
    }
    for bit in 3..32 {
        let got = accel::bo_create_flags(file, 4096, 1 << bit).err();
        expect(got == Some(libc::EINVAL), || {
            format!("flag bit {bit}: {got:?}")
        })?;
    }
    Ok(())
}

/// A job reads a READ_ONLY object.
fn read_only_read(file: &File) -> Result<(), String> {
    let (ro, ro_va) = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_READ_ONLY)?;
    let (dst, dst_va) = bo(file, u64::from(LEN), 0)?;
    let want = fill(file, &ro, 11)?;
    let w = copy(
        file,
        ro_va,
        dst_va,
        &[
            r(ro.handle, uapi::DRM_ONPU_BO_READ),
            r(dst.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| e.to_string())?;
    let got = read(file, &dst)?;
    expect(got == want, || {
        format!("copy differs at byte {:?}", first_difference(&got, &want))
    })
}

/// A job writing a READ_ONLY object (listed for reading, as the kernel
/// allows) faults MMU_PERMISSION at the object's address; the object keeps
/// its bytes.
fn read_only_write_faults(file: &File) -> Result<(), String> {
    let (src, src_va) = bo(file, u64::from(LEN), 0)?;
    let (ro, ro_va) = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_READ_ONLY)?;
    fill(file, &src, 21)?;
    let before = fill(file, &ro, 22)?;
    let w = copy(
        file,
        src_va,
        ro_va,
        &[
            r(src.handle, uapi::DRM_ONPU_BO_READ),
            r(ro.handle, uapi::DRM_ONPU_BO_READ),
        ],
    )?;
    expect(
        w.status == Fault::MmuPermission as u32 && w.error == -libc::EIO && w.fault_addr == ro_va,
        || {
            format!(
                "status {:#x} error {} fault_addr {:#x} (object at {ro_va:#x})",
                w.status, w.error, w.fault_addr
            )
        },
    )?;
    let after = read(file, &ro)?;
    expect(after == before, || {
        format!(
            "object changed at byte {:?}",
            first_difference(&after, &before)
        )
    })
}

/// SUBMIT refuses a READ_ONLY object listed for writing.
fn read_only_write_listed(file: &File) -> Result<(), String> {
    let (src, src_va) = bo(file, u64::from(LEN), 0)?;
    let (ro, ro_va) = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_READ_ONLY)?;
    for flags in [
        uapi::DRM_ONPU_BO_WRITE,
        uapi::DRM_ONPU_BO_READ | uapi::DRM_ONPU_BO_WRITE,
    ] {
        let got = copy(
            file,
            src_va,
            ro_va,
            &[r(src.handle, uapi::DRM_ONPU_BO_READ), r(ro.handle, flags)],
        )
        .err();
        expect(
            got.as_deref()
                .is_some_and(|e| e.contains(&format!("errno {}", libc::EACCES))),
            || format!("flags {flags}: {got:?}"),
        )?;
    }
    Ok(())
}

/// NO_MMAP: no mmap offset, mmap of an exported dma-buf is EACCES, and a
/// job still uses the object.
fn no_mmap(file: &File) -> Result<(), String> {
    let (nm, nm_va) = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_NO_MMAP)?;
    expect(nm.mmap_offset == 0, || {
        format!("mmap_offset {:#x}", nm.mmap_offset)
    })?;
    let dmabuf =
        accel::prime_export(file, nm.handle).map_err(|e| format!("export: {}", errno_name(e)))?;
    let mapped = memmap2::MmapOptions::new()
        .len(LEN as usize)
        .map_raw(dmabuf.as_raw_fd());
    let errno = mapped.as_ref().err().and_then(|e| e.raw_os_error());
    expect(errno == Some(libc::EACCES), || {
        format!("mmap of the dma-buf: {:?}", mapped.map(|_| "mapped"))
    })?;
    // Through the NPU: src -> NO_MMAP -> dst.
    let (src, src_va) = bo(file, u64::from(LEN), 0)?;
    let (dst, dst_va) = bo(file, u64::from(LEN), 0)?;
    let want = fill(file, &src, 31)?;
    let w = copy(
        file,
        src_va,
        nm_va,
        &[
            r(src.handle, uapi::DRM_ONPU_BO_READ),
            r(nm.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| e.to_string())?;
    let w = copy(
        file,
        nm_va,
        dst_va,
        &[
            r(nm.handle, uapi::DRM_ONPU_BO_READ),
            r(dst.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| e.to_string())?;
    let got = read(file, &dst)?;
    expect(got == want, || {
        format!(
            "round trip differs at byte {:?}",
            first_difference(&got, &want)
        )
    })
}

/// CPU_WC objects: CPU writes, the NPU copies, the CPU reads back.
fn cpu_wc(file: &File) -> Result<(), String> {
    let (src, src_va) = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_CPU_WC)?;
    let (dst, dst_va) = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_CPU_WC)?;
    let want = fill(file, &src, 41)?;
    let w = copy(
        file,
        src_va,
        dst_va,
        &[
            r(src.handle, uapi::DRM_ONPU_BO_READ),
            r(dst.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| e.to_string())?;
    let got = read(file, &dst)?;
    expect(got == want, || {
        format!("copy differs at byte {:?}", first_difference(&got, &want))
    })
}

/// drm-resident-memory of a DRM file, in bytes (0 when not shown, which
/// the drm core does while no object of the file is resident).
fn resident(file: &File) -> Result<u64, String> {
    let path = format!("/proc/self/fdinfo/{}", file.as_raw_fd());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let Some(line) = text.lines().find(|l| l.starts_with("drm-resident-memory:")) else {
        return Ok(0);
    };
    let value = line.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
    let mut words = value.split_whitespace();
    let n: u64 = words
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("bad line {line:?}"))?;
    let unit = match words.next() {
        None => 1,
        Some("KiB") => 1 << 10,
        Some("MiB") => 1 << 20,
        Some(u) => return Err(format!("unknown unit {u:?} in {line:?}")),
    };
    Ok(n * unit)
}

/// Pages on first use: a 64 MiB object nobody used is not resident; a job
/// writing a page of it makes all of it resident (pinned for the NPU).
fn first_use(path: &std::path::Path) -> Result<(), String> {
    const BIG: u64 = 64 << 20;
    let file = accel::open_with_queue(path).map_err(|e| e.to_string())?;
    let (big, big_va) = bo(&file, BIG, 0)?;
    let before = resident(&file)?;
    expect(before < BIG, || {
        format!("{before} bytes resident before any use")
    })?;
    let (src, src_va) = bo(&file, u64::from(LEN), 0)?;
    fill(&file, &src, 51)?;
    let w = copy(
        &file,
        src_va,
        big_va,
        &[
            r(src.handle, uapi::DRM_ONPU_BO_READ),
            r(big.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| e.to_string())?;
    let after = resident(&file)?;
    expect(after >= BIG + u64::from(LEN), || {
        format!("{after} bytes resident after the job (before: {before})")
    })
}

/// Page-aligned anonymous memory of this process, unmapped on drop.
struct UserMem {
    ptr: *mut u8,
    len: usize,
}

impl UserMem {
    fn new(len: usize) -> Result<UserMem, String> {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(UserMem { ptr: p.cast(), len })
    }

    fn addr(&self) -> u64 {
        self.ptr as u64
    }

    fn write(&mut self, data: &[u8]) {
        for (i, &b) in data.iter().enumerate().take(self.len) {
            // SAFETY: in the mapping, which is writable until protect().
            unsafe { self.ptr.add(i).write_volatile(b) };
        }
    }

    /// The bytes, read afresh (the device writes them behind our back).
    fn read(&self) -> Vec<u8> {
        // SAFETY: in the mapping, which stays readable.
        (0..self.len)
            .map(|i| unsafe { self.ptr.add(i).read_volatile() })
            .collect()
    }

    fn protect(&self, prot: i32) -> Result<(), String> {
        // SAFETY: our own mapping; only its protection changes.
        if unsafe { libc::mprotect(self.ptr.cast(), self.len, prot) } != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for UserMem {
    fn drop(&mut self) {
        // SAFETY: our own mapping, not used after this.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A userptr object of `mem` with `flags`, and its NPU address.
fn userptr(file: &File, mem: &UserMem, flags: u32) -> Result<(Bo, u64), String> {
    let b = accel::bo_create_userptr(file, mem.addr(), mem.len as u64, flags)
        .map_err(|e| format!("bo_create_userptr: {}", errno_name(e)))?;
    let va =
        accel::bo_npu_addr(file, b.handle).map_err(|e| format!("bo_info: {}", errno_name(e)))?;
    Ok((b, va))
}

/// A job copies from one userptr buffer to a normal object and back into
/// another userptr buffer; the process sees the bytes in its own memory.
fn userptr_round_trip(file: &File) -> Result<(), String> {
    let mut a = UserMem::new(LEN as usize)?;
    let b = UserMem::new(LEN as usize)?;
    let want = copyjob::pattern(61, LEN as usize);
    a.write(&want);
    let (ua, ua_va) = userptr(file, &a, 0)?;
    let (ub, ub_va) = userptr(file, &b, 0)?;
    expect(
        ua.mmap_offset == 0 && ua.flags == uapi::BoFlags::NO_MMAP,
        || {
            format!(
                "bo_info: mmap_offset {:#x} flags {:?}",
                ua.mmap_offset, ua.flags
            )
        },
    )?;
    let (n, n_va) = bo(file, u64::from(LEN), 0)?;
    let w = copy(
        file,
        ua_va,
        n_va,
        &[
            r(ua.handle, uapi::DRM_ONPU_BO_READ),
            r(n.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| format!("userptr -> bo: {e}"))?;
    let w = copy(
        file,
        n_va,
        ub_va,
        &[
            r(n.handle, uapi::DRM_ONPU_BO_READ),
            r(ub.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| format!("bo -> userptr: {e}"))?;
    let mid = read(file, &n)?;
    expect(mid == want, || {
        format!("object differs at byte {:?}", first_difference(&mid, &want))
    })?;
    let got = b.read();
    expect(got == want, || {
        format!(
            "user memory differs at byte {:?}",
            first_difference(&got, &want)
        )
    })?;
    let exported = accel::prime_export(file, ua.handle).err();
    expect(exported == Some(libc::EINVAL), || {
        format!("PRIME export of a userptr object: {exported:?}")
    })?;
    for h in [ua.handle, ub.handle, n.handle] {
        let _ = accel::gem_close(file, h);
    }
    Ok(())
}

/// Read-only user memory: pinning it for writing is EFAULT; READ_ONLY
/// works, jobs read it, a job writing it faults MMU_PERMISSION there and
/// the memory is unchanged, and SUBMIT refuses it listed for writing.
fn userptr_read_only(file: &File) -> Result<(), String> {
    let mut a = UserMem::new(LEN as usize)?;
    let want = copyjob::pattern(71, LEN as usize);
    a.write(&want);
    a.protect(libc::PROT_READ)?;
    let writable = accel::bo_create_userptr(file, a.addr(), u64::from(LEN), 0).err();
    expect(writable == Some(libc::EFAULT), || {
        format!("writable userptr of read-only memory: {writable:?}")
    })?;
    let (ua, ua_va) = userptr(file, &a, uapi::DRM_ONPU_BO_READ_ONLY)?;
    let (n, n_va) = bo(file, u64::from(LEN), 0)?;
    let w = copy(
        file,
        ua_va,
        n_va,
        &[
            r(ua.handle, uapi::DRM_ONPU_BO_READ),
            r(n.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| format!("read: {e}"))?;
    let got = read(file, &n)?;
    expect(got == want, || {
        format!("copy differs at byte {:?}", first_difference(&got, &want))
    })?;
    fill(file, &n, 72)?;
    let w = copy(
        file,
        n_va,
        ua_va,
        &[
            r(n.handle, uapi::DRM_ONPU_BO_READ),
            r(ua.handle, uapi::DRM_ONPU_BO_READ),
        ],
    )?;
    expect(
        w.status == Fault::MmuPermission as u32 && w.fault_addr == ua_va,
        || {
            format!(
                "write: status {:#x} fault_addr {:#x} (object at {ua_va:#x})",
                w.status, w.fault_addr
            )
        },
    )?;
    let after = a.read();
    expect(after == want, || {
        format!(
            "read-only memory changed at byte {:?}",
            first_difference(&after, &want)
        )
    })?;
    let listed = copy(
        file,
        n_va,
        ua_va,
        &[
            r(n.handle, uapi::DRM_ONPU_BO_READ),
            r(ua.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )
    .err();
    expect(
        listed
            .as_deref()
            .is_some_and(|e| e.contains(&format!("errno {}", libc::EACCES))),
        || format!("listed for writing: {listed:?}"),
    )
}

/// BO_CREATE_USERPTR's errors.
fn userptr_bad_args(file: &File) -> Result<(), String> {
    let page = 4096u64;
    let a = UserMem::new(2 * page as usize)?;
    let hole = UserMem::new(2 * page as usize)?;
    // SAFETY: the second page of our own mapping, not used afterwards.
    unsafe { libc::munmap(hole.ptr.add(page as usize).cast(), page as usize) };
    let gone = UserMem::new(page as usize)?;
    let gone_addr = gone.addr();
    drop(gone);
    let cases: &[(&str, u64, u64, u32, i32)] = &[
        ("unaligned pointer", a.addr() + 8, page, 0, libc::EINVAL),
        ("unaligned size", a.addr(), page + 1, 0, libc::EINVAL),
        ("size 0", a.addr(), 0, 0, libc::EINVAL),
        (
            "size above the maximum",
            a.addr(),
            uapi::DRM_ONPU_BO_MAX_SIZE + page,
            0,
            libc::EINVAL,
        ),
        (
            "flag NO_MMAP",
            a.addr(),
            page,
            uapi::DRM_ONPU_BO_NO_MMAP,
            libc::EINVAL,
        ),
        (
            "flag CPU_WC",
            a.addr(),
            page,
            uapi::DRM_ONPU_BO_CPU_WC,
            libc::EINVAL,
        ),
        ("unknown flag", a.addr(), page, 1 << 3, libc::EINVAL),
        ("unmapped range", gone_addr, page, 0, libc::EFAULT),
        (
            "range running into a hole",
            hole.addr(),
            2 * page,
            0,
            libc::EFAULT,
        ),
        (
            "kernel address",
            0xffff_8000_0000_0000,
            page,
            0,
            libc::EFAULT,
        ),
    ];
    for &(what, ptr, size, flags, want) in cases {
        let got = accel::bo_create_userptr(file, ptr, size, flags).err();
        expect(got == Some(want), || {
            format!("{what}: got {got:?}, want {want}")
        })?;
    }
    // The hole's first page alone is fine.
    let ok = accel::bo_create_userptr(file, hole.addr(), page, 0)
        .map_err(|e| format!("one page: {}", errno_name(e)))?;
    let _ = accel::gem_close(file, ok.handle);
    Ok(())
}

fn main() {
    let mut tap = Tap::new(10);
    let path = match accel::find_device() {
        Ok(p) => p,
        Err(e) => {
            println!("# {e}");
            std::process::exit(tap.finish());
        }
    };
    let file = match accel::open_with_queue(&path) {
        Ok(f) => f,
        Err(e) => {
            tap.check("open", Err(e.to_string()));
            std::process::exit(tap.finish());
        }
    };
    tap.check(
        "bo-create flags are reported by bo-info; unknown bits are EINVAL",
        flags_reported(&file),
    );
    tap.check("a job reads a READ_ONLY object", read_only_read(&file));
    tap.check(
        "a job writing a READ_ONLY object faults MMU_PERMISSION there; the object is unchanged",
        read_only_write_faults(&file),
    );
    tap.check(
        "submit refuses a READ_ONLY object listed for writing with EACCES",
        read_only_write_listed(&file),
    );
    tap.check(
        "NO_MMAP: no mmap offset, dma-buf mmap is EACCES, jobs use it",
        no_mmap(&file),
    );
    tap.check("CPU_WC objects round-trip through a job", cpu_wc(&file));
    tap.check(
        "pages are allocated on first use (fdinfo drm-resident-memory)",
        first_use(&path),
    );
    tap.check(
        "userptr round trip: user memory -> object -> other user memory; no export",
        userptr_round_trip(&file),
    );
    tap.check(
        "userptr READ_ONLY: read-only memory, jobs read it, a write faults, EACCES listed for writing",
        userptr_read_only(&file),
    );
    tap.check(
        "userptr argument errors (EINVAL, EFAULT)",
        userptr_bad_args(&file),
    );
    std::process::exit(tap.finish());
}
