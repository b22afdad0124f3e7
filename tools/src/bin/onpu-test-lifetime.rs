//! kselftest for the driver's lifetimes: module unload with a file open,
//! unbind with a job in flight and a file open, rebind and reload; the
//! device works after each. Unbind while a job runs: the device writes
//! nothing into the job's memory once unbind has returned. Unbind with a
//! destroyed context kept alive by an ended job whose object was freed:
//! nothing touches the freed object (on the debug kernel, KASAN would
//! report it). TAP output; run in the guest with onpu.ko loaded from
//! /lib/modules/onpu.ko, which it leaves loaded.
//!
//! Unbind unplugs the DRM device: every later ioctl of an open file, WAIT
//! included, gets ENODEV (Documentation/driver/onpu.rst, "Binding
//! lifetime"); the unbind tests read their jobs' outcomes from fences
//! exported as sync_files before the unbind.
//!
//! The unbind tests need the device started with `--inject hang:tag=57005`
//! (tools/selftests/runs.list does it); without it, they fail, or are
//! skipped if the command line says `--injection-optional`.
//!
//!   onpu-test-lifetime [--injection-optional]

use npu::device::raw as accel;
use npu_isa::{assemble, Insn, Strided};
use npu_tools::args::Args;
use npu_tools::kmod;
use npu_tools::syncfile;
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

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

/// Submit `cmd` (`size` bytes) to the file's first queue using `refs`, its
/// fence exported as a sync_file: the job's outcome stays readable after
/// unbind, when WAIT gets ENODEV.
fn submit_fenced(
    file: &File,
    cmd: &accel::Bo,
    size: u32,
    refs: &[uapi::drm_onpu_bo_ref],
    timeout_ms: u32,
) -> Result<(u64, OwnedFd), String> {
    let out = accel::syncobj_create(file, false).map_err(|e| format!("syncobj: errno {e}"))?;
    let outs = [accel::sync(out)];
    let mut req = uapi::drm_onpu_submit {
        queue_id: accel::FIRST_QUEUE,
        cmdbuf_handle: cmd.handle,
        cmdbuf_size: size,
        bos: accel::obj_array(refs),
        out_syncs: accel::obj_array(&outs),
        timeout_ms,
        ..Default::default()
    };
    let seqno = accel::submit(file, &mut req).map_err(|e| format!("submit: errno {e}"))?;
    let fence =
        accel::syncobj_export_sync_file(file, out).map_err(|e| format!("export: errno {e}"))?;
    Ok((seqno, fence))
}

/// WAIT after unbind: the unplugged device answers ENODEV.
fn wait_gets_enodev(file: &File, seqno: u64) -> Result<(), String> {
    match accel::wait(file, seqno, 0) {
        Err(e) if e == libc::ENODEV => Ok(()),
        Err(e) => Err(format!("wait after unbind: errno {e}, want ENODEV")),
        Ok(w) => Err(format!(
            "wait after unbind answered (status {:#x}), want ENODEV",
            w.status
        )),
    }
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
    let hang = accel::bo_create(&file, 4096).map_err(|e| format!("bo: errno {e}"))?;
    let code = assemble(&[Insn::Mark { tag: HANG_TAG }, Insn::End]);
    accel::Mapping::new(&file, &hang)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let (seqno, fence) = submit_fenced(&file, &hang, code.len() as u32, &[], 5000)?;
    // An END job ready to submit once the device is gone.
    let cmd = accel::bo_create(&file, 4096).map_err(|e| format!("bo: errno {e}"))?;
    let end = assemble(&[Insn::End]);
    accel::Mapping::new(&file, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..end.len()]
        .copy_from_slice(&end);
    unbind(&pci)?;
    // Signalled by the time unbind returned: a poll, no wait.
    let status = syncfile::wait_status(&fence, 0)
        .map_err(|e| format!("the in-flight job's fence after unbind: {e}"))?;
    if status != -libc::ECANCELED {
        return Err(format!(
            "in-flight job's fence after unbind: status {status}, want -ECANCELED ({})",
            -libc::ECANCELED
        ));
    }
    wait_gets_enodev(&file, seqno)?;
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
    bind(&pci)?;
    smoke()
}

/// Unbind and bind the device again, the file(s) left open by the caller.
fn unbind(pci: &str) -> Result<(), String> {
    std::fs::write("/sys/bus/pci/drivers/onpu/unbind", pci).map_err(|e| format!("unbind: {e}"))
}

fn bind(pci: &str) -> Result<(), String> {
    std::fs::write("/sys/bus/pci/drivers/onpu/bind", pci).map_err(|e| format!("bind: {e}"))
}

/// A job that, for each of `pages` pages of the object at `va`, first
/// computes (`work` 128x128x128 i8 matrix products in SRAM, to take time)
/// and then writes the page with its own pattern: its progress shows in
/// the object, page by page.
fn slow_writer(va: u64, pages: u64, work: u32) -> Vec<Insn> {
    let page = Strided::contiguous(4096);
    let mut insns = Vec::new();
    for p in 0..pages {
        for _ in 0..work {
            insns.push(Insn::Matmul {
                dtype: npu_isa::DType::I8,
                accumulate: false,
                transpose_b: true,
                m: 128,
                n: 128,
                k: 128,
                a: npu_isa::Tile { addr: 0, ld: 128 },
                b: npu_isa::Tile {
                    addr: 0x4000,
                    ld: 128,
                },
                c: npu_isa::Tile {
                    addr: 0x8000,
                    ld: 128,
                },
            });
        }
        insns.push(Insn::Fill {
            dst: 0x20000,
            len: 4096,
            pattern: 0x0101_0101 * (p as u32 % 255 + 1),
        });
        insns.push(Insn::DmaStore {
            va: va + p * 4096,
            sram: 0x20000,
            mem: page,
            sram_layout: page,
        });
    }
    insns.push(Insn::End);
    insns
}

/// Unbind while a job is running and writing an object page by page (the
/// device runs a job to its end unless it is reset: Documentation/hw/
/// npu-hw.rst). Unbind must stop the device before it returns
/// (Documentation/driver/onpu.rst, "Teardown"): from then on no byte of
/// the object may change, though the file keeps it and its CPU mapping.
/// Watched for four times the job's time per page so far (at least 50 ms:
/// a device still running would write another page meanwhile), then again
/// after a rebind and a job run to completion on the new binding. The job
/// must still have been running when unbind returned (a page written and
/// one not, WAIT says CANCELED); when it was not, the test runs again with
/// a slower job.
fn unbind_stops_a_running_job() -> Result<(), String> {
    const PAGES: u64 = 64;
    let pci = kmod::pci_name()?;
    for work in [2u32, 8, 32, 128, 512] {
        let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
        let obj = accel::bo_create(&file, PAGES * 4096).map_err(|e| format!("bo: errno {e}"))?;
        let va = accel::bo_npu_addr(&file, obj.handle).map_err(|e| format!("addr: errno {e}"))?;
        let mut map = accel::Mapping::new(&file, &obj).map_err(|e| e.to_string())?;
        map.as_mut_slice().fill(0);
        let code = assemble(&slow_writer(va, PAGES, work));
        let cmd = accel::bo_create(&file, (code.len() as u64).next_multiple_of(4096))
            .map_err(|e| format!("bo: errno {e}"))?;
        accel::Mapping::new(&file, &cmd)
            .map_err(|e| e.to_string())?
            .as_mut_slice()[..code.len()]
            .copy_from_slice(&code);
        let refs = [uapi::drm_onpu_bo_ref {
            handle: obj.handle,
            flags: uapi::DRM_ONPU_BO_WRITE,
        }];
        let (seqno, fence) = submit_fenced(&file, &cmd, code.len() as u32, &refs, 5000)?;
        // The job runs once the device wrote its first page.
        let deadline = Instant::now() + Duration::from_secs(10);
        while map.as_mut_slice()[0] == 0 {
            if Instant::now() > deadline {
                return Err("the job did not write its first page within 10 s".into());
            }
            std::thread::yield_now();
        }
        let first_page = Instant::now();
        unbind(&pci)?;
        let at_unbind = map.as_mut_slice().to_vec();
        let written = at_unbind.chunks(4096).filter(|p| p[0] != 0).count();
        // 1: signalled without an error (the job completed).
        let status = syncfile::wait_status(&fence, 0)
            .map_err(|e| format!("the running job's fence after unbind: {e}"))?;
        wait_gets_enodev(&file, seqno)?;
        if status == 1 || written == PAGES as usize {
            // Done (or done writing) by the time unbind returned: nothing
            // shown; a slower one.
            drop(map);
            drop(file);
            bind(&pci)?;
            continue;
        }
        if status != -libc::ECANCELED {
            return Err(format!(
                "the running job's fence signalled {status} at unbind, want -ECANCELED ({})",
                -libc::ECANCELED
            ));
        }
        let changed = |now: &[u8]| {
            now.iter()
                .zip(&at_unbind)
                .position(|(a, b)| a != b)
                .map(|i| {
                    format!(
                        "byte {i} of the object changed after unbind returned ({:#x} -> {:#x}): \
                         the device kept running the job ({written} of {PAGES} pages written at \
                         the unbind, {work} products a page)",
                        at_unbind[i], now[i]
                    )
                })
        };
        let per_page = first_page.elapsed() / written.max(1) as u32;
        let watch = Instant::now() + (per_page * 4).max(Duration::from_millis(50));
        while Instant::now() < watch {
            if let Some(e) = changed(map.as_mut_slice()) {
                return Err(e);
            }
            std::thread::yield_now();
        }
        bind(&pci)?;
        smoke()?;
        if let Some(e) = changed(map.as_mut_slice()) {
            return Err(e);
        }
        println!("# the job had written {written} of {PAGES} pages at the unbind ({work} products a page)");
        return Ok(());
    }
    Err("every job ended before the unbind: the test could not catch one running".into())
}

/// A context made by CONTEXT_CREATE maps the objects its jobs use. When it
/// is destroyed while its job runs, and that job ends, it leaves the
/// file's list (it is pruned) while the ended job, not reaped by WAIT,
/// still holds it; closing the object's last handle then frees the object
/// at the job's release. Unbind afterwards must not touch the freed object
/// through the context's old mapping (it did: release_dma of every live
/// context; on the debug kernel a KASAN use-after-free report fails the
/// run). The device works after a rebind.
fn unbind_after_pruned_context() -> Result<(), String> {
    let pci = kmod::pci_name()?;
    let file = accel::open_with_queue(&kmod::wait_for_device()?).map_err(|e| e.to_string())?;
    let ctx = accel::context_create(&file).map_err(|e| format!("context create: errno {e}"))?;
    let mut qc = uapi::drm_onpu_queue_create {
        context_id: ctx,
        priority: uapi::DRM_ONPU_PRIORITY_NORMAL,
        ..Default::default()
    };
    accel::ioctl(&file, &mut qc).map_err(|e| format!("queue create: errno {e}"))?;
    let obj = accel::bo_create(&file, 65536).map_err(|e| format!("bo: errno {e}"))?;
    let cmd = accel::bo_create(&file, 4096).map_err(|e| format!("bo: errno {e}"))?;
    // Hangs until the watchdog ends it (300 ms).
    let code = assemble(&[Insn::Mark { tag: HANG_TAG }, Insn::End]);
    accel::Mapping::new(&file, &cmd)
        .map_err(|e| e.to_string())?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let out = accel::syncobj_create(&file, false).map_err(|e| format!("syncobj: errno {e}"))?;
    let refs = [uapi::drm_onpu_bo_ref {
        handle: obj.handle,
        flags: uapi::DRM_ONPU_BO_WRITE,
    }];
    let outs = [accel::sync(out)];
    let mut req = uapi::drm_onpu_submit {
        queue_id: qc.queue_id,
        cmdbuf_handle: cmd.handle,
        cmdbuf_size: code.len() as u32,
        bos: accel::obj_array(&refs),
        out_syncs: accel::obj_array(&outs),
        timeout_ms: 300,
        ..Default::default()
    };
    let seqno = accel::submit(&file, &mut req).map_err(|e| format!("submit: errno {e}"))?;
    // While the job runs: the object's last handle, the queue and the
    // context go (the context stays listed, as destroyed, until the job
    // ended).
    accel::gem_close(&file, obj.handle).map_err(|e| format!("close: errno {e}"))?;
    accel::queue_destroy(&file, qc.queue_id).map_err(|e| format!("queue destroy: errno {e}"))?;
    accel::context_destroy(&file, ctx).map_err(|e| format!("context destroy: errno {e}"))?;
    // The job ends (no WAIT: the file keeps it, and it the context); the
    // next CONTEXT_CREATE prunes the destroyed context, before the job's
    // release (which the release work does 10 ms later, or unbind) frees
    // the object.
    accel::syncobj_wait(&file, out, 10_000).map_err(|e| format!("syncobj wait: errno {e}"))?;
    // The hung job's outcome, from its fence (a WAIT would reap the job).
    let fence =
        accel::syncobj_export_sync_file(&file, out).map_err(|e| format!("export: errno {e}"))?;
    let status = syncfile::status(&fence)?;
    if status != -libc::ETIMEDOUT {
        return Err(format!(
            "the hung job's fence signalled {status}, want -ETIMEDOUT: is hang:tag=57005 armed?"
        ));
    }
    accel::context_create(&file).map_err(|e| format!("context create: errno {e}"))?;
    unbind(&pci)?;
    wait_gets_enodev(&file, seqno)?;
    drop(file);
    bind(&pci)?;
    smoke()
}

/// One test point's body.
type Test = fn() -> Result<(), String>;

fn main() {
    let args = Args::parse("[--injection-optional]", &["--injection-optional"]);
    args.at_most(0);
    let mut tap = Tap::new(4);
    let injecting = kmod::wait_for_device()
        .and_then(|p| accel::open_with_queue(&p).map_err(|e| e.to_string()))
        .and_then(|f| accel::fault_injection(&f));
    tap.check(
        "rmmod is refused while a file is open; unload and reload after close",
        unload_with_open_file(),
    );
    let unbind_tests: [(&str, Test); 3] = [
        (
            "unbind cancels an in-flight job (its fence), WAIT and SUBMIT get ENODEV, rebind works",
            unbind_with_job_in_flight,
        ),
        (
            "unbind stops a running job: no byte of its memory changes afterwards",
            unbind_stops_a_running_job,
        ),
        (
            "unbind with a pruned context kept by an ended job: the freed object is not touched",
            unbind_after_pruned_context,
        ),
    ];
    for (name, test) in unbind_tests {
        match &injecting {
            Ok(true) => tap.check(name, test()),
            Ok(false) if args.flag("--injection-optional") => {
                tap.skip(name, "needs --inject hang:tag=57005")
            }
            Ok(false) => tap.check(
                name,
                Err("the device injects no faults: start it with --inject hang:tag=57005".into()),
            ),
            Err(e) => tap.check(name, Err(e.clone())),
        }
    }
    std::process::exit(tap.finish());
}
