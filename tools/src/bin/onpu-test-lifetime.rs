//! kselftest for the driver's lifetimes: module unload with a file open,
//! unbind with a job in flight and a file open, rebind and reload; the
//! device works after each. TAP output; run in the guest with onpu.ko
//! loaded from /lib/modules/onpu.ko, which it leaves loaded.

use npu_isa::{assemble, Insn};
use npu_tools::tap::Tap;
use npu_tools::{accel, kmod};
use npu_uapi as uapi;
use std::fs::File;

const HANG_TAG: u32 = 0xdead;
const CAPS_FAULT_INJECTION: u64 = 1 << 31;

/// Run one END job on a fresh file.
fn smoke() -> Result<(), String> {
    let file = accel::open(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
    run_on(&file, &[Insn::End], 0).and_then(|w| {
        if w.status == 0 {
            Ok(())
        } else {
            Err(format!("status {:#x}", w.status))
        }
    })
}

fn run_on(file: &File, insns: &[Insn], timeout_ms: u32) -> Result<uapi::drm_onpu_wait, String> {
    let seqno = submit(file, insns, timeout_ms)?;
    accel::wait(file, seqno, 10_000_000_000).map_err(|e| format!("wait: errno {e}"))
}

fn submit(file: &File, insns: &[Insn], timeout_ms: u32) -> Result<u64, String> {
    let cmd = accel::bo_create(file, 4096).map_err(|e| format!("bo: errno {e}"))?;
    let code = assemble(insns);
    accel::Mapping::new(file, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    accel::submit_simple(file, &cmd, code.len() as u32, &[], timeout_ms)
        .map_err(|e| format!("submit: errno {e}"))
}

fn unload_with_open_file() -> Result<(), String> {
    let file = accel::open(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
    match kmod::unload(true) {
        Err(e) if e == libc::EWOULDBLOCK || e == libc::EBUSY => {}
        Err(e) => {
            return Err(format!(
                "rmmod with an open file: errno {e}, want EWOULDBLOCK/EBUSY"
            ))
        }
        Ok(()) => return Err("the module unloaded while a file was open".into()),
    }
    let w = run_on(&file, &[Insn::End], 0)?;
    if w.status != 0 {
        return Err(format!("job after refused unload: status {:#x}", w.status));
    }
    drop(file);
    kmod::unload(false).map_err(|e| format!("rmmod after close: errno {e}"))?;
    if accel::find_device().is_ok() {
        return Err("accel node still present after unload".into());
    }
    kmod::load()?;
    smoke()
}

fn unbind_with_job_in_flight() -> Result<(), String> {
    let pci = kmod::pci_name()?;
    let file = accel::open(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
    // A job that never ends by itself (the device hangs on this tag).
    let seqno = submit(&file, &[Insn::Mark { tag: HANG_TAG }, Insn::End], 5000)?;
    std::fs::write("/sys/bus/pci/drivers/onpu/unbind", &pci).map_err(|e| format!("unbind: {e}"))?;
    let w = accel::wait(&file, seqno, 1_000_000_000)
        .map_err(|e| format!("wait after unbind: errno {e}"))?;
    if w.status != uapi::DRM_ONPU_JOB_CANCELED || w.error != -libc::ECANCELED {
        return Err(format!(
            "in-flight job after unbind: status {:#x} error {}, want CANCELED",
            w.status, w.error
        ));
    }
    match submit(&file, &[Insn::End], 0) {
        Err(e) if e.contains(&format!("errno {}", libc::ENODEV)) => {}
        other => return Err(format!("submit after unbind: {other:?}, want ENODEV")),
    }
    drop(file);
    std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci).map_err(|e| format!("bind: {e}"))?;
    smoke()
}

fn main() {
    let mut tap = Tap::new(2);
    let injecting = kmod::wait_for_device()
        .and_then(|p| accel::open(&p).map_err(|e| e.to_string()))
        .map(|f| {
            accel::get_param(&f, uapi::DRM_ONPU_PARAM_CAPS)
                .map(|c| c & CAPS_FAULT_INJECTION != 0)
                .unwrap_or(false)
        })
        .unwrap_or(false);
    tap.check(
        "rmmod is refused while a file is open; unload and reload after close",
        unload_with_open_file(),
    );
    if injecting {
        tap.check(
            "unbind cancels an in-flight job, submit gets ENODEV, rebind works",
            unbind_with_job_in_flight(),
        );
    } else {
        tap.skip(
            "unbind cancels an in-flight job, submit gets ENODEV, rebind works",
            "needs --inject hang:tag=57005",
        );
    }
    std::process::exit(tap.finish());
}
