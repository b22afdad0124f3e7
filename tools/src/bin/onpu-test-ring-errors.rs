//! kselftest: a process that writes the NPU's ring registers through the
//! BAR behind the driver's back (Documentation/hw/npu-hw.rst, "Ring pointer
//! errors"; Documentation/driver/onpu.rst, "Timeouts, faults and reset").
//! TAP output; run in the guest as root with the driver loaded and debugfs
//! mounted (runs.list: ringerr-debug).
//!
//! From the spec: a DOORBELL value more than SQ_SIZE entries ahead of
//! SQ_HEAD (or behind it) and a CQ_HEAD value past CQ_TAIL are refused, and
//! the device raises RING_ERROR with the refused value in RING_ERROR_VALUE.
//! The driver never writes such values, so a RING_ERROR means another agent
//! writes its registers: it reads the value, clears RING_ERROR and resets the
//! device through its recovery path, where the running job ends ABORTED
//! (-EIO) and the jobs queued behind it run again.
//!
//! The test maps BAR0 (/sys/bus/pci/devices/<bdf>/resource0, found by vendor
//! and device id), and while a forked process runs a stream of copy jobs and
//! checks every result against the bytes it put in, it writes bursts of
//! garbage DOORBELL and CQ_HEAD values (each at least 2^20 from any value the
//! device could accept) and then one probe value it remembers. The driver
//! must report that exact value in debugfs (`ring_error_last`), its reset
//! count must grow, RING_ERROR must read 0 again, and the other process's
//! jobs must all be right, except those a reset cut short, which may end
//! only as ABORTED with -EIO; after the last garbage it must run 20 jobs in
//! a row without error. Last, a job that hangs at the head of the queue
//! (the device server runs with `--inject hang:tag=57005`) when a refused
//! write comes must end ABORTED/-EIO at once, not at its timeout, and the
//! job queued behind it must run.

use npu::device::raw::{self as accel, Mapping};
use npu_isa::{assemble, Insn};
use npu_tools::child::{self, Counters};
use npu_tools::copyjob::{self, CopyJob, JobError};
use npu_tools::tap::Tap;
use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

const PCI_VENDOR: &str = "0x1234";
const PCI_DEVICE: &str = "0x4e50";
/// Registers (npu-hw.rst, "Register map").
const ID: usize = 0x0000;
const SQ_HEAD: usize = 0x004c;
const DOORBELL: usize = 0x0054;
const CQ_HEAD: usize = 0x0064;
const CQ_TAIL: usize = 0x0068;
const RING_ERROR: usize = 0x0090;
const ID_VALUE: u32 = 0x4f4e_5055;
/// RING_ERROR bits of the two registers.
const RING_ERROR_DOORBELL: u32 = 1 << 0;
const RING_ERROR_CQ_HEAD: u32 = 1 << 1;
/// ISA 1.0 fault code the driver gives a job a reset cut short.
const ABORTED: u32 = 11;
/// Rounds of garbage; jobs in a row that must succeed afterwards.
const ROUNDS: u64 = 20;
const TAIL_JOBS: u64 = 20;
const COPY_LEN: u32 = 256 * 1024;
/// Jobs the job process keeps in flight at once.
const BATCH: usize = 4;
/// Extra loads of the source per job (the command buffer holds 64
/// instructions, the copy takes 3).
const LOADS: usize = 60;
/// How long the driver may take to handle one refused write (a reset waits
/// at most 2 s for RESET_DONE), and how often a probe is written again.
const HANDLE_WITHIN: Duration = Duration::from_secs(3);
const PROBE_TRIES: u32 = 3;

/// Shared counters between the test and its job process.
const OK: usize = 0;
const ABORTED_JOBS: usize = 1;
const WRONG: usize = 2;
const STOP: usize = 3;
const TAIL_OK: usize = 4;

/// BAR0 mapped from sysfs; 32-bit volatile register access.
struct Bar {
    ptr: *mut u8,
    len: usize,
}

impl Bar {
    fn map(bdf: &str) -> Result<Bar, String> {
        let path = format!("/sys/bus/pci/devices/{bdf}/resource0");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {path}: {e}"))?;
        let len = file
            .metadata()
            .map_err(|e| format!("stat {path}: {e}"))?
            .len() as usize;
        if len < 0x100 {
            return Err(format!(
                "{path} is {len} bytes, too small for the registers"
            ));
        }
        // SAFETY: a fresh shared mapping of the device's register BAR; it is
        // only accessed through volatile 32-bit reads and writes below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(Bar {
            ptr: ptr.cast(),
            len,
        })
    }

    fn read(&self, reg: usize) -> u32 {
        assert!(reg + 4 <= self.len && reg % 4 == 0);
        // SAFETY: an aligned register inside the mapping.
        unsafe { std::ptr::read_volatile(self.ptr.add(reg).cast::<u32>()) }
    }

    fn write(&self, reg: usize, value: u32) {
        assert!(reg + 4 <= self.len && reg % 4 == 0);
        // SAFETY: as for read.
        unsafe { std::ptr::write_volatile(self.ptr.add(reg).cast::<u32>(), value) }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() mapped.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The PCI address of the first device with the NPU's vendor and device id.
fn find_npu() -> Result<String, String> {
    let dir = fs::read_dir("/sys/bus/pci/devices").map_err(|e| format!("sysfs: {e}"))?;
    for entry in dir.flatten() {
        let p = entry.path();
        let id = |f: &str| fs::read_to_string(p.join(f)).unwrap_or_default();
        if id("vendor").trim() == PCI_VENDOR && id("device").trim() == PCI_DEVICE {
            return Ok(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Err(format!("no PCI device {PCI_VENDOR}:{PCI_DEVICE}"))
}

/// The driver's debugfs counters of this device.
struct Debugfs(PathBuf);

impl Debugfs {
    fn value(&self, key: &str) -> Option<String> {
        let text = fs::read_to_string(&self.0).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": ").map(str::to_owned))
    }

    fn ring_errors(&self) -> Option<u64> {
        self.value("ring_errors")?.parse().ok()
    }

    /// (RING_ERROR, RING_ERROR_VALUE) of the last ring error handled.
    fn ring_error_last(&self) -> Option<(u32, u32)> {
        let v = self.value("ring_error_last")?;
        let mut it = v
            .split_whitespace()
            .map(|w| u32::from_str_radix(w.trim_start_matches("0x"), 16).ok());
        Some((it.next()??, it.next()??))
    }
}

/// xorshift64*: the garbage differs from round to round, reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// A value at least 2^20 away (mod 2^32) from `base`: refused whatever
    /// the ring indices do meanwhile (they move by a few hundred at most,
    /// and a reset sets them to 0 while `base` is small).
    fn far_from(&mut self, base: u32) -> u32 {
        let off = (1 << 20) + self.next() % (u32::MAX - (1 << 21));
        base.wrapping_add(off)
    }
}

/// The job process: copy jobs until told to stop and then TAIL_JOBS more,
/// each checked against its source bytes. A job a reset cut short may end
/// ABORTED with -EIO, nothing else.
fn job_stream(counters: &Counters<5>, ready: std::os::fd::OwnedFd) -> i32 {
    let run = || -> Result<(), String> {
        let path = accel::find_device().map_err(|e| e.to_string())?;
        let file = accel::open_with_queue(&path).map_err(|e| e.to_string())?;
        // A batch in flight at once, so that resets find jobs queued.
        let mut jobs = (0..BATCH)
            .map(|_| CopyJob::new(&file, COPY_LEN))
            .collect::<Result<Vec<_>, _>>()?;
        // Each job first reads its source LOADS times over (the result is
        // the same), so that a job is running when a reset comes.
        for job in &mut jobs {
            let load = copyjob::insns(job.src_va, job.dst_va, COPY_LEN)[0];
            job.program(&file, &[load; LOADS])?;
        }
        let mut notified = false;
        for batch in 0u32.. {
            let stopping = counters.get(STOP).load(SeqCst) != 0;
            if stopping && counters.get(TAIL_OK).load(SeqCst) >= TAIL_JOBS {
                return Ok(());
            }
            let mut queued = Vec::with_capacity(jobs.len());
            for (i, job) in jobs.iter().enumerate() {
                let want = copyjob::pattern(batch * BATCH as u32 + i as u32, COPY_LEN as usize);
                job.fill_src(&file, &want)?;
                job.clear_dst(&file)?;
                queued.push((job.submit(&file, 0)?, want));
            }
            for (job, (seqno, want)) in jobs.iter().zip(queued) {
                let w = accel::wait(&file, seqno, copyjob::WAIT_NS)
                    .map_err(|e| format!("wait for job {seqno}: errno {e}"))?;
                match copyjob::ok_outcome(&w).and_then(|()| job.check_dst(&file, &want)) {
                    Ok(()) => {
                        counters.get(OK).fetch_add(1, SeqCst);
                        if stopping {
                            counters.get(TAIL_OK).fetch_add(1, SeqCst);
                        }
                    }
                    // (The last round's reset may still cut short a job
                    // queued after the stop: the tail counts jobs in a row.)
                    Err(JobError::Outcome { status, error, .. })
                        if status == ABORTED && error == -libc::EIO =>
                    {
                        counters.get(ABORTED_JOBS).fetch_add(1, SeqCst);
                        counters.get(TAIL_OK).store(0, SeqCst);
                    }
                    Err(e) => {
                        counters.get(WRONG).fetch_add(1, SeqCst);
                        return Err(format!("job {seqno}: {e}"));
                    }
                }
            }
            if !notified {
                child::notify(&ready)?;
                notified = true;
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            println!("# job process: {e}");
            1
        }
    }
}

/// Poll `cond` until it holds or `within` passes (the driver handles the
/// interrupt in its own time; this waits for that event, it is no delay).
fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Totals {
    resets: u64,
    ring_errors: u64,
    garbage_writes: u64,
}

/// One round: a burst of garbage, the driver's reset, then a probe whose
/// exact value the driver must report.
fn round(
    bar: &Bar,
    bdf: &str,
    dbg: &Debugfs,
    rng: &mut Rng,
    totals: &mut Totals,
) -> Result<(), String> {
    let resets = || npu_tools::debugfs::counter("resets").unwrap_or(0);
    let before = resets();
    // Aim the burst at a moment the job process has jobs queued (if it has
    // none within a second, the burst goes anyway).
    wait_until(Duration::from_secs(1), || head_job(bdf).is_some());
    for _ in 0..1 + rng.next() % 6 {
        let (reg, base) = if rng.next() % 2 == 0 {
            (DOORBELL, bar.read(SQ_HEAD))
        } else {
            (CQ_HEAD, bar.read(CQ_TAIL))
        };
        bar.write(reg, rng.far_from(base));
        totals.garbage_writes += 1;
    }
    if !wait_until(HANDLE_WITHIN, || resets() > before) {
        return Err(format!(
            "no reset within {HANDLE_WITHIN:?} of refused ring-pointer writes (resets {before}); RING_ERROR reads {:#x}",
            bar.read(RING_ERROR)
        ));
    }
    // The probe: the driver must have read exactly this value. A refused
    // write that lands between the driver's read of RING_ERROR and its
    // reset is cleared by that reset unseen, so the probe is written again
    // (it changes nothing in the device) until it is seen.
    let (reg, bit, base) = if rng.next() % 2 == 0 {
        (DOORBELL, RING_ERROR_DOORBELL, bar.read(SQ_HEAD))
    } else {
        (CQ_HEAD, RING_ERROR_CQ_HEAD, bar.read(CQ_TAIL))
    };
    let probe = rng.far_from(base);
    let mut seen = false;
    for _ in 0..PROBE_TRIES {
        bar.write(reg, probe);
        totals.garbage_writes += 1;
        if wait_until(HANDLE_WITHIN, || {
            dbg.ring_error_last() == Some((bit, probe))
        }) {
            seen = true;
            break;
        }
    }
    if !seen {
        return Err(format!(
            "the driver never reported the refused {} value {probe:#x} (debugfs ring_error_last: {:?}; RING_ERROR reads {:#x})",
            if reg == DOORBELL { "DOORBELL" } else { "CQ_HEAD" },
            dbg.ring_error_last(),
            bar.read(RING_ERROR)
        ));
    }
    // Reported means reset (the handler resets after reading): RING_ERROR
    // is clear again once no later write was refused, and none was.
    if !wait_until(HANDLE_WITHIN, || bar.read(RING_ERROR) == 0) {
        return Err(format!(
            "RING_ERROR still reads {:#x} after the driver handled it",
            bar.read(RING_ERROR)
        ));
    }
    totals.resets = resets();
    totals.ring_errors = dbg.ring_errors().unwrap_or(0);
    Ok(())
}

/// MARK tag on which the device hangs until a reset (runs.list:
/// --inject hang:tag=57005).
const HANG_TAG: u32 = 0xdead;

/// The driver's in-flight queue, oldest first (debugfs `state`).
fn queued_jobs(bdf: &str) -> Vec<u64> {
    let state =
        fs::read_to_string(format!("/sys/kernel/debug/accel/{bdf}/state")).unwrap_or_default();
    state
        .lines()
        .filter(|l| l.starts_with("  job "))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// The first job of the driver's in-flight queue.
fn head_job(bdf: &str) -> Option<u64> {
    queued_jobs(bdf).first().copied()
}

/// A job that hangs at the head of the queue when a refused write comes
/// must end ABORTED with -EIO (the reset cut it short) long before its
/// timeout, and the job queued behind it must run and be right. The job
/// process's jobs queue behind it too: the write waits (a while) until some
/// are queued, so the reset resubmits them; the job process checks them.
/// The number of the job process's jobs queued at the reset, on success.
fn running_job_aborted(bar: &Bar, bdf: &str, npu: &File, rng: &mut Rng) -> Result<usize, String> {
    if !accel::fault_injection(npu)? {
        return Err(
            "the device has no fault injection: start it with --inject hang:tag=57005".into(),
        );
    }
    let code = assemble(&[Insn::Mark { tag: HANG_TAG }, Insn::End]);
    let hang = accel::bo_create(npu, 4096).map_err(|e| format!("bo_create: errno {e}"))?;
    Mapping::new(npu, &hang)
        .map_err(|e| format!("mmap: {e}"))?
        .as_mut_slice()[..code.len()]
        .copy_from_slice(&code);
    let behind = CopyJob::new(npu, 4096)?;
    let want = copyjob::pattern(0x5eed, 4096);
    behind.fill_src(npu, &want)?;
    behind.clear_dst(npu)?;
    let hung = accel::submit_simple(npu, accel::FIRST_QUEUE, &hang, code.len() as u32, &[], 5000)
        .map_err(|e| format!("submit: errno {e}"))?;
    let queued = behind.submit(npu, 0)?;
    if !wait_until(Duration::from_secs(10), || head_job(bdf) == Some(hung)) {
        return Err(format!("job {hung} never reached the head of the queue"));
    }
    // The job process's jobs queue up behind the hung one (seqnos are
    // device-wide: the ones that are neither of ours are its).
    let others = || {
        queued_jobs(bdf)
            .iter()
            .filter(|&&s| s != hung && s != queued)
            .count()
    };
    wait_until(Duration::from_secs(2), || others() > 0);
    let others_at_reset = others();
    bar.write(DOORBELL, rng.far_from(bar.read(SQ_HEAD)));
    let started = Instant::now();
    let w = accel::wait(npu, hung, 30_000_000_000).map_err(|e| format!("wait: errno {e}"))?;
    if w.status != ABORTED || w.error != -libc::EIO {
        return Err(format!(
            "the running job ended with status {:#x} error {} after {:?}, want ABORTED (11) and -EIO at the reset",
            w.status,
            w.error,
            started.elapsed()
        ));
    }
    CopyJob::wait_ok(npu, queued)?;
    behind.check_dst(npu, &want)?;
    println!(
        "# the hung job ended ABORTED/-EIO {:?} after the refused write; the job behind it ran; {others_at_reset} of the job process's jobs were queued behind it",
        started.elapsed()
    );
    Ok(others_at_reset)
}

fn fail(e: String) -> ! {
    println!("Bail out! {e}");
    std::process::exit(1);
}

fn main() {
    let mut tap = Tap::new(6);
    let bdf = find_npu().unwrap_or_else(|e| fail(e));
    let bar = Bar::map(&bdf).unwrap_or_else(|e| fail(e));
    let id = bar.read(ID);
    tap.check(
        "the NPU's BAR0 maps from userspace (ID register)",
        if id == ID_VALUE {
            Ok(())
        } else {
            Err(format!("ID reads {id:#x}, want {ID_VALUE:#x}"))
        },
    );
    let dbg = Debugfs(PathBuf::from(format!(
        "/sys/kernel/debug/accel/{bdf}/counters"
    )));
    let npu = accel::find_device()
        .and_then(|p| accel::open_with_queue(&p))
        .unwrap_or_else(|e| fail(format!("accel device: {e}")));
    let counters = Counters::<5>::new().unwrap_or_else(|e| fail(e));
    let (ready_r, ready_w) = child::pipe().unwrap_or_else(|e| fail(e));
    // (The closure owns the write end: the parent's copy closes with it.)
    let jobs = child::spawn(|| job_stream(&counters, ready_w)).unwrap_or_else(|e| fail(e));
    match child::wait_notified(&ready_r) {
        Ok(true) => {}
        Ok(false) => fail("the job process ended before its first job".into()),
        Err(e) => fail(e),
    }
    let resets_before = npu_tools::debugfs::counter("resets").unwrap_or(0);
    let ring_errors_before = dbg.ring_errors();
    let mut totals = Totals {
        resets: resets_before,
        ring_errors: ring_errors_before.unwrap_or(0),
        garbage_writes: 0,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rounds = 0;
    let mut result = Ok(());
    while rounds < ROUNDS {
        if let Err(e) = round(&bar, &bdf, &dbg, &mut rng, &mut totals) {
            result = Err(format!("round {}: {e}", rounds + 1));
            break;
        }
        rounds += 1;
    }
    // Three times: each reset finds some of the job process's jobs queued.
    let mut resubmitted = 0;
    let mut aborted = Ok(());
    for _ in 0..3 {
        match running_job_aborted(&bar, &bdf, &npu, &mut rng) {
            Ok(n) => resubmitted += n,
            Err(e) => {
                aborted = Err(e);
                break;
            }
        }
    }
    counters.get(STOP).store(1, SeqCst);
    println!(
        "# {rounds} rounds, {} refused writes: resets {resets_before} -> {}, driver ring_errors {:?} -> {}",
        totals.garbage_writes, totals.resets, ring_errors_before, totals.ring_errors
    );
    tap.check(
        "each refused DOORBELL/CQ_HEAD value is reported by the device, read by the driver and reset (20 rounds)",
        result,
    );
    tap.check(
        "a job running when a ring error comes ends ABORTED/-EIO; the jobs behind it run (x3)",
        aborted,
    );
    // At least one reset for the burst and one for the probe of each round.
    let resets = totals.resets - resets_before;
    let handled = totals.ring_errors - ring_errors_before.unwrap_or(0);
    tap.check(
        "the driver counts its ring errors and resets",
        if ring_errors_before.is_none() {
            Err("debugfs counters have no ring_errors line".into())
        } else if resets < 2 * ROUNDS || handled < 2 * ROUNDS {
            Err(format!(
                "{resets} resets and {handled} ring errors for {ROUNDS} rounds, want at least {} of each",
                2 * ROUNDS
            ))
        } else {
            Ok(())
        },
    );
    let exit = jobs.wait().unwrap_or_else(|e| fail(e));
    let (ok, aborted, wrong, tail) = (
        counters.get(OK).load(SeqCst),
        counters.get(ABORTED_JOBS).load(SeqCst),
        counters.get(WRONG).load(SeqCst),
        counters.get(TAIL_OK).load(SeqCst),
    );
    println!(
        "# job process: {ok} jobs right, {aborted} cut short by a reset (ABORTED, -EIO), {wrong} wrong; {resubmitted} were queued behind a hung job at a reset and resubmitted; {exit}"
    );
    tap.check(
        "the other process's jobs stay right; those a reset cuts short end ABORTED/-EIO",
        if wrong == 0 && exit == child::Exit::Code(0) {
            Ok(())
        } else {
            Err(format!("{wrong} wrong job(s); the job process: {exit}"))
        },
    );
    tap.check(
        "after the garbage stops, jobs run without error (20 in a row)",
        if tail >= TAIL_JOBS {
            Ok(())
        } else {
            Err(format!("{tail} of {TAIL_JOBS} jobs after the last round"))
        },
    );
    std::process::exit(tap.finish());
}
