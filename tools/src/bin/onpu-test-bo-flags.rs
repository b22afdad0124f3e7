//! Selftest: buffer-object creation flags and pinning on first use.
//!
//! READ_ONLY objects are mapped for the NPU without write permission (a job
//! reads them, a job writing them faults MMU_PERMISSION at the object's
//! address, SUBMIT refuses to list them for writing); NO_MMAP objects cannot
//! be mapped by the CPU, not even through a dma-buf exported from them, but
//! jobs use them; CPU_WC objects round-trip through the NPU; unknown flags
//! are refused. An object's pages are only allocated when a job first uses
//! it: fdinfo's drm-resident-memory shows a large unused object costs
//! nothing, and all of it once a job used it.

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
    let seqno = accel::submit_simple(file, &cmd, code.len() as u32, refs, 0)
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
    let file = accel::open(path).map_err(|e| e.to_string())?;
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

fn main() {
    let mut tap = Tap::new(7);
    let path = match accel::find_device() {
        Ok(p) => p,
        Err(e) => {
            println!("# {e}");
            std::process::exit(tap.finish());
        }
    };
    let file = match accel::open(&path) {
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
    std::process::exit(tap.finish());
}
