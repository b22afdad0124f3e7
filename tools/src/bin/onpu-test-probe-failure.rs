//! kselftest for a probe that fails after the device was started: the
//! device server is run with `--inject mmu-fault:nth=1`, so the probe-time
//! self-test job (the device's first job) faults and the probe fails after
//! the rings were programmed, the device enabled and the watchdog armed.
//! The driver must stop all of it before the probe returns
//! (Documentation/driver/onpu.rst, "Teardown"): nothing may touch the
//! unbound device or its freed rings afterwards (the run's kernel log is
//! checked for reports), the PCI function must be disabled again (its
//! enable count in sysfs back to 0), and binding again must give a working
//! device. Binding enables the function once and unbinding disables it:
//! the count never stacks up over binds.
//!
//! Then a probe that fails while the self-test job runs: the run also arms
//! `--inject delay=4000:nth=4` (jobs are counted from 1 since the device
//! process started: 1 is the faulting self-test of the harness's load, 2 the
//! rebind's self-test, 3 the rebind's job, 4 the self-test of the load
//! below), so the next self-test job stays on the device for 4 s. The module
//! is loaded again by a child that is killed while the probe waits for that
//! job (the device reports it BUSY, the child sleeps in the fence wait). The
//! probe must fail and leave the device quiet: nothing bound, the function
//! disabled (enable count 0), bus mastering off in the PCI command
//! register, ENABLE clear, every interrupt masked, and no job running
//! (STATUS); then a bind gives a working device again. (Memory decoding is
//! no witness of the disable: pci_disable_device() leaves the command
//! register's memory bit as it is, and the registers stay readable.)
//!
//! With `--fail-nth` (the debug kernel: CONFIG_FAILSLAB,
//! CONFIG_FAIL_PAGE_ALLOC, CONFIG_FAULT_INJECTION_DEBUG_FS; the device
//! server run with `--inject delay=200` after the rules above, delaying
//! every other job 200 ms), the device is unbound and bound again, by a child,
//! with the 1st, 2nd, 3rd ... memory allocation after the self-test job's
//! submission failing (the kernel's systematic mode, /proc/PID/fail-nth,
//! set for the child while the job runs and the probe waits for it), one
//! per bind, until a bind makes fewer: every probe step after the
//! self-test (the DRM device, its registration, debugfs) fails once. Each
//! failed bind must leave the device as quiet as above, at least one must
//! fail, and the last bind gives a device that runs a job. The harness then
//! scans kmemleak and the log for KASAN, lockdep and DMA-API reports. (A
//! sweep over every allocation of the bind is not clean: an interrupt's
//! /proc entries that fail to be made are removed at unbind all the same,
//! and genirq's remove_proc_entry() warns.) The sweep found a DRM core
//! bug, a KASAN null-pointer report when the accel minor's device cannot
//! be allocated (drm_minor_alloc() kept the ERR_PTR in minor->kdev, and
//! drm_minor_alloc_release() put_device()d it): kernel patch 0033.
//!
//!   onpu-test-probe-failure [--fail-nth]

use npu::device::raw::{self as accel, Mapping};
use npu_isa::{assemble, Insn};
use npu_tools::child;
use npu_tools::faultinject::FaultKnobs;
use npu_tools::kmod;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
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
    disabled(&pci, "the failed probe")
}

/// How many enables of the PCI function the PCI core counts
/// (/sys/bus/pci/devices/*/enable: pci_enable_device_mem() adds one,
/// pci_disable_device() takes one away; at 0 the function is disabled).
fn enable_count(pci: &str) -> Result<u32, String> {
    let path = format!("/sys/bus/pci/devices/{pci}/enable");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    s.trim().parse().map_err(|e| format!("{path}: {s:?}: {e}"))
}

/// The driver left the function disabled: its enable count is 0.
fn disabled(pci: &str, after: &str) -> Result<(), String> {
    match enable_count(pci)? {
        0 => Ok(()),
        n => Err(format!(
            "the PCI function is still enabled after {after} (enable count {n}): the driver \
             never disabled it"
        )),
    }
}

/// Bound, the function is enabled once; unbound, not at all: twice over,
/// so that enables left behind would stack up. Ends bound, with a job run.
fn enable_follows_binding() -> Result<(), String> {
    let pci = npu_function()?;
    for round in 1..=2 {
        match enable_count(&pci)? {
            1 => {}
            n => {
                return Err(format!(
                    "enable count {n} while bound (round {round}), want 1"
                ))
            }
        }
        unbind(&pci)?;
        disabled(&pci, &format!("unbind {round}"))?;
        std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci)
            .map_err(|e| format!("bind {pci}: {e}"))?;
    }
    match enable_count(&pci)? {
        1 => job_runs(),
        n => Err(format!("enable count {n} after two rebinds, want 1")),
    }
}

fn rebind_works() -> Result<(), String> {
    let pci = npu_function()?;
    std::fs::write("/sys/bus/pci/drivers/onpu/bind", &pci)
        .map_err(|e| format!("bind {pci}: {e}"))?;
    job_runs()
}

/// The bound device runs a job to completion.
fn job_runs() -> Result<(), String> {
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

/// The task's state letter (/proc/PID/stat): `S` while it sleeps
/// interruptibly. The probe sleeps so only in the self-test's fence wait
/// (register polls, locks and thread creation sleep uninterruptibly).
fn task_state(pid: i32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            rest.trim_start().chars().next()
        })
        .unwrap_or('?')
}

/// Where the task sleeps (/proc/PID/wchan, with CONFIG_KALLSYMS), for
/// messages.
fn wchan(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_else(|_| "?".into())
}

/// The unbound device is quiet: no driver, bus mastering off, ENABLE
/// clear, every interrupt masked, no job running.
fn quiet(pci: &str, bar: &Bar, after: &str) -> Result<(), String> {
    if Path::new(&format!("/sys/bus/pci/devices/{pci}/driver")).exists() {
        return Err(format!("{pci} is bound after {after}"));
    }
    disabled(pci, after)?;
    let command = pci_command(pci)?;
    if command & PCI_COMMAND_MASTER != 0 {
        return Err(format!(
            "bus mastering is still on after {after} (PCI command {command:#06x})"
        ));
    }
    if command & PCI_COMMAND_MEMORY == 0 {
        return Err(format!(
            "memory decoding is off after {after} (PCI command {command:#06x}): the registers \
             cannot be read"
        ));
    }
    let (control, status, mask) = (bar.read(CONTROL), bar.read(STATUS), bar.read(IRQ_MASK));
    if control & CONTROL_ENABLE != 0 || status & (STATUS_ENABLED | STATUS_BUSY) != 0 || mask != 0 {
        return Err(format!(
            "the device is not quiet after {after}: CONTROL {control:#x}, STATUS {status:#x}, \
             IRQ_MASK {mask:#x}"
        ));
    }
    Ok(())
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
    // The self-test job is on the device (BUSY: the delay holds it there)
    // and the probe waits for its fence: an event, polled (bounded by the
    // probe's own 5 s wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen_busy = false;
    loop {
        let busy = bar.read(STATUS) & STATUS_BUSY != 0;
        seen_busy |= busy;
        if busy && task_state(loader.pid()) == 'S' {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the self-test job never ran with the probe waiting for it (BUSY seen: \
                 {seen_busy}, loader state {} in {:?}): is delay=4000:nth=4 armed?",
                task_state(loader.pid()),
                wchan(loader.pid())
            ));
        }
        std::thread::yield_now();
    }
    println!(
        "# the loader waits in {:?} while the self-test job runs",
        wchan(loader.pid())
    );
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
    quiet(&pci, &bar, "the interrupted probe")?;
    // A working device again, from this state: the module stayed loaded
    // (a probe failure does not fail the module's init), else load it.
    if Path::new("/sys/module/onpu").exists() {
        rebind_works()
    } else {
        kmod::load()?;
        kmod::wait_for_device().map(|_| ())
    }
}

/// How a binding child's bind went (its exit code).
const BOUND: i32 = 0;
const BOUND_AFTER_FAILURE: i32 = 1;
const REFUSED: i32 = 2;
const REFUSED_UNINJECTED: i32 = 3;

/// The child: write the PCI function to the driver's bind file; report
/// whether the bind succeeded and whether the failure armed in its
/// fail-nth (by the parent, while the self-test job ran) happened. Both
/// files are opened before, so no allocation of the child's own counts
/// after the bind.
fn bind_child(pci: &str) -> i32 {
    let (Ok(bind), Ok(fail_nth)) = (
        OpenOptions::new()
            .write(true)
            .open("/sys/bus/pci/drivers/onpu/bind"),
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth"),
    ) else {
        return 4;
    };
    let bound = bind.write_at(pci.as_bytes(), 0).is_ok();
    let mut buf = [0u8; 16];
    let left = fail_nth.read_at(&mut buf, 0).ok().and_then(|n| {
        std::str::from_utf8(&buf[..n])
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    });
    let _ = fail_nth.write_at(b"0", 0);
    let hit = left == Some(0);
    match (bound, hit) {
        (true, false) => BOUND,
        (true, true) => BOUND_AFTER_FAILURE,
        (false, true) => REFUSED,
        (false, false) => REFUSED_UNINJECTED,
    }
}

/// Most allocations a probe may make after its self-test job.
const MAX_ALLOCATIONS: u32 = 2000;

/// Bind with the `n`th allocation after the self-test job's submission
/// failing: the binding child's fail-nth is set while the job runs on the
/// device (BUSY; every job is delayed 200 ms) and the child sleeps in the
/// probe's fence wait. Retried when the job had ended by the time the
/// count was set. The child's exit code.
fn bind_failing_nth(pci: &str, bar: &Bar, n: u32) -> Result<i32, String> {
    for _ in 0..5 {
        let binder = child::spawn(|| bind_child(pci))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let armed = loop {
            if bar.read(STATUS) & STATUS_BUSY != 0 && task_state(binder.pid()) == 'S' {
                std::fs::write(format!("/proc/{}/fail-nth", binder.pid()), n.to_string())
                    .map_err(|e| format!("fail-nth of the binding child: {e}"))?;
                // Still running: the count started before the probe went on.
                break bar.read(STATUS) & STATUS_BUSY != 0;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the self-test job never ran with the probe waiting for it (loader state \
                     {}): is delay=200 armed?",
                    task_state(binder.pid())
                ));
            }
            std::thread::yield_now();
        };
        match binder.wait()? {
            child::Exit::Code(code) if armed => return Ok(code),
            child::Exit::Code(BOUND | BOUND_AFTER_FAILURE) => unbind(pci)?,
            child::Exit::Code(_) => {}
            other => return Err(format!("the binding child ended with {other}")),
        }
    }
    Err("the self-test job always ended before the injection was armed".into())
}

fn unbind(pci: &str) -> Result<(), String> {
    std::fs::write("/sys/bus/pci/drivers/onpu/unbind", pci)
        .map_err(|e| format!("unbind {pci}: {e}"))
}

fn fail_after_self_test() -> Result<(), String> {
    let pci = npu_function()?;
    unbind(&pci)?;
    let bar = Bar::map(&pci)?;
    let inj = FaultKnobs::new()?;
    let mut failed = 0u32;
    for n in 1..=MAX_ALLOCATIONS {
        match bind_failing_nth(&pci, &bar, n)? {
            BOUND => {
                drop(inj);
                println!(
                    "# {} allocations after the self-test job; {failed} binds failed",
                    n - 1
                );
                if failed == 0 {
                    return Err("no injected failure made a bind fail".into());
                }
                return job_runs();
            }
            // Not fatal to the bind (debugfs, for one): unbind for the next.
            BOUND_AFTER_FAILURE => unbind(&pci)?,
            REFUSED => {
                failed += 1;
                quiet(
                    &pci,
                    &bar,
                    &format!("a probe whose allocation {n} after the self-test failed"),
                )?;
            }
            REFUSED_UNINJECTED => {
                return Err(format!("a bind failed with no injected failure (n = {n})"))
            }
            code => return Err(format!("the binding child could not start (exit {code})")),
        }
    }
    Err(format!(
        "a probe made more than {MAX_ALLOCATIONS} allocations after its self-test"
    ))
}

fn main() {
    let fail_nth = std::env::args().any(|a| a == "--fail-nth");
    let mut tap = Tap::new(if fail_nth { 5 } else { 4 });
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
    if fail_nth {
        tap.check(
            "a probe failing at each of its allocations after the self-test job in turn leaves \
             the device quiet; the last binds a working device",
            fail_after_self_test(),
        );
    }
    // Last: its binds run self-test jobs, which would move the job that
    // delay=4000:nth=4 holds.
    tap.check(
        "binding enables the PCI function once, unbinding disables it (twice over)",
        enable_follows_binding(),
    );
    std::process::exit(tap.finish());
}
