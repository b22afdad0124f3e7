//! kselftest for the driver's lifetimes: module unload with a file open,
//! unbind with a job in flight and a file open, rebind and reload; the
//! device works after each. TAP output; run in the guest with onpu.ko
//! loaded from /lib/modules/onpu.ko, which it leaves loaded.
//!
//! The unbind test needs the device started with `--inject hang:tag=57005`
//! (tools/selftests/runs.list does it); without it, that test fails, or is
//! skipped if the command line says `--injection-optional`.
//!
//!   onpu-test-lifetime [--injection-optional]

use npu::device::raw as accel;
use npu_isa::{assemble, Insn};
use npu_tools::args::Args;
use npu_tools::kmod;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;

const HANG_TAG: u32 = 0xdead;

/// Run one END job on a fresh file.
fn smoke() -> Result<(), String> {
    let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
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
    accel::submit_simple(
        file,
        accel::FIRST_QUEUE,
        &cmd,
        code.len() as u32,
        &[],
        timeout_ms,
    )
    .map_err(|e| format!("submit: errno {e}"))
}

fn unload_with_open_file() -> Result<(), String> {
    let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
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
    let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
    // A job that never ends by itself (the device hangs on this tag).
    let seqno = submit(&file, &[Insn::Mark { tag: HANG_TAG }, Insn::End], 5000)?;
    // An END job ready to submit once the device is gone.
    let cmd = accel::bo_create(&file, 4096).map_err(|e| format!("bo: errno {e}"))?;
    let end = assemble(&[Insn::End]);
    accel::Mapping::new(&file, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..end.len()]
        .copy_from_slice(&end);
    std::fs::write("/sys/bus/pci/drivers/onpu/unbind", &pci).map_err(|e| format!("unbind: {e}"))?;
    let w = accel::wait(&file, seqno, 1_000_000_000)
        .map_err(|e| format!("wait after unbind: errno {e}"))?;
    if w.status != uapi::DRM_ONPU_JOB_CANCELED || w.error != -libc::ECANCELED {
        return Err(format!(
            "in-flight job after unbind: status {:#x} error {}, want CANCELED",
            w.status, w.error
        ));
    }
    match accel::submit_simple(&file, accel::FIRST_QUEUE, &cmd, end.len() as u32, &[], 0) {
        Err(e) if e == libc::ENODEV => {}
        Err(e) => {
            return Err(format!(
                "submit after unbind: errno {e}, want ENODEV ({})",
                libc::ENODEV
            ))
        }
        Ok(seqno) => {
            return Err(format!(
                "submit after unbind: queued as {seqno}, want ENODEV"
            ))
        }
    }
    drop(file);
    std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci).map_err(|e| format!("bind: {e}"))?;
    smoke()
}

fn main() {
    let args = Args::parse("[--injection-optional]", &["--injection-optional"]);
    args.at_most(0);
    let mut tap = Tap::new(2);
    let injecting = kmod::wait_for_device()
        .and_then(|p| accel::open_with_queue(&p).map_err(|e| e.to_string()))
        .and_then(|f| accel::fault_injection(&f));
    tap.check(
        "rmmod is refused while a file is open; unload and reload after close",
        unload_with_open_file(),
    );
    const UNBIND: &str = "unbind cancels an in-flight job, submit gets ENODEV, rebind works";
    match injecting {
        Ok(true) => tap.check(UNBIND, unbind_with_job_in_flight()),
        Ok(false) if args.flag("--injection-optional") => {
            tap.skip(UNBIND, "needs --inject hang:tag=57005")
        }
        Ok(false) => tap.check(
            UNBIND,
            Err("the device injects no faults: start it with --inject hang:tag=57005".into()),
        ),
        Err(e) => tap.check(UNBIND, Err(e)),
    }
    std::process::exit(tap.finish());
}
