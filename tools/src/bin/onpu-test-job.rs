//! kselftest for the onpu job ioctls: SUBMIT, WAIT, WAIT_BO, syncobjs,
//! per-job fault reports, isolation between processes, timeouts and
//! recovery, fdinfo. TAP output; run in the guest with the driver loaded.
//!
//! The timeout test needs the device started with `--inject hang:tag=57005`
//! (CAPS.FAULT_INJECTION set; tools/selftests/runs.list does it); without
//! it, that test fails, or is skipped if the command line says
//! `--injection-optional`.
//!
//!   onpu-test-job [--injection-optional]

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Fault, Insn, Strided};
use npu_tools::args::Args;
use npu_tools::child;
use npu_tools::copyjob::{self, CopyJob};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;

const SEC: i64 = 1_000_000_000;
const HANG_TAG: u32 = 0xdead;

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
        let file = accel::open_with_queue(&path).map_err(|e| e.to_string())?;
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
        let seqno = accel::submit_simple(
            &self.file,
            accel::FIRST_QUEUE,
            &self.cmd,
            size,
            &refs,
            timeout_ms,
        )
        .map_err(errno_name)?;
        accel::wait(&self.file, seqno, 10 * SEC).map_err(|e| format!("wait: {}", errno_name(e)))
    }
}

/// A job that DMAs a known pattern from one object to another.
fn dma_pattern(c: &Ctx) -> Result<(), String> {
    let job = CopyJob::new(&c.file, 8192)?;
    let w = job.run(&c.file, &copyjob::pattern(7, 8192))?;
    if w.cycles == 0 {
        return Err("the job reports 0 cycles".into());
    }
    Ok(())
}

/// A job reading an unmapped address fails with MMU_UNMAPPED at that
/// address; one running off the end of its object hits the guard page.
fn mmu_fault(c: &Ctx) -> Result<(), String> {
    let (dst, dst_va) = c.bo(4096)?;
    let bad = 0x4000u64; // below the first address the kernel hands out
    let w = c.run(
        &copyjob::insns(bad, dst_va, 256),
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
        &copyjob::insns(src_va, dst_va + 4096, 256),
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
    let seqno = accel::submit_simple(
        &c.file,
        accel::FIRST_QUEUE,
        &c.cmd,
        code.len() as u32,
        &[],
        0,
    )
    .map_err(errno_name)?;
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
    let other = child::spawn(|| {
        let run = || -> Result<bool, String> {
            let other = Ctx::open()?;
            let (scratch, scratch_va) = other.bo(4096)?;
            // Read the victim's address, then overwrite it.
            let r = other.run(
                &copyjob::insns(victim_va, scratch_va, 4096),
                &[(scratch.handle, uapi::DRM_ONPU_BO_WRITE)],
                0,
            )?;
            let w = other.run(
                &copyjob::insns(scratch_va, victim_va, 4096),
                &[(scratch.handle, uapi::DRM_ONPU_BO_READ)],
                0,
            )?;
            let faulted = |o: &uapi::drm_onpu_wait| {
                o.status == Fault::MmuUnmapped as u32 && o.fault_addr >> 12 == victim_va >> 12
            };
            Ok(faulted(&r) && faulted(&w))
        };
        match run() {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                println!("# other process: {e}");
                2
            }
        }
    })?;
    match other.wait()? {
        child::Exit::Code(0) => {}
        e => {
            return Err(format!(
                "the other process's jobs did not both fault at {victim_va:#x} ({e})"
            ))
        }
    }
    let mut m = c.map(&victim)?;
    if m.as_mut_slice() != secret.as_slice() {
        return Err("the victim's buffer changed".into());
    }
    dma_pattern(c)
}

/// Instructions of a job that runs long and then copies `src` to `dst`:
/// `loads` DMA loads of `ballast` (1 MiB into SRAM) before the copy, so
/// that it is still running when the next job is queued.
fn long_copy(loads: usize, ballast_va: u64, src_va: u64, dst_va: u64, len: u32) -> Vec<Insn> {
    let mib = Strided::contiguous(1 << 20);
    let mut v = vec![
        Insn::DmaLoad {
            va: ballast_va,
            sram: 0,
            mem: mib,
            sram_layout: mib
        };
        loads
    ];
    v.extend(copyjob::insns(src_va, dst_va, len));
    v
}

/// The output syncobj of a job still running orders the job that waits
/// for it: job 1 (long) copies a pattern into `mid`, job 2 lists job 1's
/// syncobj and copies `mid` on to `dst`. Job 2 is queued while job 1 runs
/// (checked: otherwise the order would not be observable, and the test
/// retries with a longer job 1), must end after job 1 (checked when job 2's
/// syncobj signals) and must see job 1's data. WAIT_BO waits for both.
fn syncobjs(c: &Ctx) -> Result<(), String> {
    const LEN: u32 = 4096;
    let (ballast, ballast_va) = c.bo(1 << 20)?;
    let (src, src_va) = c.bo(u64::from(LEN))?;
    let (mid, mid_va) = c.bo(u64::from(LEN))?;
    let (dst, dst_va) = c.bo(u64::from(LEN))?;
    let (cmd1, _) = c.bo(u64::from(uapi::DRM_ONPU_MAX_CMDBUF_SIZE))?;
    let (cmd2, _) = c.bo(4096)?;
    let max_ms =
        accel::get_param(&c.file, uapi::DRM_ONPU_PARAM_JOB_TIMEOUT_MS).map_err(errno_name)?;
    let timeout_ms = u32::try_from(max_ms).map_err(|_| format!("job timeout {max_ms} ms"))?;
    let code2 = assemble(&copyjob::insns(mid_va, dst_va, LEN));
    c.map(&cmd2)?.as_mut_slice()[..code2.len()].copy_from_slice(&code2);
    let pattern = copyjob::pattern(0x51, LEN as usize);
    c.map(&src)?.as_mut_slice().copy_from_slice(&pattern);
    let mut loads = 256;
    for attempt in 1.. {
        c.map(&mid)?.as_mut_slice().fill(0);
        c.map(&dst)?.as_mut_slice().fill(0);
        let code1 = assemble(&long_copy(loads, ballast_va, src_va, mid_va, LEN));
        c.map(&cmd1)?.as_mut_slice()[..code1.len()].copy_from_slice(&code1);
        let s1 = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
        let s2 = accel::syncobj_create(&c.file, false).map_err(errno_name)?;
        let refs1 = [
            uapi::drm_onpu_bo_ref {
                handle: ballast.handle,
                flags: uapi::DRM_ONPU_BO_READ,
            },
            uapi::drm_onpu_bo_ref {
                handle: src.handle,
                flags: uapi::DRM_ONPU_BO_READ,
            },
            uapi::drm_onpu_bo_ref {
                handle: mid.handle,
                flags: uapi::DRM_ONPU_BO_WRITE,
            },
        ];
        let outs1 = [accel::sync(s1)];
        let mut req1 = uapi::drm_onpu_submit {
            queue_id: accel::FIRST_QUEUE,
            cmdbuf_handle: cmd1.handle,
            cmdbuf_size: code1.len() as u32,
            bos: accel::obj_array(&refs1),
            out_syncs: accel::obj_array(&outs1),
            timeout_ms,
            ..Default::default()
        };
        let refs2 = [
            uapi::drm_onpu_bo_ref {
                handle: mid.handle,
                flags: uapi::DRM_ONPU_BO_READ,
            },
            uapi::drm_onpu_bo_ref {
                handle: dst.handle,
                flags: uapi::DRM_ONPU_BO_WRITE,
            },
        ];
        let ins = [accel::sync(s1)];
        let outs2 = [accel::sync(s2)];
        let mut req2 = uapi::drm_onpu_submit {
            queue_id: accel::FIRST_QUEUE,
            cmdbuf_handle: cmd2.handle,
            cmdbuf_size: code2.len() as u32,
            bos: accel::obj_array(&refs2),
            in_syncs: accel::obj_array(&ins),
            out_syncs: accel::obj_array(&outs2),
            ..Default::default()
        };
        let first = accel::submit(&c.file, &mut req1)
            .map_err(|e| format!("submit job 1: {}", errno_name(e)))?;
        let second = accel::submit(&c.file, &mut req2)
            .map_err(|e| format!("submit job 2: {}", errno_name(e)))?;
        // Whether job 1 was still running once job 2 was queued.
        let observable = match accel::syncobj_wait(&c.file, s1, 0) {
            Err(e) if e == libc::ETIME => true,
            Ok(()) => false,
            Err(e) => return Err(format!("syncobj wait (poll): {}", errno_name(e))),
        };
        accel::syncobj_wait(&c.file, s2, 30_000)
            .map_err(|e| format!("syncobj wait for job 2: {}", errno_name(e)))?;
        // Job 2 is over: job 1 must be over too.
        match accel::syncobj_wait(&c.file, s1, 0) {
            Ok(()) => {}
            Err(e) if e == libc::ETIME => {
                return Err("job 2 ended while job 1, which it waits for, was still running".into())
            }
            Err(e) => return Err(format!("syncobj wait for job 1: {}", errno_name(e))),
        }
        accel::wait_bo(&c.file, dst.handle, 10 * SEC)
            .map_err(|e| format!("wait_bo: {}", errno_name(e)))?;
        for (name, s) in [("job 1", first), ("job 2", second)] {
            let w = accel::wait(&c.file, s, 10 * SEC)
                .map_err(|e| format!("wait {name}: {}", errno_name(e)))?;
            copyjob::ok_outcome(&w).map_err(|e| format!("{name}: {e}"))?;
        }
        let mut m = c.map(&dst)?;
        if let Some(i) = m
            .as_mut_slice()
            .iter()
            .zip(&pattern)
            .position(|(a, b)| a != b)
        {
            return Err(format!(
                "job 2 did not see job 1's data: byte {i} is {:#x}, want {:#x}",
                m.as_mut_slice()[i],
                pattern[i]
            ));
        }
        for s in [s1, s2] {
            let mut d = uapi::drm_core::drm_syncobj_destroy { handle: s, pad: 0 };
            accel::ioctl(&c.file, &mut d).map_err(errno_name)?;
        }
        if observable {
            println!("# job 2 queued while job 1 ({loads} MiB loaded before its copy) ran; attempt {attempt}");
            return Ok(());
        }
        // Job 1 was over before job 2 was queued: make it longer.
        if (loads * 2 + 3) * 64 > uapi::DRM_ONPU_MAX_CMDBUF_SIZE as usize || attempt == 6 {
            return Err(format!("job 1 ({loads} MiB loads) always ended before job 2 was queued: the order is not observable"));
        }
        loads *= 2;
    }
    unreachable!()
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
        queue_id: accel::FIRST_QUEUE,
        cmdbuf_handle: c.cmd.handle,
        cmdbuf_size: size,
        ..Default::default()
    };
    let arr = |stride: usize, count: usize, ptr: *const u8| uapi::drm_onpu_obj_array {
        stride: stride as u32,
        count: count as u32,
        array: ptr as u64,
    };
    const REF: usize = std::mem::size_of::<uapi::drm_onpu_bo_ref>();
    const SYNC: usize = std::mem::size_of::<uapi::drm_onpu_sync>();
    // One bo_ref in a 16-byte element: zero tail (fine), non-zero tail (E2BIG).
    let mut wide_ok = [0u8; 16];
    wide_ok[..4].copy_from_slice(&bo.handle.to_ne_bytes());
    wide_ok[4..8].copy_from_slice(&uapi::DRM_ONPU_BO_READ.to_ne_bytes());
    let mut wide_bad = wide_ok;
    wide_bad[12] = 1;
    let signalled = accel::syncobj_create(&c.file, true).map_err(errno_name)?;
    let sync_with = |flags: u32, point: u64| {
        [uapi::drm_onpu_sync {
            handle: signalled,
            flags,
            point,
        }]
    };
    let unknown_sync_flag = sync_with(2, 0);
    let out_wait_for_submit = sync_with(uapi::DRM_ONPU_SYNC_WAIT_FOR_SUBMIT, 0);
    let no_sync = [accel::sync(0xfff)];
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
    let cases: Vec<(&str, uapi::drm_onpu_submit, i32)> = vec![
        (
            "unknown flag",
            uapi::drm_onpu_submit { flags: 2, ..base },
            libc::EINVAL,
        ),
        (
            "unknown queue",
            uapi::drm_onpu_submit {
                queue_id: 0x77,
                ..base
            },
            libc::ENOENT,
        ),
        (
            "queue 0",
            uapi::drm_onpu_submit {
                queue_id: 0,
                ..base
            },
            libc::ENOENT,
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
                bos: arr(
                    REF,
                    uapi::DRM_ONPU_MAX_JOB_BOS as usize + 1,
                    good_refs.as_ptr().cast(),
                ),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "too many input syncobjs",
            uapi::drm_onpu_submit {
                in_syncs: arr(
                    SYNC,
                    uapi::DRM_ONPU_MAX_IN_SYNCS as usize + 1,
                    no_sync.as_ptr().cast(),
                ),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "too many output syncobjs",
            uapi::drm_onpu_submit {
                out_syncs: arr(
                    SYNC,
                    uapi::DRM_ONPU_MAX_OUT_SYNCS as usize + 1,
                    no_sync.as_ptr().cast(),
                ),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "object stride below the element",
            uapi::drm_onpu_submit {
                bos: arr(REF - 1, 1, good_refs.as_ptr().cast()),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "sync stride below the element",
            uapi::drm_onpu_submit {
                in_syncs: arr(SYNC - 8, 1, unknown_sync_flag.as_ptr().cast()),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "non-zero bytes past a known element",
            uapi::drm_onpu_submit {
                bos: arr(16, 1, wide_bad.as_ptr()),
                ..base
            },
            libc::E2BIG,
        ),
        (
            "unknown sync flag",
            uapi::drm_onpu_submit {
                in_syncs: arr(SYNC, 1, unknown_sync_flag.as_ptr().cast()),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "WAIT_FOR_SUBMIT on an output",
            uapi::drm_onpu_submit {
                out_syncs: arr(SYNC, 1, out_wait_for_submit.as_ptr().cast()),
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
                bos: accel::obj_array(&bad_flags),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "unknown object flag",
            uapi::drm_onpu_submit {
                bos: accel::obj_array(&unknown_flag),
                ..base
            },
            libc::EINVAL,
        ),
        (
            "bad object handle",
            uapi::drm_onpu_submit {
                bos: accel::obj_array(&bad_handle),
                ..base
            },
            libc::ENOENT,
        ),
        (
            "bad objects pointer",
            uapi::drm_onpu_submit {
                bos: arr(REF, 1, 8 as *const u8),
                ..base
            },
            libc::EFAULT,
        ),
        (
            "bad syncobjs pointer",
            uapi::drm_onpu_submit {
                in_syncs: arr(SYNC, 1, 8 as *const u8),
                ..base
            },
            libc::EFAULT,
        ),
        (
            "bad input syncobj",
            uapi::drm_onpu_submit {
                in_syncs: accel::obj_array(&no_sync),
                ..base
            },
            libc::ENOENT,
        ),
        (
            "bad output syncobj",
            uapi::drm_onpu_submit {
                out_syncs: accel::obj_array(&no_sync),
                ..base
            },
            libc::ENOENT,
        ),
    ];
    for (what, mut req, want) in cases {
        expect_errno(accel::submit(&c.file, &mut req), want).map_err(|e| format!("{what}: {e}"))?;
    }
    // And the same request, fixed, goes through.
    // A wider element whose tail is zero, and several output syncobjs,
    // are fine.
    let outs = [accel::sync(signalled), accel::sync(signalled)];
    let mut req = uapi::drm_onpu_submit {
        bos: arr(16, 1, wide_ok.as_ptr()),
        out_syncs: accel::obj_array(&outs),
        ..base
    };
    let seqno = accel::submit(&c.file, &mut req).map_err(errno_name)?;
    copyjob::ok_outcome(&accel::wait(&c.file, seqno, 10 * SEC).map_err(errno_name)?)?;
    let mut req = uapi::drm_onpu_submit {
        bos: accel::obj_array(&good_refs),
        ..base
    };
    let seqno = accel::submit(&c.file, &mut req).map_err(errno_name)?;
    Ok(copyjob::ok_outcome(
        &accel::wait(&c.file, seqno, 10 * SEC).map_err(errno_name)?,
    )?)
}

/// Every documented WAIT and WAIT_BO error.
fn wait_errors(c: &Ctx) -> Result<(), String> {
    let size = c.program(&[Insn::End])?;
    let seqno = accel::submit_simple(&c.file, accel::FIRST_QUEUE, &c.cmd, size, &[], 0)
        .map_err(errno_name)?;
    let mut w = uapi::drm_onpu_wait {
        seqno,
        timeout_abs_ns: accel::deadline_in(SEC).map_err(errno_name)?,
        flags: 1,
        ..Default::default()
    };
    expect_errno(accel::ioctl(&c.file, &mut w), libc::EINVAL).map_err(|e| format!("flags: {e}"))?;
    // No job of this test asked for a profile.
    let mut profile = uapi::drm_onpu_job_profile::default();
    let mut w = uapi::drm_onpu_wait {
        seqno,
        profile_size: std::mem::size_of_val(&profile) as u32,
        profile: std::ptr::from_mut(&mut profile) as u64,
        ..Default::default()
    };
    expect_errno(accel::ioctl(&c.file, &mut w), libc::EINVAL)
        .map_err(|e| format!("profile of an unprofiled job: {e}"))?;
    expect_errno(accel::wait(&c.file, seqno + 1000, SEC), libc::ENOENT)
        .map_err(|e| format!("unknown seqno: {e}"))?;
    copyjob::ok_outcome(&accel::wait(&c.file, seqno, 10 * SEC).map_err(errno_name)?)?;
    expect_errno(accel::wait(&c.file, seqno, SEC), libc::ENOENT)
        .map_err(|e| format!("reaped seqno: {e}"))?;
    let mut wb = uapi::drm_onpu_wait_bo {
        handle: c.cmd.handle,
        flags: 1,
        timeout_abs_ns: 0,
    };
    expect_errno(accel::ioctl(&c.file, &mut wb), libc::EINVAL)
        .map_err(|e| format!("wait_bo flags: {e}"))?;
    expect_errno(accel::wait_bo(&c.file, 0xffff, 0), libc::ENOENT)
        .map_err(|e| format!("wait_bo handle: {e}"))?;
    accel::wait_bo(&c.file, c.cmd.handle, 0).map_err(|e| format!("idle wait_bo: {}", errno_name(e)))
}

/// A job that hangs is failed with ETIMEDOUT, the device is reset, and
/// the next job runs.
fn timeout_then_success(c: &Ctx) -> Result<(), String> {
    let resets = npu_tools::debugfs::counter("resets")?;
    let w = c.run(&[Insn::Mark { tag: HANG_TAG }, Insn::End], &[], 300)?;
    if w.status != uapi::DRM_ONPU_JOB_TIMEDOUT || w.error != -libc::ETIMEDOUT {
        return Err(format!(
            "status {:#x} error {}; want TIMEDOUT / -ETIMEDOUT",
            w.status, w.error
        ));
    }
    let after = npu_tools::debugfs::counter("resets")?;
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
    let args = Args::parse("[--injection-optional]", &["--injection-optional"]);
    args.at_most(0);
    let c = match Ctx::open() {
        Ok(c) => c,
        Err(e) => {
            println!("# cannot open the device: {e}");
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let injecting = accel::fault_injection(&c.file);
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
        "a job waiting on the syncobj of a running job runs after it and sees its data; wait-bo",
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
    const TIMEOUT: &str =
        "a hung job times out with ETIMEDOUT, the NPU is reset, the next job runs";
    match injecting {
        Ok(true) => tap.check(TIMEOUT, timeout_then_success(&c)),
        Ok(false) if args.flag("--injection-optional") => {
            tap.skip(TIMEOUT, "device started without --inject hang:tag=57005")
        }
        Ok(false) => tap.check(
            TIMEOUT,
            Err("the device injects no faults: start it with --inject hang:tag=57005".into()),
        ),
        Err(e) => tap.check(TIMEOUT, Err(e)),
    }
    tap.check(
        "fdinfo has drm-driver, drm-engine-npu, drm-cycles-npu and memory keys",
        fdinfo(&c),
    );
    std::process::exit(tap.finish());
}
