//! kselftest for the onpu job ioctls: SUBMIT, WAIT, WAIT_BO, syncobjs,
//! per-job fault reports, isolation between processes, timeouts and
//! recovery, fdinfo. TAP output; run in the guest with the driver loaded.
//!
//! The timeout test needs the device started with `--inject hang:tag=57005`
//! (CAPS.FAULT_INJECTION set); without it, that test is skipped.

use npu_isa::{assemble, Fault, Insn, Strided};
use npu_tools::accel::{self, Bo, Mapping};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;

const SEC: i64 = 1_000_000_000;
const HANG_TAG: u32 = 0xdead;
const CAPS_FAULT_INJECTION: u64 = 1 << 31;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

fn expect_errno<T>(r: Result<T, i32>, want: i32) -> Result<(), String> {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("got {}, want {}", errno_name(e), errno_name(want))),
        Ok(_) => Err(format!("succeeded, want {}", errno_name(want))),
    }
}

/// A device file with a command-buffer object.
struct Ctx {
    file: File,
    cmd: Bo,
}

impl Ctx {
    fn open() -> Result<Ctx, String> {
        let path = accel::find_device().map_err(|e| e.to_string())?;
        let file = accel::open(&path).map_err(|e| e.to_string())?;
        let cmd = accel::bo_create(&file, 64 * 1024).map_err(errno_name)?;
        Ok(Ctx { file, cmd })
    }

    fn bo(&self, size: u64) -> Result<(Bo, u64), String> {
        let bo = accel::bo_create(&self.file, size).map_err(errno_name)?;
        let va = accel::bo_npu_addr(&self.file, bo.handle).map_err(errno_name)?;
        Ok((bo, va))
    }

    fn map(&self, bo: &Bo) -> Result<Mapping, String> {
        Mapping::new(&self.file, bo).map_err(|e| e.to_string())
    }

    /// Write `insns` into the command buffer; its size in bytes.
    fn program(&self, insns: &[Insn]) -> Result<u32, String> {
        let code = assemble(insns);
        self.map(&self.cmd)?.as_mut_slice()[..code.len()].copy_from_slice(&code);
        Ok(code.len() as u32)
    }

    /// Run `insns` using `bos`; the WAIT outcome.
    fn run(
        &self,
        insns: &[Insn],
        bos: &[(u32, u32)],
        timeout_ms: u32,
    ) -> Result<uapi::drm_onpu_wait, String> {
        let size = self.program(insns)?;
        let refs: Vec<_> = bos
            .iter()
            .map(|&(handle, flags)| uapi::drm_onpu_bo_ref { handle, flags })
            .collect();
        let seqno = accel::submit_simple(&self.file, &self.cmd, size, &refs, timeout_ms)
            .map_err(errno_name)?;
        accel::wait(&self.file, seqno, 10 * SEC).map_err(|e| format!("wait: {}", errno_name(e)))
    }
}

fn copy_job(src_va: u64, dst_va: u64, len: u32) -> Vec<Insn> {
    let c = Strided::contiguous(len);
    vec![
        Insn::DmaLoad {
            va: src_va,
            sram: 0,
            mem: c,
            sram_layout: c,
        },
        Insn::DmaStore {
            va: dst_va,
            sram: 0,
            mem: c,
            sram_layout: c,
        },
        Insn::End,
    ]
}

fn ok_outcome(w: &uapi::drm_onpu_wait) -> Result<(), String> {
    if w.status == uapi::DRM_ONPU_JOB_OK && w.error == 0 {
        Ok(())
    } else {
        Err(format!(
            "job failed: status {:#x} error {} at {:#x}",
            w.status, w.error, w.fault_addr
        ))
    }
}

/// A job that DMAs a known pattern from one object to another.
fn dma_pattern(c: &Ctx) -> Result<(), String> {
    let (src, src_va) = c.bo(8192)?;
    let (dst, dst_va) = c.bo(8192)?;
    let pattern: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    c.map(&src)?.as_mut_slice().copy_from_slice(&pattern);
    c.map(&dst)?.as_mut_slice().fill(0);
    let w = c.run(
        &copy_job(src_va, dst_va, 8192),
        &[
            (src.handle, uapi::DRM_ONPU_BO_READ),
            (dst.handle, uapi::DRM_ONPU_BO_WRITE),
        ],
        0,
    )?;
    ok_outcome(&w)?;
    if w.cycles == 0 {
        return Err("the job reports 0 cycles".into());
    }
    let mut m = c.map(&dst)?;
    let got = m.as_mut_slice();
    match got.iter().zip(&pattern).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "byte {i}: got {:#x}, want {:#x}",
            got[i], pattern[i]
        )),
    }
}

/// A job reading an unmapped address fails with MMU_UNMAPPED at that
/// address; one running off the end of its object hits the guard page.
fn mmu_fault(c: &Ctx) -> Result<(), String> {
    let (dst, dst_va) = c.bo(4096)?;
    let bad = 0x4000u64; // below the first address the kernel hands out
    let w = c.run(
        &copy_job(bad, dst_va, 256),
        &[(dst.handle, uapi::DRM_ONPU_BO_WRITE)],
        0,
    )?;
    if w.status != Fault::MmuUnmapped as u32
        || w.error != -libc::EIO
        || w.fault_addr >> 12 != bad >> 12
    {
        return Err(format!(
            "status {:#x} error {} fault_addr {:#x}; want MMU_UNMAPPED at {bad:#x}",
            w.status, w.error, w.fault_addr
        ));
    }
    let (src, src_va) = c.bo(4096)?;
    let w = c.run(
        &copy_job(src_va, dst_va + 4096, 256),
        &[(src.handle, uapi::DRM_ONPU_BO_READ)],
        0,
    )?;
    if w.status != Fault::MmuUnmapped as u32 || w.fault_addr >> 12 != (dst_va + 4096) >> 12 {
        return Err(format!(
            "guard page: status {:#x} fault_addr {:#x}, want MMU_UNMAPPED at {:#x}",
            w.status,
            w.fault_addr,
            dst_va + 4096
        ));
    }
    Ok(())
}

/// A bad opcode is reported with the offset of the instruction.
fn bad_opcode(c: &Ctx) -> Result<(), String> {
    let mut code = assemble(&[Insn::Nop, Insn::Nop, Insn::End]);
    code[128] = 0xee;
    c.map(&c.cmd)?.as_mut_slice()[..code.len()].copy_from_slice(&code);
    let seqno =
        accel::submit_simple(&c.file, &c.cmd, code.len() as u32, &[], 0).map_err(errno_name)?;
    let w = accel::wait(&c.file, seqno, 10 * SEC).map_err(errno_name)?;
    if w.status != Fault::BadOpcode as u32 || w.fault_addr != 128 {
        return Err(format!(
            "status {:#x} fault_addr {:#x}; want BAD_OPCODE at 128",
            w.status, w.fault_addr
        ));
    }
    // The next job of the same file runs normally.
    dma_pattern(c)
}

/// Another process cannot reach this one's buffer through its address.
fn isolation(c: &Ctx) -> Result<(), String> {
    // Push the victim's object away from the addresses a fresh file gets.
    let (_pad, _) = c.bo(1 << 20)?;
    let (victim, victim_va) = c.bo(4096)?;
    let secret: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    c.map(&victim)?.as_mut_slice().copy_from_slice(&secret);
    // SAFETY: the child only uses async-signal-safe paths of its own
    // (fresh file, ioctls, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork failed".into());
    }
    if pid == 0 {
        let code = (|| -> Result<i32, String> {
            let other = Ctx::open()?;
            let (scratch, scratch_va) = other.bo(4096)?;
            // Read the victim's address, then overwrite it.
            let r = other.run(
                &copy_job(victim_va, scratch_va, 4096),
                &[(scratch.handle, uapi::DRM_ONPU_BO_WRITE)],
                0,
            )?;
            let w = other.run(
                &copy_job(scratch_va, victim_va, 4096),
                &[(scratch.handle, uapi::DRM_ONPU_BO_READ)],
                0,
            )?;
            let faulted = |o: &uapi::drm_onpu_wait| {
                o.status == Fault::MmuUnmapped as u32 && o.fault_addr >> 12 == victim_va >> 12
            };
            Ok(if faulted(&r) && faulted(&w) { 0 } else { 1 })
        })()
        .unwrap_or(2);
        // SAFETY: leave the forked child without running the parent's
        // destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the other process's jobs did not both fault at {victim_va:#x} (child status {status:#x})"));
    }
    let mut m = c.map(&victim)?;
    if m.as_mut_slice() != secret.as_slice() {
        return Err("the victim's buffer changed".into());
    }
    dma_pattern(c)
}

/// The output syncobj signals; a job waiting on it as input runs after.
fn syncobjs(c: &Ctx) -> Result<(), String> {
    let (src, src_va) = c.bo(4096)?;
    let (dst, dst_va) = c.bo(4096)?;
    c.map(&src)?.as_mut_slice().fill(0x5a);
    let out = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
    let size = c.program(&copy_job(src_va, dst_va, 4096))?;
    let refs = [
        uapi::drm_onpu_bo_ref {
            handle: src.handle,
            flags: uapi::DRM_ONPU_BO_READ,
        },
        uapi::drm_onpu_bo_ref {
            handle: dst.handle,
            flags: uapi::DRM_ONPU_BO_WRITE,
        },
    ];
    let mut req = uapi::drm_onpu_submit {
        cmdbuf_handle: c.cmd.handle,
        cmdbuf_size: size,
        bo_count: 2,
        bos: refs.as_ptr() as u64,
        out_syncobj: out,
        ..Default::default()
    };
    let first = accel::submit(&c.file, &mut req).map_err(errno_name)?;
    accel::syncobj_wait(&c.file, out, 10_000)
        .map_err(|e| format!("syncobj wait: {}", errno_name(e)))?;
    let ins = [out];
    let mut req2 = uapi::drm_onpu_submit {
        in_syncobjs: ins.as_ptr() as u64,
        in_syncobj_count: 1,
        out_syncobj: 0,
        ..req
    };
    let second = accel::submit(&c.file, &mut req2).map_err(errno_name)?;
    accel::wait_bo(&c.file, dst.handle, 10 * SEC)
        .map_err(|e| format!("wait_bo: {}", errno_name(e)))?;
    for s in [first, second] {
        ok_outcome(&accel::wait(&c.file, s, 10 * SEC).map_err(errno_name)?)?;
    }
    if c.map(&dst)?.as_mut_slice().iter().any(|&b| b != 0x5a) {
        return Err("destination not written".into());
    }
    Ok(())
}

/// Every documented SUBMIT error.
fn submit_errors(c: &Ctx) -> Result<(), String> {
    let size = c.program(&[Insn::End])?;
    let (bo, _) = c.bo(4096)?;
    let good_refs = [uapi::drm_onpu_bo_ref {
        handle: bo.handle,
        flags: uapi::DRM_ONPU_BO_READ,
    }];
    let base = uapi::drm_onpu_submit {
        cmdbuf_handle: c.cmd.handle,
        cmdbuf_size: size,
        ..Default::default()
    };
    let bad_flags = [uapi::drm_onpu_bo_ref {
        handle: bo.handle,
        flags: 0,
    }];
    let unknown_flag = [uapi::drm_onpu_bo_ref {
        handle: bo.handle,
        flags: 4,
    }];
    let bad_handle = [uapi::drm_onpu_bo_ref {
        handle: 0xffff,
        flags: 1,
    }];
    let no_syncobj = [0xfffu32];
    let cases: Vec<(&str, uapi::drm_onpu_submit, i32)> = vec![
        (
            "flags",
            uapi::drm_onpu_submit { flags: 1, ..base },
            libc::EINVAL,
        ),
        (
            "pad",
            uapi::drm_onpu_submit { pad: 1, ..base },
            libc::EINVAL,
        ),
        (
            "size 0",
            uapi::drm_onpu_submit {
                cmdbuf_size: 0,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "size not whole insns",
            uapi::drm_onpu_submit {
                cmdbuf_size: 65,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "size over the maximum",
            uapi::drm_onpu_submit {
                cmdbuf_size: uapi::DRM_ONPU_MAX_CMDBUF_SIZE + 64,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "misaligned offset",
            uapi::drm_onpu_submit {
                cmdbuf_offset: 8,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "past the object",
            uapi::drm_onpu_submit {
                cmdbuf_offset: 64 * 1024,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "offset overflow",
            uapi::drm_onpu_submit {
                cmdbuf_offset: u64::MAX - 63,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "too many objects",
            uapi::drm_onpu_submit {
                bo_count: uapi::DRM_ONPU_MAX_JOB_BOS + 1,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "too many syncobjs",
            uapi::drm_onpu_submit {
                in_syncobj_count: uapi::DRM_ONPU_MAX_IN_SYNCOBJS + 1,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "timeout over the maximum",
            uapi::drm_onpu_submit {
                timeout_ms: 3_600_000,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "bad cmdbuf handle",
            uapi::drm_onpu_submit {
                cmdbuf_handle: 0xffff,
                ..base
            },
            libc::ENOENT,
        ),
        (
            "object flags 0",
            uapi::drm_onpu_submit {
                bo_count: 1,
                bos: bad_flags.as_ptr() as u64,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "unknown object flag",
            uapi::drm_onpu_submit {
                bo_count: 1,
                bos: unknown_flag.as_ptr() as u64,
                ..base
            },
            libc::EINVAL,
        ),
        (
            "bad object handle",
            uapi::drm_onpu_submit {
                bo_count: 1,
                bos: bad_handle.as_ptr() as u64,
                ..base
            },
            libc::ENOENT,
        ),
        (
            "bad objects pointer",
            uapi::drm_onpu_submit {
                bo_count: 1,
                bos: 8,
                ..base
            },
            libc::EFAULT,
        ),
        (
            "bad syncobjs pointer",
            uapi::drm_onpu_submit {
                in_syncobj_count: 1,
                in_syncobjs: 8,
                ..base
            },
            libc::EFAULT,
        ),
        (
            "bad input syncobj",
            uapi::drm_onpu_submit {
                in_syncobj_count: 1,
                in_syncobjs: no_syncobj.as_ptr() as u64,
                ..base
            },
            libc::ENOENT,
        ),
        (
            "bad output syncobj",
            uapi::drm_onpu_submit {
                out_syncobj: 0xfff,
                ..base
            },
            libc::ENOENT,
        ),
    ];
    for (what, mut req, want) in cases {
        expect_errno(accel::submit(&c.file, &mut req), want).map_err(|e| format!("{what}: {e}"))?;
    }
    // And the same request, fixed, goes through.
    let mut req = uapi::drm_onpu_submit {
        bo_count: 1,
        bos: good_refs.as_ptr() as u64,
        ..base
    };
    let seqno = accel::submit(&c.file, &mut req).map_err(errno_name)?;
    ok_outcome(&accel::wait(&c.file, seqno, 10 * SEC).map_err(errno_name)?)
}

/// Every documented WAIT and WAIT_BO error.
fn wait_errors(c: &Ctx) -> Result<(), String> {
    let size = c.program(&[Insn::End])?;
    let seqno = accel::submit_simple(&c.file, &c.cmd, size, &[], 0).map_err(errno_name)?;
    let mut w = uapi::drm_onpu_wait {
        seqno,
        timeout_ns: SEC,
        flags: 1,
        ..Default::default()
    };
    expect_errno(
        accel::ioctl(&c.file, uapi::DRM_IOCTL_ONPU_WAIT, &mut w),
        libc::EINVAL,
    )
    .map_err(|e| format!("flags: {e}"))?;
    expect_errno(accel::wait(&c.file, seqno, -1), libc::EINVAL)
        .map_err(|e| format!("negative timeout: {e}"))?;
    expect_errno(accel::wait(&c.file, seqno + 1000, SEC), libc::ENOENT)
        .map_err(|e| format!("unknown seqno: {e}"))?;
    ok_outcome(&accel::wait(&c.file, seqno, 10 * SEC).map_err(errno_name)?)?;
    expect_errno(accel::wait(&c.file, seqno, SEC), libc::ENOENT)
        .map_err(|e| format!("reaped seqno: {e}"))?;
    let mut wb = uapi::drm_onpu_wait_bo {
        handle: c.cmd.handle,
        flags: 1,
        timeout_ns: 0,
    };
    expect_errno(
        accel::ioctl(&c.file, uapi::DRM_IOCTL_ONPU_WAIT_BO, &mut wb),
        libc::EINVAL,
    )
    .map_err(|e| format!("wait_bo flags: {e}"))?;
    expect_errno(accel::wait_bo(&c.file, 0xffff, 0), libc::ENOENT)
        .map_err(|e| format!("wait_bo handle: {e}"))?;
    expect_errno(accel::wait_bo(&c.file, c.cmd.handle, -5), libc::EINVAL)
        .map_err(|e| format!("wait_bo timeout: {e}"))?;
    accel::wait_bo(&c.file, c.cmd.handle, 0).map_err(|e| format!("idle wait_bo: {}", errno_name(e)))
}

/// A job that hangs is failed with ETIMEDOUT, the device is reset, and
/// the next job runs.
fn timeout_then_success(c: &Ctx) -> Result<(), String> {
    let resets = accel::get_param(&c.file, uapi::DRM_ONPU_PARAM_RESETS).map_err(errno_name)?;
    let w = c.run(&[Insn::Mark { tag: HANG_TAG }, Insn::End], &[], 300)?;
    if w.status != uapi::DRM_ONPU_JOB_TIMEDOUT || w.error != -libc::ETIMEDOUT {
        return Err(format!(
            "status {:#x} error {}; want TIMEDOUT / -ETIMEDOUT",
            w.status, w.error
        ));
    }
    let after = accel::get_param(&c.file, uapi::DRM_ONPU_PARAM_RESETS).map_err(errno_name)?;
    if after != resets + 1 {
        return Err(format!(
            "resets went from {resets} to {after}, want one more"
        ));
    }
    dma_pattern(c)
}

/// fdinfo carries the DRM standard keys.
fn fdinfo(c: &Ctx) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", c.file.as_raw_fd()))
        .map_err(|e| e.to_string())?;
    for key in [
        "drm-driver:\tonpu",
        "drm-client-id:",
        "drm-engine-npu:",
        "drm-cycles-npu:",
        "drm-total-memory:",
    ] {
        if !text.contains(key) {
            return Err(format!("no {key:?} in:\n{text}"));
        }
    }
    let busy: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("drm-engine-npu:"))
        .and_then(|v| v.trim().trim_end_matches(" ns").parse().ok())
        .ok_or("unreadable drm-engine-npu")?;
    if busy == 0 {
        return Err("drm-engine-npu is 0 after running jobs".into());
    }
    Ok(())
}

fn main() {
    let c = match Ctx::open() {
        Ok(c) => c,
        Err(e) => {
            println!("# cannot open the device: {e}");
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let injecting = accel::get_param(&c.file, uapi::DRM_ONPU_PARAM_CAPS)
        .map(|v| v & CAPS_FAULT_INJECTION != 0)
        .unwrap_or(false);
    let mut tap = Tap::new(9);
    tap.check(
        "a job DMAs a known pattern between two objects",
        dma_pattern(&c),
    );
    tap.check(
        "an MMU fault is reported with its address, also at the guard page",
        mmu_fault(&c),
    );
    tap.check(
        "a bad opcode is reported with its offset; the next job runs",
        bad_opcode(&c),
    );
    tap.check(
        "another process's jobs fault on this one's addresses and change nothing",
        isolation(&c),
    );
    tap.check(
        "output and input syncobjs order two jobs; wait-bo",
        syncobjs(&c),
    );
    tap.check(
        "submit rejects every bad field with its errno",
        submit_errors(&c),
    );
    tap.check(
        "wait and wait-bo reject bad arguments; reaped jobs are gone",
        wait_errors(&c),
    );
    if injecting {
        tap.check(
            "a hung job times out with ETIMEDOUT, the NPU is reset, the next job runs",
            timeout_then_success(&c),
        );
    } else {
        tap.skip(
            "a hung job times out with ETIMEDOUT, the NPU is reset, the next job runs",
            "device started without --inject hang:tag=57005",
        );
    }
    tap.check(
        "fdinfo has drm-driver, drm-engine-npu, drm-cycles-npu and memory keys",
        fdinfo(&c),
    );
    std::process::exit(tap.finish());
}
