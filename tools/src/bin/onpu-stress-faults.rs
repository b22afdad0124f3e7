//! onpu-stress-faults: inject every kind of device fault, many times, and
//! check that the stack recovers: the guilty job fails with the right error
//! (or, for faults the driver absorbs, succeeds), the next job of the same
//! process gives the right result, and the jobs of another process that
//! runs all along are all correct.
//!
//! The device must be started with the rules below (tools/selftests/runs.list
//! does it); a job opts into a fault by executing `MARK <tag>`:
//!
//!   --inject hang:tag=1 --inject mmu-fault:tag=2 --inject drop-irq:tag=3
//!   --inject corrupt-completion:tag=4 --inject spurious-irq:tag=5
//!   --inject delay=150:tag=6 --inject delay=900:tag=7 --inject slow-reset=300
//!
//!   onpu-stress-faults [ITERATIONS]     (default 100 per kind)

use npu_isa::{assemble, Fault, Insn, Strided};
use npu_tools::accel::{self, Bo, Mapping};
use npu_tools::tap::Tap;
use npu_uapi as uapi;
use std::fs::File;
use std::time::Instant;

const SEC: i64 = 1_000_000_000;
const LEN: u32 = 4096;

struct Ctx {
    file: File,
    cmd: Bo,
    src: (Bo, u64),
    dst: (Bo, u64),
}

fn errno(e: i32) -> String {
    format!("errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

impl Ctx {
    fn open() -> Result<Ctx, String> {
        let file = accel::open(&accel::find_device().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let cmd = accel::bo_create(&file, 4096).map_err(errno)?;
        let mk = |f: &File| -> Result<(Bo, u64), String> {
            let b = accel::bo_create(f, u64::from(LEN)).map_err(errno)?;
            let va = accel::bo_npu_addr(f, b.handle).map_err(errno)?;
            Ok((b, va))
        };
        let src = mk(&file)?;
        let dst = mk(&file)?;
        Ok(Ctx {
            file,
            cmd,
            src,
            dst,
        })
    }

    fn run(&self, insns: &[Insn], timeout_ms: u32) -> Result<uapi::drm_onpu_wait, String> {
        let code = assemble(insns);
        Mapping::new(&self.file, &self.cmd)
            .map_err(|e| e.to_string())?
            .as_mut_slice()[..code.len()]
            .copy_from_slice(&code);
        let refs = [
            uapi::drm_onpu_bo_ref {
                handle: self.src.0.handle,
                flags: uapi::DRM_ONPU_BO_READ,
            },
            uapi::drm_onpu_bo_ref {
                handle: self.dst.0.handle,
                flags: uapi::DRM_ONPU_BO_WRITE,
            },
        ];
        let seqno =
            accel::submit_simple(&self.file, &self.cmd, code.len() as u32, &refs, timeout_ms)
                .map_err(errno)?;
        accel::wait(&self.file, seqno, 30 * SEC).map_err(|e| format!("wait: {}", errno(e)))
    }

    fn copy(&self, tag: Option<u32>) -> Vec<Insn> {
        let c = Strided::contiguous(LEN);
        let mut v = Vec::new();
        if let Some(t) = tag {
            v.push(Insn::Mark { tag: t });
        }
        v.push(Insn::DmaLoad {
            va: self.src.1,
            sram: 0,
            mem: c,
            sram_layout: c,
        });
        v.push(Insn::DmaStore {
            va: self.dst.1,
            sram: 0,
            mem: c,
            sram_layout: c,
        });
        v.push(Insn::End);
        v
    }

    /// A job that must succeed and copy a fresh pattern.
    fn good_job(&self, seed: u32) -> Result<(), String> {
        let pattern: Vec<u8> = (0..LEN)
            .map(|i| (i.wrapping_mul(seed | 1).wrapping_add(seed) >> 3) as u8)
            .collect();
        Mapping::new(&self.file, &self.src.0)
            .map_err(|e| e.to_string())?
            .as_mut_slice()
            .copy_from_slice(&pattern);
        Mapping::new(&self.file, &self.dst.0)
            .map_err(|e| e.to_string())?
            .as_mut_slice()
            .fill(0);
        let w = self.run(&self.copy(None), 0)?;
        if w.status != 0 {
            return Err(format!(
                "good job failed: status {:#x} error {} at {:#x}",
                w.status, w.error, w.fault_addr
            ));
        }
        let mut m = Mapping::new(&self.file, &self.dst.0).map_err(|e| e.to_string())?;
        if m.as_mut_slice() != pattern.as_slice() {
            return Err("good job: wrong data".into());
        }
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
            timeout_ms: 600,
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

fn guilty(c: &Ctx, k: &Kind) -> Result<(), String> {
    let insns = match k.tag {
        Some(t) => c.copy(Some(t)),
        None => vec![Insn::Nop, Insn::Nop, Insn::End],
    };
    let w = if k.tag.is_none() {
        // Corrupt the second instruction's opcode.
        let mut code = assemble(&insns);
        code[64] = 0xee;
        Mapping::new(&c.file, &c.cmd)
            .map_err(|e| e.to_string())?
            .as_mut_slice()[..code.len()]
            .copy_from_slice(&code);
        let seqno =
            accel::submit_simple(&c.file, &c.cmd, code.len() as u32, &[], 0).map_err(errno)?;
        accel::wait(&c.file, seqno, 30 * SEC).map_err(errno)?
    } else {
        c.run(&insns, k.timeout_ms)?
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

/// The other process: good jobs until told to stop; exits with the number
/// of failures (0..=255), after printing its count.
fn innocent(stop: i32) -> ! {
    let code = (|| -> Result<i32, String> {
        let c = Ctx::open()?;
        let mut n = 0u32;
        let mut failed = 0;
        loop {
            let mut byte = 0u8;
            // SAFETY: a non-blocking read of one byte from our pipe end.
            let r = unsafe { libc::read(stop, (&mut byte as *mut u8).cast(), 1) };
            if r == 0 || r == 1 {
                break;
            }
            if let Err(e) = c.good_job(n.wrapping_mul(2654435761)) {
                println!("# other process, job {n}: {e}");
                failed += 1;
            }
            n += 1;
        }
        println!("# other process: {n} jobs, {failed} failed");
        Ok(failed.min(255))
    })()
    .unwrap_or_else(|e| {
        println!("# other process: {e}");
        255
    });
    // SAFETY: leave the child without the parent's destructors.
    unsafe { libc::_exit(code) }
}

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let c = match Ctx::open() {
        Ok(c) => c,
        Err(e) => {
            println!("# {e}");
            std::process::exit(npu_tools::tap::KSFT_FAIL);
        }
    };
    let caps = accel::get_param(&c.file, uapi::DRM_ONPU_PARAM_CAPS).unwrap_or(0);
    let kinds = kinds();
    let mut tap = Tap::new(kinds.len() + 1);
    if caps & (1 << 31) == 0 {
        for k in &kinds {
            tap.skip(k.name, "device started without fault injection");
        }
        tap.skip(
            "the other process's jobs all succeeded",
            "no faults injected",
        );
        std::process::exit(tap.finish());
    }
    let mut fds = [0i32; 2];
    // SAFETY: a pipe for the stop signal; the child reads non-blocking.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) } != 0 {
        println!("# pipe failed");
        std::process::exit(npu_tools::tap::KSFT_FAIL);
    }
    // SAFETY: the child runs only its own code and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: the child does not write.
        unsafe { libc::close(fds[1]) };
        innocent(fds[0]);
    }
    let resets0 = accel::get_param(&c.file, uapi::DRM_ONPU_PARAM_RESETS).unwrap_or(0);
    let mut injected = 0;
    for k in &kinds {
        let t = Instant::now();
        let mut result = Ok(());
        for i in 0..iterations {
            let r = guilty(&c, k).and_then(|()| {
                c.good_job(i as u32 + 1)
                    .map_err(|e| format!("next job after {}: {e}", k.name))
            });
            if let Err(e) = r {
                result = Err(format!("iteration {i}: {e}"));
                break;
            }
            injected += 1;
        }
        println!(
            "# {}: {} iterations in {:.1} s",
            k.name,
            iterations,
            t.elapsed().as_secs_f64()
        );
        tap.check(
            &format!(
                "{} x{iterations}: right error, the next job is right",
                k.name
            ),
            result,
        );
    }
    // SAFETY: closing our write end tells the child to stop.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let resets = accel::get_param(&c.file, uapi::DRM_ONPU_PARAM_RESETS).unwrap_or(0) - resets0;
    println!("# faults injected and recovered: {injected}; device resets: {resets}");
    let child_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    tap.check(
        "the other process's jobs all succeeded, with the right data",
        if child_ok {
            Ok(())
        } else {
            Err(format!("other process status {status:#x}"))
        },
    );
    std::process::exit(tap.finish());
}
