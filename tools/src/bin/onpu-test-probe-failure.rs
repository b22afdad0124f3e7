//! kselftest for a probe that fails after the device was started: the
//! device server is run with `--inject mmu-fault:nth=1`, so the probe-time
//! self-test job (the device's first job) faults and the probe fails after
//! the rings were programmed, the device enabled and the watchdog armed.
//! The driver must stop all of it before the probe returns
//! (Documentation/driver/onpu.rst, "Teardown"): nothing may touch the
//! unbound device or its freed rings afterwards (the run's kernel log is
//! checked for reports), and binding again must give a working device.

use npu::device::raw::{self as accel, Mapping};
use npu_isa::{assemble, Insn};
use npu_tools::kmod;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::path::Path;

/// The open NPU's PCI function (vendor 0x1234, device 0x4e50).
fn npu_function() -> Result<String, String> {
    let dir = std::fs::read_dir("/sys/bus/pci/devices")
        .map_err(|e| format!("/sys/bus/pci/devices: {e}"))?;
    for e in dir.flatten() {
        let id = |f: &str| {
            std::fs::read_to_string(e.path().join(f))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        if id("vendor") == "0x1234" && id("device") == "0x4e50" {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    Err("no open NPU PCI function".into())
}

fn failed_probe_left_nothing_bound() -> Result<(), String> {
    let pci = npu_function()?;
    if Path::new(&format!("/sys/bus/pci/devices/{pci}/driver")).exists() {
        return Err(format!(
            "{pci} is bound: the self-test did not fail (is mmu-fault:nth=1 armed?)"
        ));
    }
    if accel::find_device().is_ok() {
        return Err("an onpu accel node exists after the failed probe".into());
    }
    Ok(())
}

fn rebind_works() -> Result<(), String> {
    let pci = npu_function()?;
    std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci)
        .map_err(|e| format!("bind {pci}: {e}"))?;
    let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
    let cmd = accel::bo_create(&file, 4096).map_err(|e| format!("bo_create: errno {e}"))?;
    let code = assemble(&[Insn::Nop, Insn::End]);
    Mapping::new(&file, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let seqno = accel::submit_simple(&file, accel::FIRST_QUEUE, &cmd, code.len() as u32, &[], 0)
        .map_err(|e| format!("submit: errno {e}"))?;
    let w = accel::wait(&file, seqno, 10_000_000_000).map_err(|e| format!("wait: errno {e}"))?;
    if w.status != uapi::DRM_ONPU_JOB_OK {
        return Err(format!("job status {:#x} after rebinding", w.status));
    }
    Ok(())
}

fn main() {
    let mut tap = Tap::new(2);
    tap.check(
        "a probe whose self-test fails leaves no device bound",
        failed_probe_left_nothing_bound(),
    );
    tap.check(
        "binding again gives a device that runs a job",
        rebind_works(),
    );
    std::process::exit(tap.finish());
}
