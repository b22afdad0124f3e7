//! onpu-stress-faults: inject every kind of device fault, many times, and
//! check that the stack recovers: the guilty job fails with the right error
//! (or, for faults the driver absorbs, succeeds), the next job of the same
//! process gives the right result, and the jobs of another process that
//! runs all along (it must have completed jobs while the faults were being
//! injected) are all correct.
//!
//! The device must be started with the rules below (tools/selftests/runs.list
//! does it); a job opts into a fault by executing `MARK <tag>`. A device
//! without fault injection fails the test, unless the command line says
//! `--injection-optional` (then every test is skipped):
//!
//!   --inject hang:tag=1 --inject mmu-fault:tag=2 --inject drop-irq:tag=3
//!   --inject corrupt-completion:tag=4 --inject spurious-irq:tag=5
//!   --inject delay=150:tag=6 --inject delay=5000:tag=7 --inject slow-reset=300
//!
//! The slow jobs' margins are seconds, not milliseconds: the device's delay
//! is host wall-clock time and the watchdog runs on the guest's vCPU, which a
//! loaded host can stall for hundreds of milliseconds (a 900 ms delay against
//! a 300 ms timeout once completed first). A reset cuts the delay, so the
//! long one costs nothing.
//!
//!   onpu-stress-faults [--injection-optional] [ITERATIONS]   (default 100 per kind)

use npu::device::raw::{self as accel, Bo, Mapping};
use npu_isa::{assemble, Fault, Insn};
use npu_tools::args::Args;
use npu_tools::child::{self, Counters};
use npu_tools::copyjob::{self, CopyJob};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::time::Instant;

const SEC: i64 = 1_000_000_000;
const LEN: u32 = 4096;

/// A device file, the copy job its good and guilty jobs run, and a command
/// buffer for the bad-opcode job.
struct Ctx {
    file: File,
    copy: CopyJob,
    bad: Bo,
}

fn errno(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

impl Ctx {
    fn open() -> Result<Ctx, String> {
        let file = accel::open_with_queue(&accel::find_device().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let copy = CopyJob::new(&file, LEN)?;
        let bad = accel::bo_create(&file, 4096).map_err(errno)?;
        Ok(Ctx { file, copy, bad })
    }

    /// The copy behind `MARK tag`; the WAIT outcome, whatever it is.
    fn run_tagged(&mut self, tag: u32, timeout_ms: u32) -> Result<uapi::drm_onpu_wait, String> {
        self.copy.program(&self.file, &[Insn::Mark { tag }])?;
        let seqno = self.copy.submit(&self.file, timeout_ms)?;
        accel::wait(&self.file, seqno, 30 * SEC).map_err(|e| format!("wait: {}", errno(e)))
    }

    /// A job that must succeed and copy a fresh pattern.
    fn good_job(&mut self, seed: u32) -> Result<(), String> {
        self.copy.program(&self.file, &[])?;
        self.copy
            .run(&self.file, &copyjob::pattern(seed, LEN as usize))
            .map_err(|e| format!("good job: {e}"))?;
        Ok(())
    }
}

/// One fault kind: the tag that triggers it, the job timeout to use, and
/// what the guilty job must report.
struct Kind {
    name: &'static str,
    tag: Option<u32>,
    timeout_ms: u32,
    /// Acceptable (status, error) outcomes of the guilty job.
    expect: &'static [(u32, i32)],
    /// The fault address an MMU fault must carry.
    fault_addr: Option<u64>,
}

const ABORTED: u32 = 11;
const TIMED_OUT: (u32, i32) = (uapi::DRM_ONPU_JOB_TIMEDOUT, -libc::ETIMEDOUT);

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "hung job",
            tag: Some(1),
            timeout_ms: 200,
            expect: &[(uapi::DRM_ONPU_JOB_TIMEDOUT, -libc::ETIMEDOUT)],
            fault_addr: None,
        },
        Kind {
            name: "MMU fault",
            tag: Some(2),
            timeout_ms: 0,
            expect: &[(Fault::MmuUnmapped as u32, -libc::EIO)],
            fault_addr: Some(0xdead000),
        },
        Kind {
            name: "bad opcode",
            tag: None,
            timeout_ms: 0,
            expect: &[(Fault::BadOpcode as u32, -libc::EIO)],
            fault_addr: None,
        },
        Kind {
            name: "dropped completion interrupt",
            tag: Some(3),
            timeout_ms: 0,
            expect: &[(0, 0)],
            fault_addr: None,
        },
        // The record is garbage: the job ends when a later record shows it
        // is over (ABORTED) or when its timeout says so.
        Kind {
            name: "corrupted completion record",
            tag: Some(4),
            timeout_ms: 200,
            expect: &[TIMED_OUT, (ABORTED, -libc::EIO)],
            fault_addr: None,
        },
        Kind {
            name: "spurious interrupt",
            tag: Some(5),
            timeout_ms: 0,
            expect: &[(0, 0)],
            fault_addr: None,
        },
        Kind {
            name: "slow job just inside its timeout",
            tag: Some(6),
            timeout_ms: 3000,
            expect: &[(0, 0)],
            fault_addr: None,
        },
        Kind {
            name: "slow job past its timeout (slow reset)",
            tag: Some(7),
            timeout_ms: 300,
            expect: &[TIMED_OUT],
            fault_addr: None,
        },
    ]
}

fn guilty(c: &mut Ctx, k: &Kind) -> Result<(), String> {
    let w = match k.tag {
        Some(t) => c.run_tagged(t, k.timeout_ms)?,
        None => {
            // Corrupt the second instruction's opcode.
            let mut code = assemble(&[Insn::Nop, Insn::Nop, Insn::End]);
            code[64] = 0xee;
            Mapping::new(&c.file, &c.bad)
                .map_err(|e| e.to_string())?
                .as_mut_slice()[..code.len()]
                .copy_from_slice(&code);
            let seqno = accel::submit_simple(
                &c.file,
                accel::FIRST_QUEUE,
                &c.bad,
                code.len() as u32,
                &[],
                0,
            )
            .map_err(errno)?;
            accel::wait(&c.file, seqno, 30 * SEC).map_err(errno)?
        }
    };
    if !k.expect.contains(&(w.status, w.error)) {
        return Err(format!(
            "{}: status {:#x} error {}, want one of {:?}",
            k.name, w.status, w.error, k.expect
        ));
    }
    if let Some(a) = k.fault_addr {
        if w.fault_addr != a {
            return Err(format!(
                "{}: fault address {:#x}, want {a:#x}",
                k.name, w.fault_addr
            ));
        }
    }
    Ok(())
}

/// Counters in memory shared with the other process: its good and failed
/// jobs, and the parent's request to stop.
const JOBS: usize = 0;
const FAILED: usize = 1;
const STOP: usize = 2;

/// The other process: good jobs until told to stop, counted in `counts`;
/// tells `ready` after its first good job; exits 0 if all its jobs were
/// right.
fn innocent(ready: std::os::fd::OwnedFd, counts: &Counters<3>) -> i32 {
    let run = || -> Result<(), String> {
        let mut c = Ctx::open()?;
        let mut n = 0u32;
        while counts.get(STOP).load(Ordering::SeqCst) == 0 {
            match c.good_job(n.wrapping_mul(2654435761)) {
                Ok(()) => {
                    if counts.get(JOBS).fetch_add(1, Ordering::SeqCst) == 0 {
                        child::notify(&ready)?;
                    }
                }
                Err(e) => {
                    println!("# other process, job {n}: {e}");
                    counts.get(FAILED).fetch_add(1, Ordering::SeqCst);
                }
            }
            n += 1;
        }
        Ok(())
    };
    let result = run();
    if let Err(e) = &result {
        println!("# other process: {e}");
    }
    i32::from(result.is_err() || counts.get(FAILED).load(Ordering::SeqCst) > 0)
}

fn main() {
    let args = Args::parse(
        "[--injection-optional] [ITERATIONS]",
        &["--injection-optional"],
    );
    args.at_most(1);
    let iterations = args.number(0, "ITERATIONS", 100) as usize;
    let kinds = kinds();
    let mut tap = Tap::new(kinds.len() + 1);
    let fail_all = |mut tap: Tap, why: String| -> ! {
        println!("# {why}");
        for k in &kinds {
            tap.check(k.name, Err(why.clone()));
        }
        tap.check("the other process's jobs all succeeded", Err(why));
        std::process::exit(tap.finish());
    };
    let mut c = match Ctx::open() {
        Ok(c) => c,
        Err(e) => fail_all(tap, e),
    };
    match accel::fault_injection(&c.file) {
        Ok(true) => {}
        Ok(false) if args.flag("--injection-optional") => {
            for k in &kinds {
                tap.skip(k.name, "device started without fault injection");
            }
            tap.skip("the other process's jobs all succeeded", "no faults injected");
            std::process::exit(tap.finish());
        }
        Ok(false) => fail_all(tap, "the device injects no faults: start it with the --inject rules in this program's header".into()),
        Err(e) => fail_all(tap, e),
    }
    let setup = || -> Result<_, String> {
        let counts = Counters::<3>::new()?;
        let (ready_r, ready_w) = child::pipe()?;
        let other = child::spawn(|| innocent(ready_w, &counts))?;
        // Faults only once the other process runs jobs.
        if !child::wait_notified(&ready_r)? {
            return Err(format!(
                "the other process ended before its first good job ({})",
                other.wait()?
            ));
        }
        Ok((counts, other))
    };
    let (counts, other) = match setup() {
        Ok(x) => x,
        Err(e) => fail_all(tap, e),
    };
    let resets0 = npu_tools::debugfs::counter("resets");
    let jobs0 = counts.get(JOBS).load(Ordering::SeqCst);
    let mut injected = 0;
    for k in &kinds {
        let t = Instant::now();
        let mut result = Ok(());
        let mut done = 0;
        for i in 0..iterations {
            let r = guilty(&mut c, k).and_then(|()| {
                c.good_job(i as u32 + 1)
                    .map_err(|e| format!("next job after {}: {e}", k.name))
            });
            if let Err(e) = r {
                result = Err(format!("iteration {i}: {e}"));
                break;
            }
            done += 1;
        }
        injected += done;
        println!(
            "# {}: {done} iterations in {:.1} s",
            k.name,
            t.elapsed().as_secs_f64()
        );
        tap.done(&format!("{done} x {}: injected and recovered", k.name));
        tap.check(
            &format!(
                "{} x{iterations}: right error, the next job is right",
                k.name
            ),
            result,
        );
    }
    let during = counts.get(JOBS).load(Ordering::SeqCst) - jobs0;
    counts.get(STOP).store(1, Ordering::SeqCst);
    let exit = other.wait();
    let resets = match (resets0, npu_tools::debugfs::counter("resets")) {
        (Ok(a), Ok(b)) => format!("{}", b.wrapping_sub(a)),
        (Err(e), _) | (_, Err(e)) => format!("unknown (debugfs resets: {e})"),
    };
    let (jobs, failed) = (
        counts.get(JOBS).load(Ordering::SeqCst),
        counts.get(FAILED).load(Ordering::SeqCst),
    );
    println!("# faults injected and recovered: {injected}; device resets: {resets}");
    println!("# other process: {jobs} jobs, {failed} failed, {during} while faults were injected");
    tap.done(&format!("{injected} faults injected and recovered, {resets} device resets; other process {jobs} jobs ({during} during the faults)"));
    let other_ok = match exit {
        Ok(child::Exit::Code(0)) if failed == 0 && during > 0 => Ok(()),
        Ok(child::Exit::Code(0)) if failed == 0 => {
            Err("the other process completed no job while the faults were injected".into())
        }
        Ok(e) => Err(format!("other process: {e}, {failed} of its jobs failed")),
        Err(e) => Err(e),
    };
    tap.check(
        "the other process's jobs all succeeded, with the right data, also during the faults",
        other_ok,
    );
    std::process::exit(tap.finish());
}
