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
//! export, and their arguments are checked; their pinned pages count
//! against the creating process's RLIMIT_MEMLOCK (its VmPin), which an
//! unprivileged process cannot exceed (ENOMEM), and freeing an object gives
//! them back to that process, whichever process frees it.

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

/// `got` is `want`, else where `what` differs.
fn same(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    expect(got == want, || {
        format!("{what} differs at byte {:?}", first_difference(got, want))
    })
}

/// A job copies LEN bytes from `src` (listed for reading) to `dst` (listed
/// for writing) and ends OK.
fn copy_ok(file: &File, src: &(Bo, u64), dst: &(Bo, u64)) -> Result<(), String> {
    let w = copy(
        file,
        src.1,
        dst.1,
        &[
            r(src.0.handle, uapi::DRM_ONPU_BO_READ),
            r(dst.0.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
    )?;
    copyjob::ok_outcome(&w).map_err(|e| e.to_string())
}

/// The CPU fills `src` with the pattern of `seed`, a job copies it to
/// `dst`, the CPU reads `dst` back: the same bytes.
fn fill_copy_read(file: &File, src: &(Bo, u64), dst: &(Bo, u64), seed: u32) -> Result<(), String> {
    let want = fill(file, &src.0, seed)?;
    copy_ok(file, src, dst)?;
    same("copy", &read(file, &dst.0)?, &want)
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
    let ro = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_READ_ONLY)?;
    let dst = bo(file, u64::from(LEN), 0)?;
    fill_copy_read(file, &ro, &dst, 11)
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
    same("the READ_ONLY object", &read(file, &ro)?, &before)
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
    let nm = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_NO_MMAP)?;
    expect(nm.0.mmap_offset == 0, || {
        format!("mmap_offset {:#x}", nm.0.mmap_offset)
    })?;
    let dmabuf =
        accel::prime_export(file, nm.0.handle).map_err(|e| format!("export: {}", errno_name(e)))?;
    let mapped = memmap2::MmapOptions::new()
        .len(LEN as usize)
        .map_raw(dmabuf.as_raw_fd());
    let errno = mapped.as_ref().err().and_then(|e| e.raw_os_error());
    expect(errno == Some(libc::EACCES), || {
        format!("mmap of the dma-buf: {:?}", mapped.map(|_| "mapped"))
    })?;
    // Through the NPU: src -> NO_MMAP -> dst.
    let src = bo(file, u64::from(LEN), 0)?;
    let dst = bo(file, u64::from(LEN), 0)?;
    let want = fill(file, &src.0, 31)?;
    copy_ok(file, &src, &nm)?;
    copy_ok(file, &nm, &dst)?;
    same("round trip", &read(file, &dst.0)?, &want)
}

/// CPU_WC objects: CPU writes, the NPU copies, the CPU reads back.
fn cpu_wc(file: &File) -> Result<(), String> {
    let src = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_CPU_WC)?;
    let dst = bo(file, u64::from(LEN), uapi::DRM_ONPU_BO_CPU_WC)?;
    fill_copy_read(file, &src, &dst, 41)
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
    let src = bo(&file, u64::from(LEN), 0)?;
    fill(&file, &src.0, 51)?;
    copy_ok(&file, &src, &(big, big_va))?;
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
    let n = bo(file, u64::from(LEN), 0)?;
    let (ua, ub) = ((ua, ua_va), (ub, ub_va));
    copy_ok(file, &ua, &n).map_err(|e| format!("userptr -> bo: {e}"))?;
    copy_ok(file, &n, &ub).map_err(|e| format!("bo -> userptr: {e}"))?;
    same("object", &read(file, &n.0)?, &want)?;
    same("user memory", &b.read(), &want)?;
    let (ua, ub, n) = (ua.0, ub.0, n.0);
    let exported = accel::prime_export(file, ua.handle).err();
    expect(exported == Some(libc::EINVAL), || {
        format!("PRIME export of a userptr object: {exported:?}")
    })?;
    for h in [ua.handle, ub.handle, n.handle] {
        let _ = accel::gem_close(file, h);
    }
    Ok(())
}

/// How many userptr objects of the same memory `userptr_overlapping` keeps:
/// more than the seven overlapping DMA mappings of a cacheline past which
/// the DMA-API debug checks warn unless the mappings are coherent ones.
const OVERLAPPING_USERPTRS: usize = 16;

/// Any number of userptr objects may wrap the same user memory at once
/// (each a DMA mapping of the same pages): all of them work, a job writing
/// through each one lands in the process's memory, and on the debug kernel
/// the DMA-API checks stay quiet (the harness fails the run on a warning).
fn userptr_overlapping(file: &File) -> Result<(), String> {
    let mem = UserMem::new(LEN as usize)?;
    let objects = (0..OVERLAPPING_USERPTRS)
        .map(|_| userptr(file, &mem, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let n = bo(file, u64::from(LEN), 0)?;
    for (i, dst) in objects.iter().enumerate() {
        let want = fill(file, &n.0, 100 + i as u32)?;
        copy_ok(file, &n, dst).map_err(|e| format!("bo -> userptr object {i}: {e}"))?;
        same(&format!("user memory after object {i}"), &mem.read(), &want)?;
    }
    for (b, _) in objects.iter().chain([&n]) {
        close(file, b)?;
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
    let ro = userptr(file, &a, uapi::DRM_ONPU_BO_READ_ONLY)?;
    let n = bo(file, u64::from(LEN), 0)?;
    copy_ok(file, &ro, &n).map_err(|e| format!("read: {e}"))?;
    same("copy", &read(file, &n.0)?, &want)?;
    let ((ua, ua_va), (n, n_va)) = (ro, n);
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
    same("read-only memory", &a.read(), &want)?;
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

const PAGE: u64 = 4096;
/// The RLIMIT_MEMLOCK the memlock test sets, in pages.
const MEMLOCK_PAGES: u64 = 16;
/// The user `nobody`.
const NOBODY: u32 = 65534;

/// This process's VmPin (the pages pinned for devices, charged against
/// RLIMIT_MEMLOCK) in KiB, from /proc/self/status.
fn vm_pin_kib() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmPin:"))
        .ok_or("no VmPin in /proc/self/status")?;
    line.trim_start_matches("VmPin:")
        .trim()
        .strip_suffix("kB")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("bad line {line:?}"))
}

/// VmPin is `pages` pages.
fn expect_pinned(what: &str, pages: u64) -> Result<(), String> {
    let kib = vm_pin_kib()?;
    expect(kib == pages * PAGE / 1024, || {
        format!("{what}: VmPin {kib} kB, want {} kB", pages * PAGE / 1024)
    })
}

/// BO_CREATE_USERPTR of `pages` pages of `mem` from page `first`.
fn userptr_pages(file: &File, mem: &UserMem, first: u64, pages: u64) -> Result<Bo, i32> {
    accel::bo_create_userptr(file, mem.addr() + first * PAGE, pages * PAGE, 0)
}

fn close(file: &File, b: &Bo) -> Result<(), String> {
    accel::gem_close(file, b.handle).map_err(|e| format!("gem_close: {}", errno_name(e)))
}

/// One line from the other process, without its newline.
fn recv_line(sock: &mut std::os::unix::net::UnixStream) -> Result<String, String> {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        match sock.read(&mut byte) {
            Ok(0) => return Err(format!("the other process hung up after {line:?}")),
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn send_line(sock: &mut std::os::unix::net::UnixStream, line: &str) -> Result<(), String> {
    use std::io::Write;
    sock.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))
}

/// The forked child of [`userptr_memlock`], on the parent's DRM file.
/// As root (CAP_IPC_LOCK) it pins beyond RLIMIT_MEMLOCK; then as `nobody`
/// it cannot: ENOMEM above the limit, the pins add up, closing gives them
/// back; an object the parent frees gives its pages back to this process.
fn memlock_child(file: &File, sock: &mut std::os::unix::net::UnixStream) -> Result<(), String> {
    let limit = libc::rlimit {
        rlim_cur: MEMLOCK_PAGES * PAGE,
        rlim_max: MEMLOCK_PAGES * PAGE,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    let mem = UserMem::new((4 * MEMLOCK_PAGES * PAGE) as usize)?;
    expect_pinned("a new process", 0)?;
    // CAP_IPC_LOCK lifts the limit (the guest runs the tests as root).
    let big = userptr_pages(file, &mem, 0, 2 * MEMLOCK_PAGES)
        .map_err(|e| format!("twice the limit as root: {}", errno_name(e)))?;
    expect_pinned("twice the limit as root", 2 * MEMLOCK_PAGES)?;
    close(file, &big)?;
    expect_pinned("closed", 0)?;

    // SAFETY: plain system calls; this process is single-threaded.
    if unsafe { libc::setgid(NOBODY) } != 0 || unsafe { libc::setuid(NOBODY) } != 0 {
        return Err(format!(
            "setuid nobody: {}",
            std::io::Error::last_os_error()
        ));
    }
    let over = userptr_pages(file, &mem, 0, MEMLOCK_PAGES + 1).err();
    expect(over == Some(libc::ENOMEM), || {
        format!("one page above RLIMIT_MEMLOCK, unprivileged: {over:?}, want ENOMEM")
    })?;
    expect_pinned("after the refused object", 0)?;
    let a = userptr_pages(file, &mem, 0, MEMLOCK_PAGES - 4)
        .map_err(|e| format!("below the limit: {}", errno_name(e)))?;
    expect_pinned("below the limit", MEMLOCK_PAGES - 4)?;
    let more = userptr_pages(file, &mem, MEMLOCK_PAGES, 8).err();
    expect(more == Some(libc::ENOMEM), || {
        format!("a second object taking the pins above the limit: {more:?}, want ENOMEM")
    })?;
    close(file, &a)?;
    expect_pinned("the object closed", 0)?;
    // Its charge came back: the whole limit fits again.
    let full = userptr_pages(file, &mem, 0, MEMLOCK_PAGES)
        .map_err(|e| format!("the whole limit after a close: {}", errno_name(e)))?;
    expect_pinned("the whole limit", MEMLOCK_PAGES)?;
    close(file, &full)?;

    // An object the parent frees gives the pages back to this process.
    let c = userptr_pages(file, &mem, 0, MEMLOCK_PAGES - 4)
        .map_err(|e| format!("for the parent: {}", errno_name(e)))?;
    send_line(sock, &format!("close {}", c.handle))?;
    let reply = recv_line(sock)?;
    expect(reply == "closed", || format!("parent: {reply}"))?;
    expect_pinned("the parent closed our object", 0)?;
    let d = userptr_pages(file, &mem, 0, MEMLOCK_PAGES).map_err(|e| {
        format!(
            "the whole limit after the parent's close: {}",
            errno_name(e)
        )
    })?;
    // Left to the parent to close after this process has exited.
    send_line(sock, &format!("leave {}", d.handle))
}

/// RLIMIT_MEMLOCK: see [`memlock_child`]. The parent (another mm) closes
/// two of the child's objects, one after the child exited: its own VmPin
/// must not move (the charge goes back to the mm that pinned).
fn userptr_memlock(file: &File) -> Result<(), String> {
    use std::os::unix::net::UnixStream;
    let own = vm_pin_kib()?;
    let (mut parent, mut child) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: this program is single-threaded; the child only makes system
    // calls and small allocations, then _exit()s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(parent);
        let code = match memlock_child(file, &mut child) {
            Ok(()) => 0,
            Err(e) => {
                let _ = send_line(&mut child, &format!("error {e}"));
                1
            }
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(child);
    let mut result = Ok(());
    let mut left = None;
    while result.is_ok() {
        let line = match recv_line(&mut parent) {
            Ok(l) => l,
            Err(e) => {
                result = Err(format!("child: {e}"));
                break;
            }
        };
        if let Some(h) = line.strip_prefix("close ") {
            result = h
                .parse()
                .map_err(|_| format!("child said {line:?}"))
                .and_then(|handle| {
                    accel::gem_close(file, handle).map_err(|e| format!("close: {}", errno_name(e)))
                })
                .and_then(|()| send_line(&mut parent, "closed"));
        } else if let Some(h) = line.strip_prefix("leave ") {
            left = h.parse::<u32>().ok();
            break;
        } else {
            result = Err(format!("child: {}", line.trim_start_matches("error ")));
        }
    }
    drop(parent);
    let mut status = 0;
    // SAFETY: waits for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    result?;
    expect(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        || format!("child status {status:#x}"),
    )?;
    let handle = left.ok_or("no handle left by the child")?;
    accel::gem_close(file, handle)
        .map_err(|e| format!("close the child's object: {}", errno_name(e)))?;
    let after = vm_pin_kib()?;
    expect(after == own, || {
        format!("closing the child's objects moved this process's VmPin: {own} kB -> {after} kB")
    })
}

fn main() {
    let mut tap = Tap::new(12);
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
        "sixteen userptr objects of the same memory at once; a job writes through each",
        userptr_overlapping(&file),
    );
    tap.check(
        "userptr argument errors (EINVAL, EFAULT)",
        userptr_bad_args(&file),
    );
    tap.check(
        "userptr pins count against RLIMIT_MEMLOCK: ENOMEM above it without CAP_IPC_LOCK; freeing gives them back to the pinning process",
        userptr_memlock(&file),
    );
    std::process::exit(tap.finish());
}
