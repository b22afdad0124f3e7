//! kselftest for the rules the onpu driver keeps about fences, address
//! spaces and resets (Documentation/driver/onpu.rst, "Signalling rules",
//! "Address-space lifetime", "Timeouts, faults and reset"). TAP output; run
//! in the guest with the driver loaded.
//!
//! Each test follows from the hardware spec (Documentation/hw/npu-hw.rst)
//! and the uAPI, not from the driver's code: the MMU caches translations for
//! a whole job, so an address must not be handed to another object while a
//! job queued before the unmap may still use it; WAIT_BO waits for every job
//! that uses an object, and a job reads its command buffer; a soft reset
//! aborts the running job, which must not silently run a second time; the
//! device ends jobs in ring order, so a record out of order is a device
//! error the driver resets for.
//!
//! The device server must be started with `--inject hang:tag=57005` (a job
//! that executes MARK 0xdead hangs until the watchdog resets the device);
//! the out-of-order test also needs `--inject corrupt-completion:tag=4660`
//! (runs.list: rules-basic, rules-debug). Without them the tests are
//! skipped, which counts as a failure of the run.

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Fault, Insn, Strided};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;

const SEC: i64 = 1_000_000_000;
/// MARK tag on which the device hangs (runs.list: hang:tag=57005).
const HANG_TAG: u32 = 0xdead;
/// MARK tag on which the device writes a garbled record
/// (runs.list: corrupt-completion:tag=4660).
const CORRUPT_TAG: u32 = 0x1234;
const CAPS_FAULT_INJECTION: u64 = 1 << 31;
/// ISA 1.0 fault code the driver gives jobs a reset cut short.
const ABORTED: u32 = 11;

fn errno_name(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

struct Dev {
    file: File,
}

impl Dev {
    fn open() -> Result<Dev, String> {
        let path = accel::find_device().map_err(|e| e.to_string())?;
        Ok(Dev {
            file: accel::open_with_queue(&path).map_err(|e| e.to_string())?,
        })
    }

    fn bo(&self, size: u64) -> Result<(Bo, u64), String> {
        let bo = accel::bo_create(&self.file, size)
            .map_err(|e| format!("bo_create: {}", errno_name(e)))?;
        let va = accel::bo_npu_addr(&self.file, bo.handle)
            .map_err(|e| format!("bo_info: {}", errno_name(e)))?;
        Ok((bo, va))
    }

    /// A command buffer holding `insns`; its size in bytes.
    fn program(&self, insns: &[Insn]) -> Result<(Bo, u32), String> {
        let code = assemble(insns);
        let (bo, _) = self.bo(code.len().max(4096) as u64)?;
        Mapping::new(&self.file, &bo)
            .map_err(|e| e.to_string())?
            .as_mut_slice()[..code.len()]
            .copy_from_slice(&code);
        Ok((bo, code.len() as u32))
    }

    fn submit(&self, cmd: &(Bo, u32), bos: &[(u32, u32)], timeout_ms: u32) -> Result<u64, String> {
        let refs: Vec<_> = bos
            .iter()
            .map(|&(handle, flags)| uapi::drm_onpu_bo_ref { handle, flags })
            .collect();
        accel::submit_simple(
            &self.file,
            accel::FIRST_QUEUE,
            &cmd.0,
            cmd.1,
            &refs,
            timeout_ms,
        )
        .map_err(|e| format!("submit: {}", errno_name(e)))
    }

    fn wait(&self, seqno: u64) -> Result<uapi::drm_onpu_wait, String> {
        accel::wait(&self.file, seqno, 30 * SEC)
            .map_err(|e| format!("wait for job {seqno}: {}", errno_name(e)))
    }

    fn param(&self, param: u32) -> Result<u64, String> {
        accel::get_param(&self.file, param)
            .map_err(|e| format!("get_param {param}: {}", errno_name(e)))
    }
}

/// A job that hangs (the device never ends it) until the watchdog resets
/// the device after `timeout_ms`.
fn hang_job(d: &Dev) -> Result<(Bo, u32), String> {
    d.program(&[Insn::Mark { tag: HANG_TAG }, Insn::End])
}

/// A job that writes `pattern` over every page of `len` bytes at `va`, one
/// page per instruction.
fn fill_pages_job(d: &Dev, va: u64, len: u64, pattern: u32) -> Result<(Bo, u32), String> {
    let page = Strided::contiguous(4096);
    let mut insns = vec![Insn::Fill {
        dst: 0,
        len: 4096,
        pattern,
    }];
    for off in (0..len).step_by(4096) {
        insns.push(Insn::DmaStore {
            va: va + off,
            sram: 0,
            mem: page,
            sram_layout: page,
        });
    }
    insns.push(Insn::End);
    d.program(&insns)
}

/// 1. Closing the last handle of an object that a queued job reaches
///    through its address (without listing it) must not let that job reach
///    its pages, nor that address another object, before the job has
///    ended. Pages are mapped on first use, so a first job lists the object
///    (mapping it into the file's context) and a second one, not listing
///    it, writes it through its address: that is the access the queued job
///    relies on. Then a job is queued behind a hung one to write over the
///    object again; the object is closed and a new one of the same size
///    created and filled before the hung job times out and the queued one
///    runs. Documentation/driver/onpu.rst ("Address-space lifetime"): the
///    close clears the entries at once, so the queued job, which starts
///    after it, faults MMU_UNMAPPED at the first address it writes; the
///    range stays allocated until it has ended, so the new object got
///    another one, and is untouched.
fn unmap_waits_for_queued_jobs(d: &Dev) -> Result<(), String> {
    const LEN: u64 = 64 * 1024;
    let (victim, victim_va) = d.bo(LEN)?;
    let writer = fill_pages_job(d, victim_va, LEN, 0xa5a5_a5a5)?;
    let mapper = d.submit(&writer, &[(victim.handle, uapi::DRM_ONPU_BO_WRITE)], 0)?;
    let w = d.wait(mapper)?;
    if w.status != uapi::DRM_ONPU_JOB_OK {
        return Err(format!(
            "the job listing the object ended with status {:#x}",
            w.status
        ));
    }
    let unlisted = d.submit(&writer, &[], 0)?;
    let w = d.wait(unlisted)?;
    if w.status != uapi::DRM_ONPU_JOB_OK {
        return Err(format!(
            "a job writing the mapped object without listing it ended with status {:#x} at {:#x}",
            w.status, w.fault_addr
        ));
    }
    let hang = hang_job(d)?;
    // Long enough that the close below surely comes before the queued job.
    let hung = d.submit(&hang, &[], 3000)?;
    let queued = d.submit(&writer, &[], 0)?;
    accel::gem_close(&d.file, victim.handle).map_err(|e| format!("close: {}", errno_name(e)))?;
    let (fresh, fresh_va) = d.bo(LEN)?;
    Mapping::new(&d.file, &fresh)
        .map_err(|e| e.to_string())?
        .as_mut_slice()
        .fill(0x5a);
    let h = d.wait(hung)?;
    if h.status != uapi::DRM_ONPU_JOB_TIMEDOUT {
        return Err(format!(
            "the hung job ended with status {:#x}, want TIMEDOUT: is hang:tag=57005 armed?",
            h.status
        ));
    }
    let w = d.wait(queued)?;
    let mut m = Mapping::new(&d.file, &fresh).map_err(|e| e.to_string())?;
    if let Some(i) = m.as_mut_slice().iter().position(|&b| b != 0x5a) {
        return Err(format!(
            "a job queued before the close wrote into a new object: byte {i} is {:#x} \
             (closed object at {victim_va:#x}, new one at {fresh_va:#x}; job status {:#x})",
            m.as_mut_slice()[i],
            w.status
        ));
    }
    // The closed range and its guard page were still allocated.
    if fresh_va < victim_va + LEN + 4096 && victim_va < fresh_va + LEN {
        return Err(format!(
            "the new object got {fresh_va:#x}, inside the closed object's range at {victim_va:#x} \
             while a job queued before the close had not ended"
        ));
    }
    if w.status != Fault::MmuUnmapped as u32 || w.fault_addr != victim_va {
        return Err(format!(
            "the queued job ended with status {:#x} at {:#x}, want MMU_UNMAPPED at the closed \
             object's first page {victim_va:#x} (its entries are cleared at the close)",
            w.status, w.fault_addr
        ));
    }
    Ok(())
}

/// 4. The device reads a job's command buffer: WAIT_BO on it returns only
///    once the job has ended.
fn wait_bo_on_command_buffer(d: &Dev) -> Result<(), String> {
    let hang = hang_job(d)?;
    let seqno = d.submit(&hang, &[], 2000)?;
    match accel::wait_bo(&d.file, hang.0.handle, 0) {
        Err(e) if e == libc::ETIMEDOUT => {}
        Err(e) => return Err(format!("wait_bo(timeout 0): {}", errno_name(e))),
        Ok(()) => {
            // Idle is right only if the job has ended by now.
            if let Err(e) = accel::wait(&d.file, seqno, 0) {
                return Err(format!(
                    "wait_bo says the command buffer is idle while its job runs (wait: {})",
                    errno_name(e)
                ));
            }
            return Err("the hung job ended before its 2 s timeout".into());
        }
    }
    accel::wait_bo(&d.file, hang.0.handle, 30 * SEC)
        .map_err(|e| format!("wait_bo: {}", errno_name(e)))?;
    // Once WAIT_BO said idle, the job has ended: WAIT must not block.
    let w = accel::wait(&d.file, seqno, 0).map_err(|e| {
        format!(
            "wait_bo returned before the job ended (wait: {})",
            errno_name(e)
        )
    })?;
    if w.status != uapi::DRM_ONPU_JOB_TIMEDOUT {
        return Err(format!(
            "the hung job ended with status {:#x}, want TIMEDOUT",
            w.status
        ));
    }
    Ok(())
}

fn debugfs_reset_file() -> Result<std::path::PathBuf, String> {
    Ok(npu_tools::debugfs::dir()?.join("reset"))
}

/// 8. A reset requested through debugfs aborts the running job (a soft
///    reset cuts it short): it ends ABORTED, and is not run a second time
///    (it would hang again and time out); the job queued behind it runs.
fn debugfs_reset_aborts_running_job(d: &Dev) -> Result<(), String> {
    let reset = debugfs_reset_file()?;
    let (out, out_va) = d.bo(4096)?;
    let hang = hang_job(d)?;
    let next = fill_pages_job(d, out_va, 4096, 0x0102_0304)?;
    let hung = d.submit(&hang, &[], 5000)?;
    let queued = d.submit(&next, &[(out.handle, uapi::DRM_ONPU_BO_WRITE)], 0)?;
    std::fs::write(&reset, "1").map_err(|e| format!("write {}: {e}", reset.display()))?;
    let h = d.wait(hung)?;
    if h.status != ABORTED || h.error != -libc::EIO {
        return Err(format!(
            "the running job ended with status {:#x} error {}, want ABORTED (11) and -EIO",
            h.status, h.error
        ));
    }
    let w = d.wait(queued)?;
    if w.status != uapi::DRM_ONPU_JOB_OK {
        return Err(format!(
            "the job queued behind it ended with status {:#x}, want OK",
            w.status
        ));
    }
    let mut m = Mapping::new(&d.file, &out).map_err(|e| e.to_string())?;
    if m.as_mut_slice()[..4] != [4, 3, 2, 1] {
        return Err("the job queued behind the aborted one did not write its output".into());
    }
    Ok(())
}

/// 6. A completion record naming a later job than the oldest in flight is
///    a device error: the driver resets the device before it fails the
///    job whose record is missing. The device garbles the first job's
///    record (corrupt-completion), so the second job's record arrives out
///    of order.
fn out_of_order_record_resets(d: &Dev) -> Result<(), String> {
    let before = npu_tools::debugfs::counter("resets")?;
    let garbled = d.program(&[Insn::Mark { tag: CORRUPT_TAG }, Insn::End])?;
    let fine = d.program(&[Insn::End])?;
    let first = d.submit(&garbled, &[], 0)?;
    let second = d.submit(&fine, &[], 0)?;
    let w2 = d.wait(second)?;
    let w1 = d.wait(first)?;
    if w2.status != uapi::DRM_ONPU_JOB_OK {
        return Err(format!(
            "the job with a good record ended with status {:#x}",
            w2.status
        ));
    }
    if w1.status != ABORTED || w1.error != -libc::EIO {
        return Err(format!(
            "the job with the garbled record ended with status {:#x} error {}, want ABORTED and -EIO",
            w1.status, w1.error
        ));
    }
    let after = npu_tools::debugfs::counter("resets")?;
    if after <= before {
        return Err(format!(
            "no reset for the out-of-order record (resets {before} -> {after})"
        ));
    }
    Ok(())
}

/// 3. A job submitted just as the queue went idle (the watchdog may be
///    deciding that nothing is queued) must still be timed out: the fence
///    of a hung job always signals.
fn watchdog_never_lost(d: &Dev) -> Result<(), String> {
    let quick = d.program(&[Insn::End])?;
    let hang = hang_job(d)?;
    for round in 0..20 {
        let q = d.submit(&quick, &[], 0)?;
        d.wait(q)?;
        let h = d.submit(&hang, &[], 100)?;
        let w = accel::wait(&d.file, h, 20 * SEC).map_err(|e| {
            format!(
                "round {round}: the hung job never ended ({})",
                errno_name(e)
            )
        })?;
        if w.status != uapi::DRM_ONPU_JOB_TIMEDOUT {
            return Err(format!(
                "round {round}: status {:#x}, want TIMEDOUT",
                w.status
            ));
        }
    }
    Ok(())
}

type Test = fn(&Dev) -> Result<(), String>;

fn main() {
    let mut tap = Tap::new(5);
    let d = match Dev::open() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("onpu-test-rules: {e}");
            std::process::exit(1);
        }
    };
    let injecting = d
        .param(uapi::DRM_ONPU_PARAM_CAPS)
        .map(|c| c & CAPS_FAULT_INJECTION != 0)
        .unwrap_or(false);
    let tests: [(&str, Test); 5] = [
        (
            "a mapped object closed under a queued job: the job faults there, the address is not reused before it ends",
            unmap_waits_for_queued_jobs,
        ),
        (
            "wait-bo on a command buffer waits for its job",
            wait_bo_on_command_buffer,
        ),
        (
            "a debugfs reset aborts the running job and runs the next",
            debugfs_reset_aborts_running_job,
        ),
        (
            "an out-of-order completion record resets the NPU before failing",
            out_of_order_record_resets,
        ),
        (
            "a hung job submitted as the queue idles is timed out (x20)",
            watchdog_never_lost,
        ),
    ];
    for (name, test) in tests {
        if injecting {
            tap.check(name, test(&d));
        } else {
            tap.skip(name, "device started without --inject hang:tag=57005 --inject corrupt-completion:tag=4660");
        }
    }
    std::process::exit(tap.finish());
}
