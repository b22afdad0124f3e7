//! kselftest for a probe that fails after the device was started: the
//! device server is run with `--inject mmu-fault:nth=1`, so the probe-time
//! self-test job (the device's first job) faults and the probe fails after
//! the rings were programmed, the device enabled and the watchdog armed.
//! The driver must stop all of it before the probe returns
//! (Documentation/driver/onpu.rst, "Teardown"): nothing may touch the
//! unbound device or its freed rings afterwards (the run's kernel log is
//! checked for reports), and binding again must give a working device.
//!
//! Then a probe that fails while the self-test job runs: the run also arms
//! `--inject delay=4000:nth=4` (jobs are counted from 1 since the device
//! process started: 1 is the faulting self-test of the harness's load, 2 the
//! rebind's self-test, 3 the rebind's job, 4 the self-test of the load
//! below), so the next self-test job stays on the device for 4 s. The module
//! is loaded again by a child that is killed while the probe waits for that
//! job (the device reports it BUSY, the child sleeps in the fence wait). The
//! probe must fail and leave the device quiet: nothing bound, bus mastering
//! off in the PCI command register, ENABLE clear, every interrupt masked,
//! and no job running (STATUS); then a bind gives a working device again.

use npu::device::raw::{self as accel, Mapping};
use npu_isa::{assemble, Insn};
use npu_tools::child;
use npu_tools::kmod;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::path::Path;
use std::time::{Duration, Instant};

/// BAR0 registers (Documentation/hw/npu-hw.rst, "Register map").
const CONTROL: usize = 0x20;
const STATUS: usize = 0x24;
const IRQ_MASK: usize = 0x34;
const CONTROL_ENABLE: u32 = 1 << 0;
const STATUS_ENABLED: u32 = 1 << 0;
const STATUS_BUSY: u32 = 1 << 2;
/// PCI configuration space: the command register and its Bus Master
/// Enable bit (PCI Local Bus Specification, 6.2.2).
const PCI_COMMAND: usize = 0x04;
const PCI_COMMAND_MASTER: u16 = 1 << 2;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;

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

/// BAR0 of the PCI function, mapped through sysfs (read only).
struct Bar {
    map: memmap2::Mmap,
}

impl Bar {
    fn map(pci: &str) -> Result<Bar, String> {
        let path = format!("/sys/bus/pci/devices/{pci}/resource0");
        let file = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        // SAFETY: the device's register BAR; only read below, 32 bits at a
        // time through volatile reads.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("mmap {path}: {e}"))?;
        if map.len() < 0x100 {
            return Err(format!("{path} is {} bytes, too small", map.len()));
        }
        Ok(Bar { map })
    }

    fn read(&self, reg: usize) -> u32 {
        assert!(reg % 4 == 0 && reg + 4 <= self.map.len());
        // SAFETY: an aligned register inside the mapping.
        unsafe { std::ptr::read_volatile(self.map.as_ptr().add(reg).cast::<u32>()) }
    }
}

/// The PCI command register, from sysfs.
fn pci_command(pci: &str) -> Result<u16, String> {
    let path = format!("/sys/bus/pci/devices/{pci}/config");
    let cfg = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    let bytes = cfg
        .get(PCI_COMMAND..PCI_COMMAND + 2)
        .ok_or(format!("{path} is too short"))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// Where the task sleeps (/proc/PID/wchan), "" when it runs.
fn wchan(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

fn killed_load_while_self_test_runs() -> Result<(), String> {
    let pci = npu_function()?;
    kmod::unload(false).map_err(|e| format!("delete_module: errno {e}"))?;
    let bar = Bar::map(&pci)?;
    let log_mark = kmod::kernel_log_end()?;
    let loader = child::spawn(|| match kmod::load() {
        Ok(()) => 0,
        Err(_) => 1,
    })?;
    // The self-test job is on the device (BUSY) and the probe waits for its
    // fence: an event, polled (bounded by the probe's own 5 s wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen_busy = false;
    loop {
        seen_busy |= bar.read(STATUS) & STATUS_BUSY != 0;
        if seen_busy && wchan(loader.pid()).contains("dma_fence") {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the self-test job never ran with the probe waiting for it (BUSY seen: {seen_busy}, \
                 loader in {:?}): is delay=4000:nth=4 armed?",
                wchan(loader.pid())
            ));
        }
        std::thread::yield_now();
    }
    loader.kill()?;
    let exit = loader.wait()?;
    if exit != child::Exit::Signal(nix::sys::signal::Signal::SIGKILL) {
        return Err(format!("the killed loader ended with {exit}"));
    }
    // The probe has returned: the loader only dies once finit_module does.
    let lines = kmod::kernel_log_since(log_mark, "self-test interrupted")?;
    if lines.is_empty() {
        return Err(
            "no \"self-test interrupted\" in the kernel log: the probe did not see the signal"
                .into(),
        );
    }
    if Path::new(&format!("/sys/bus/pci/devices/{pci}/driver")).exists() {
        return Err(format!("{pci} is bound after the interrupted probe"));
    }
    let command = pci_command(&pci)?;
    if command & PCI_COMMAND_MASTER != 0 {
        return Err(format!(
            "bus mastering is still on after the failed probe (PCI command {command:#06x})"
        ));
    }
    if command & PCI_COMMAND_MEMORY == 0 {
        return Err(format!(
            "memory decoding is off (PCI command {command:#06x}): the registers cannot be read"
        ));
    }
    let (control, status, mask) = (bar.read(CONTROL), bar.read(STATUS), bar.read(IRQ_MASK));
    if control & CONTROL_ENABLE != 0 || status & (STATUS_ENABLED | STATUS_BUSY) != 0 || mask != 0 {
        return Err(format!(
            "the device is not quiet after the failed probe: CONTROL {control:#x}, STATUS \
             {status:#x}, IRQ_MASK {mask:#x}"
        ));
    }
    // A working device again, from this state: the module stayed loaded
    // (a probe failure does not fail the module's init), else load it.
    if Path::new("/sys/module/onpu").exists() {
        rebind_works()
    } else {
        kmod::load()?;
        kmod::wait_for_device().map(|_| ())
    }
}

fn main() {
    let mut tap = Tap::new(3);
    tap.check(
        "a probe whose self-test fails leaves no device bound",
        failed_probe_left_nothing_bound(),
    );
    tap.check(
        "binding again gives a device that runs a job",
        rebind_works(),
    );
    tap.check(
        "a probe failing while its self-test job runs (loader killed) leaves the device quiet; \
         binding again works",
        killed_load_while_self_test_runs(),
    );
    std::process::exit(tap.finish());
}
